"""Bottleneck findings (collector/analysis/findings.py) computed from measured values, citing
them."""

from __future__ import annotations

from typing import Any

import pytest

from collector.analysis.findings import Thresholds, analyse
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
    assert onnx.text.startswith("onnxruntime is 1.78x eager for bert at batch 1, sequence 8, "
                                "float32 on cpu of host-a: 0.90 ms vs 1.60 ms")
    assert onnx.text.endswith("; export took 2.10 s")
    compiled = texts["compile"]
    assert compiled.values["payoff_calls"] == pytest.approx(2.5 / 0.0005)
    assert "pays off after 5,000 calls" in compiled.text
    int8 = texts["eager"]  # "eager int8-dynamic is 0.33x eager ..."
    assert int8.text.startswith("eager int8-dynamic is 0.33x eager")
    assert "outputs differ from eager's by up to 1.7%" in int8.text


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
