"""Bottleneck findings (collector/analysis/findings.py) computed from measured values, citing
them."""

from __future__ import annotations

from typing import Any

import pytest

from collector.analysis.findings import Thresholds, analyse, analyse_runs, group
from collector.domain.model import NoiseProbe, Quantization
from tests.helpers import make_run


def result(latency: float, **spec: Any) -> Any:
    [base] = make_run(models=("bert",), latency=latency).results
    metrics = {**base.metrics, "latency_p50_seconds": latency,
               "throughput_samples_per_second": spec.get("batch_size", 1) / latency}
    extra = spec.pop("metrics", {})
    return base.model_copy(update={"spec": base.spec.model_copy(update=spec),
                                   "metrics": {**metrics, **extra}})


def kinds(found: list[Any], kind: str) -> list[Any]:
    return [f for f in found if f.kind == kind]


def test_variant_speedups_cite_both_latencies_and_the_compile_payoff() -> None:
    found = analyse([
        result(0.0016),
        result(0.0009, backend="onnxruntime", metrics={"export_time_seconds": 2.1}),
        result(0.0011, backend="compile", metrics={"compile_time_seconds": 2.5}),
        result(0.0048, quantization=Quantization.INT8_DYNAMIC,
               metrics={"output_max_rel_diff_ratio": 0.017})])
    texts = {f.text.split(" ")[0]: f for f in kinds(found, "variant_speedup")}
    onnx = texts["onnxruntime"]
    assert onnx.values["speedup"] == pytest.approx(1.6 / 0.9)
    assert onnx.text.startswith("onnxruntime is 1.78x as fast as eager for bert at batch 1, "
                                "sequence 8, float32 on cpu of host-a: 0.90 ms vs 1.60 ms")
    assert onnx.text.endswith("; export took 2.10 s")
    compiled = texts["compile"]
    assert compiled.values["payoff_calls"] == pytest.approx(2.5 / 0.0005)
    assert "pays off after 5,000 calls" in compiled.text
    int8 = texts["eager"]  # "eager int8-dynamic is 0.33x as fast as eager ..."
    assert int8.text.startswith("eager int8-dynamic is 0.33x as fast as eager")
    assert "outputs differ from eager's by up to 1.7%" in int8.text


def test_a_slow_int8_variant_says_which_kernel_ran_and_why() -> None:
    eager = result(0.0026)
    int8 = result(0.0065, quantization=Quantization.INT8_DYNAMIC)
    int8 = int8.model_copy(update={"environment": int8.environment.model_copy(
        update={"int8_matmul": "oneDNN u8s8 (AVX512-VNNI)"})})
    [found] = kinds(analyse([eager, int8]), "variant_speedup")
    assert "(its int8 matmuls: oneDNN u8s8 (AVX512-VNNI); int8-dynamic quantizes every " \
           "call's activations first" in found.text
    fast = int8.model_copy(update={"metrics": {**int8.metrics, "latency_p50_seconds": 0.002}})
    [quick] = kinds(analyse([eager, fast]), "variant_speedup")
    assert quick.text.endswith("(its int8 matmuls: oneDNN u8s8 (AVX512-VNNI))")


def test_thresholds_are_warnings_and_configurable() -> None:
    slow = result(0.25, metrics={"peak_rss_bytes": 5 * 2**30})
    found = analyse([slow])
    assert {f.kind for f in found if f.severity == "warning"} == {
        "high_latency", "high_memory", "low_throughput"}
    assert found[0].severity == "warning"  # warnings first
    lenient = Thresholds(high_latency_s=1.0, high_memory_bytes=8 * 2**30, low_throughput=1.0)
    assert [f for f in analyse([slow], lenient) if f.severity == "warning"] == []


def test_batch_scaling_prefill_share_first_call_and_memory() -> None:
    one = result(0.010, metrics={"first_call_seconds": 0.5, "model_size_bytes": 1e8,
                                 "peak_rss_bytes": 4e8, "time_to_first_token_p50_seconds": 0.002})
    eight = result(0.040, batch_size=8)
    found = analyse([one, eight])
    [scaling] = kinds(found, "batch_scaling")
    assert scaling.values["efficiency"] == pytest.approx(200 / (8 * 100))
    assert scaling.severity == "warning"  # 25 % of linear
    assert "batch 8 gives 2.00x the throughput of batch 1" in scaling.text
    [prefill] = kinds(found, "prefill_share")
    assert prefill.values["share"] == pytest.approx(0.2)
    [first] = kinds(found, "first_call")
    assert first.severity == "warning" and "50.0x the steady state" in first.text
    [memory] = kinds(found, "memory_per_weight")
    assert memory.values["ratio"] == pytest.approx(4.0)


def test_a_disturbed_run_is_said() -> None:
    noisy = result(0.01).model_copy(update={"noise": NoiseProbe(
        wall_s=1.0, self_cpu_s=1.0, other_cpu_s=0.8, other_cpu_fraction=0.4)})
    [finding] = kinds(analyse([noisy]), "noisy_run")
    assert finding.severity == "warning" and "40% of the CPU" in finding.text
    failed = make_run(models=("bert",), fail="bert").results
    assert analyse(failed) == []


def test_a_first_call_at_the_steady_pace_is_no_finding() -> None:
    # 0.8x the steady state (the seed report's "first call takes 0.8x"): nothing to say.
    calm = result(0.010, metrics={"first_call_seconds": 0.008})
    assert kinds(analyse([calm]), "first_call") == []
    cold = result(0.010, metrics={"first_call_seconds": 0.025})
    [first] = kinds(analyse([cold]), "first_call")
    assert first.severity == "info" and "2.5x the steady state" in first.text


def test_findings_are_per_run_never_averaged_across_runs() -> None:
    quiet = [result(0.0027), result(0.0013, backend="compile")]
    busy = [result(0.0055), result(0.0013, backend="compile")]
    found = analyse_runs([("quiet", quiet), ("busy", busy)])
    speedups = {f.run: f for f in kinds(found, "variant_speedup")}
    # Each run's eager against its own compile: 2.08x and 4.23x, not a median of both.
    assert speedups["quiet"].values["eager_p50"] == pytest.approx(0.0027)
    assert speedups["busy"].values["eager_p50"] == pytest.approx(0.0055)
    assert "2.08x as fast" in speedups["quiet"].text and "4.23x as fast" in speedups["busy"].text


def test_a_pattern_many_workloads_share_is_one_line_with_its_range() -> None:
    many = [result(0.001, sequence_length=n, metrics={"model_size_bytes": 1e6,
                                                      "peak_rss_bytes": 1e6 * (100 + n)})
            for n in (8, 16, 32, 64)]
    groups = group(analyse_runs([("r1", many)]))
    [memory] = [g for g in groups if g.kind == "memory_per_weight"]
    assert len(memory.members) == 4 and memory.run == "r1"
    assert memory.text.startswith("peak RSS against the model's weights")
    assert memory.text.endswith(": 108.0x to 164.0x, for 4 workloads")
    # Warnings come first, and a group of one reads as its finding.
    slow = group(analyse_runs([("r1", [result(0.25)])]))
    assert slow[0].severity == "warning"
    assert slow[0].text == slow[0].members[0].text
