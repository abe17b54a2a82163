"""optimum-benchmark's results into points and runs (collector/adapters/imports/optimum.py),
read from the real output of optimum-benchmark 0.6.0 in tests/fixtures/imports/
optimum-benchmark/ (its README says how it was made) and from variants of it."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.imports import FORMATS, read_points
from collector.adapters.imports.common import MAX_IMPORT_BYTES, build_runs, read_source
from collector.domain.errors import InputError
from collector.domain.workload import Origin

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
HERE = FIXTURES / "optimum-benchmark"
BERT = HERE / "tiny-bert-text-classification" / "benchmark.json"
LLAMA = HERE / "tiny-llama-text-generation"
ENERGY = HERE / "tiny-llama-text-generation-energy" / "benchmark.json"
WHEN = datetime(2025, 6, 2, 14, 30, tzinfo=timezone.utc)
FORMAT = "optimum-benchmark"


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _write(path: Path, document: Any, when: datetime = WHEN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=4))
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def _copy(source: Path, target: Path, when: datetime = WHEN) -> Path:
    """A copy of a fixture whose modification time (optimum-benchmark's only clue to when
    it ran) is `when`; a report is copied with the config next to it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    if source.name == "benchmark_report.json":
        shutil.copyfile(source.parent / "benchmark_config.json",
                        target.parent / "benchmark_config.json")
    os.utime(target, (when.timestamp(), when.timestamp()))
    return target


def test_a_forward_benchmark_is_one_point_with_its_spec_metrics_and_machine(
        tmp_path: Path) -> None:
    raw = _load(BERT)
    forward = raw["report"]["forward"]
    [point] = read_points(_copy(BERT, tmp_path / "benchmark.json"), FORMAT)
    assert point.origin is Origin.OPTIMUM_BENCHMARK
    assert point.where == str(tmp_path / "benchmark.json")
    assert point.time == WHEN
    assert point.spec == {"name": "tiny_bert_text_classification_cpu",
                          "model": {"source": "local", "path": "/tmp/ob-run/models/tiny-bert"},
                          "task": "text-classification", "device": "cpu", "dtype": "float32",
                          "backend": "eager", "batch_size": 4, "sequence_length": 64}
    values = forward["latency"]["values"]
    metrics = point.metrics
    assert metrics["latency_p50_seconds"] == forward["latency"]["p50"]
    assert metrics["latency_p99_seconds"] == forward["latency"]["p99"]
    assert metrics["latency_mean_seconds"] == forward["latency"]["mean"]
    assert metrics["latency_min_seconds"] == min(values)
    assert point.samples == {"latency_seconds": values}
    assert metrics["throughput_samples_per_second"] == forward["throughput"]["value"]
    assert metrics["throughput_input_tokens_per_second"] == pytest.approx(
        forward["throughput"]["value"] * 64)
    # MB (10^6 bytes) to bytes; the load's peak apart from the measuring one.
    assert metrics["peak_rss_bytes"] == pytest.approx(forward["memory"]["max_ram"] * 1e6)
    assert metrics["load_peak_rss_bytes"] == pytest.approx(
        raw["report"]["load_model"]["memory"]["max_ram"] * 1e6)
    assert metrics["load_time_seconds"] == raw["report"]["load_model"]["latency"]["values"][0]
    assert metrics["first_call_seconds"] == raw["report"]["first_forward"]["latency"]["mean"]
    # A forward pass makes no tokens: nothing of generation.
    assert not {"time_to_first_token_p50_seconds", "decode_tokens_per_second",
                "energy_per_token_joules"} & set(metrics)
    assert point.environment == {
        "cpu_model": "AMD EPYC", "cpu_logical_cores": 2, "memory_total_bytes": 25276182528,
        "os": "Linux-6.18.44-fc-v1300-x86_64-with-glibc2.36", "python_version": "3.11.7",
        "transformers_version": "4.57.6", "torch_version": "2.13.0+cpu",
        "packages": {"optimum-benchmark": "0.6.0", "accelerate": "1.16.0"}}
    [run] = build_runs([point])
    [result] = run.results
    assert run.suite == "optimum-benchmark"
    assert result.status == "ok" and result.started_at == WHEN
    assert result.spec.origin is Origin.OPTIMUM_BENCHMARK
    assert result.spec.label == ("tiny_bert_text_classification_cpu float32 eager cpu bs=4 "
                                 "seq=64 from optimum-benchmark")
    assert result.environment.commit is None  # the tool ran from a release, not a checkout


def test_a_generation_report_is_read_with_the_config_next_to_it(tmp_path: Path) -> None:
    report = _load(LLAMA / "benchmark_report.json")
    [point] = read_points(_copy(LLAMA / "benchmark_report.json",
                                tmp_path / "benchmark_report.json"), FORMAT)
    assert point.spec["task"] == "text-generation"
    assert (point.spec["batch_size"], point.spec["sequence_length"],
            point.spec["new_tokens"]) == (2, 32, 16)
    metrics = point.metrics
    generate, prefill = report["generate"]["latency"], report["prefill"]["latency"]
    per_token = report["per_token"]["latency"]
    assert metrics["latency_p90_seconds"] == generate["p90"]
    assert metrics["time_to_first_token_p50_seconds"] == prefill["p50"]
    assert metrics["time_to_first_token_mean_seconds"] == prefill["mean"]
    assert metrics["inter_token_latency_p50_seconds"] == per_token["p50"]
    assert metrics["decode_tokens_per_second"] == report["decode"]["throughput"]["value"]
    # The prefill's samples/s times the prompt's length: prompt tokens per second.
    assert metrics["prefill_tokens_per_second"] == pytest.approx(
        report["prefill"]["throughput"]["value"] * 32)
    assert metrics["first_call_seconds"] == report["first_generate"]["latency"]["mean"]
    assert metrics["peak_rss_bytes"] == pytest.approx(
        max(report[t]["memory"]["max_ram"] for t in ("prefill", "decode")) * 1e6)
    assert point.samples == {"latency_seconds": generate["values"],
                             "time_to_first_token_seconds": prefill["values"],
                             "inter_token_latency_seconds": per_token["values"]}
    assert "energy_per_iteration_joules" not in metrics
    [run] = build_runs([point])
    assert run.results[0].spec.label.endswith("bs=2 seq=32 new=16 from optimum-benchmark")


def test_energy_in_kilowatt_hours_becomes_joules_per_call_and_per_token(
        tmp_path: Path) -> None:
    generate = _load(ENERGY)["report"]["generate"]
    [point] = read_points(_copy(ENERGY, tmp_path / "benchmark.json"), FORMAT)
    joules = generate["energy"]["total"] * 3.6e6
    assert point.metrics["energy_per_iteration_joules"] == pytest.approx(joules)
    assert point.metrics["energy_per_token_joules"] == pytest.approx(joules / (2 * 16))
    assert point.metrics["tokens_per_joule"] == pytest.approx(2 * 16 / joules)
    [run] = build_runs([point])
    assert run.results[0].metrics["tokens_per_joule"] == pytest.approx(2 * 16 / joules)


def test_no_time_of_its_own_takes_the_files_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _copy(BERT, tmp_path / "benchmark.json")
    with caplog.at_level(logging.WARNING, logger="collector.imports"):
        [point] = read_points(path, FORMAT)
    assert point.time == WHEN
    [record] = caplog.records
    assert str(path) in record.getMessage()
    assert "modification time, 2025-06-02T14:30:00+00:00" in record.getMessage()


def test_one_run_is_one_run_from_any_copy_or_either_of_its_files(tmp_path: Path) -> None:
    """The run's id comes from its content: a copy elsewhere with another modification
    time, and its benchmark.json (config + report in one) instead of the report with its
    config, are all the same run and series."""
    first = read_points(_copy(LLAMA / "benchmark_report.json",
                              tmp_path / "a" / "benchmark_report.json"), FORMAT)
    moved = read_points(_copy(LLAMA / "benchmark_report.json",
                              tmp_path / "b" / "benchmark_report.json",
                              datetime(2026, 1, 1, tzinfo=timezone.utc)), FORMAT)
    whole = _write(tmp_path / "c" / "benchmark.json",
                   {"config": _load(LLAMA / "benchmark_config.json"),
                    "report": _load(LLAMA / "benchmark_report.json")})
    combined = read_points(whole, FORMAT)
    ids = [[(run.run_id, [r.series_id for r in run.results]) for run in build_runs(points)]
           for points in (first, moved, combined)]
    assert ids[0] == ids[1] == ids[2]
    assert first[0].metrics == combined[0].metrics
    # Another run of the same workload (the energy one): its own run, the same series.
    [other] = build_runs(read_points(_copy(ENERGY, tmp_path / "d" / "benchmark.json"),
                                     FORMAT))
    assert other.run_id != ids[0][0][0]
    assert other.results[0].series_id == ids[0][0][1][0]


def _bert(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = copy.deepcopy(_load(BERT))
    change(document)
    return document


def _on_cuda(document: dict[str, Any]) -> None:
    document["config"]["backend"].update(device="cuda", device_ids="0")
    document["config"]["environment"].update(
        gpu=["NVIDIA H100 80GB HBM3"], gpu_count=1, gpu_vram_mb=[85520809984],
        transformers_commit="1c9077f66dc285ed32c1d1e3e7e2d5cb3b1e7f30")
    for target in ("forward", "first_forward", "load_model"):
        document["report"][target]["memory"].update(max_allocated=512.5, max_reserved=600.0,
                                                    max_global_vram=1400.0)
    document["report"]["forward"]["memory"]["max_allocated"] = 530.25


def test_a_cuda_run_has_its_gpu_peaks_and_the_transformers_commit(tmp_path: Path) -> None:
    [point] = read_points(_write(tmp_path / "benchmark.json", _bert(_on_cuda)), FORMAT)
    assert point.spec["device"] == "cuda"
    assert point.metrics["cuda_max_allocated_bytes"] == pytest.approx(530.25e6)
    assert point.metrics["cuda_max_reserved_bytes"] == pytest.approx(600.0e6)
    assert point.environment["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert point.environment["gpu_count"] == 1
    assert point.environment["commit"] == "1c9077f66dc285ed32c1d1e3e7e2d5cb3b1e7f30"
    [run] = build_runs([point])
    assert run.results[0].environment.gpu_name == "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(("backend", "expected"), [
    ({"torch_compile": True, "torch_compile_config": {"mode": "max-autotune"}},
     {"backend": "compile", "compile": {"mode": "max-autotune"}}),
    ({"torch_dtype": "bfloat16", "attn_implementation": "sdpa", "intra_op_num_threads": 1},
     {"backend": "eager", "dtype": "bfloat16", "attn_implementation": "sdpa", "threads": 1}),
    ({"quantization_config": {"quant_method": "bnb", "load_in_4bit": True,
                              "bnb_4bit_quant_type": "nf4"}},
     {"backend": "eager", "quantization": "bnb-nf4"}),
    ({"name": "onnxruntime", "provider": "CUDAExecutionProvider", "device": "cuda"},
     {"backend": "onnxruntime", "onnxruntime": {"execution_provider": "cuda"}}),
    ({"name": "openvino", "half": True}, {"backend": "openvino", "dtype": "float16"}),
])
def test_backends_and_their_settings_map_to_the_collectors(
        tmp_path: Path, backend: dict[str, Any], expected: dict[str, Any]) -> None:
    document = _bert(lambda d: d["config"]["backend"].update(backend))
    [point] = read_points(_write(tmp_path / "benchmark.json", document), FORMAT)
    assert {key: point.spec[key] for key in expected} == expected
    [run] = build_runs([point])  # a valid BenchmarkSpec
    spec = run.results[0].spec
    assert spec.backend == expected["backend"]
    if "compile" in expected:
        assert spec.model_dump()["compile"]["mode"] == "max-autotune"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            document = document[key]
        document[last] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            document = document[key]
        del document[last]
    return change


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("change", "message"), [
    (_set("report.forward.latency.p50", "fast"),
     r"report\.forward\.latency\.p50: expected a finite number, got 'fast'"),
    (_set("report.forward.latency.p90", "0.3"),
     r"report\.forward\.latency\.p90: expected a finite number, got '0\.3'"),
    (_drop("report.forward.latency.p99"), r"report\.forward\.latency\.p99: missing"),
    (_drop("config.backend.model"), r"config\.backend\.model: missing"),
    (_drop("report.forward"), r"report\.forward: missing"),
    (_set("report.forward.latency.values", [0.1, -0.2]),
     r"report\.forward\.latency\.values: a negative time"),
    (_set("report.forward.memory.unit", "GB"),
     r"report\.forward\.memory\.unit: expected 'MB', got 'GB'"),
    (_set("report.forward.latency", [1, 2]),
     r"report\.forward\.latency: expected an object, got a list"),
    (_set("report.forward.latency.extra", _nested(100)), r":\d+: nested more than 64 levels"),
    (_set("config.backend.name", "vllm"),
     r"config\.backend\.name: 'vllm' has no counterpart in the collector's backends"),
    (_set("config.backend.torch_dtype", "auto"),
     r"config\.backend\.torch_dtype: 'auto' does not say the dtype"),
    (_set("config.backend.task", "fill-mask"), r"config\.backend\.task: 'fill-mask' has no "),
    (_set("config.backend.device", "mps"), r"config\.backend\.device: 'mps': only cpu and "),
    (_set("config.backend.quantization_config", {"quant_method": "gptq", "bits": 4}),
     r"config\.backend\.quantization_config: gptq quantization has no counterpart"),
    (_set("config.backend.autocast_enabled", True),
     r"config\.backend\.autocast_enabled: autocast has no counterpart"),
    (_set("config.scenario.name", "training"),
     r"config\.scenario\.name: 'training': only the inference scenario"),
    (_set("config.scenario.input_shapes", {"batch_size": 0, "sequence_length": 64}),
     r"config\.scenario\.input_shapes\.batch_size: expected a positive integer, got 0"),
    (_set("config.environment.cpu_count", "two"),
     r"config\.environment\.cpu_count: expected a positive integer, got 'two'"),
])
def test_a_malformed_benchmark_is_one_line_naming_the_file_and_field(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    path = _write(tmp_path / "benchmark.json", _bert(change))
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    text = str(caught.value)
    assert text.startswith(f"{path}:") and "\n" not in text


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda text: text[: len(text) // 2], r":\d+: invalid JSON: "),
    (lambda text: text.replace('"p50": 0.2602063989999692', '"p50": NaN', 1),
     r":1: invalid JSON: NaN is not a number JSON allows"),
    (lambda text: text.replace('"p50": 0.2602063989999692', '"p50": Infinity', 1),
     r"invalid JSON: Infinity is not a number JSON allows"),
    (lambda text: "[" + text + "]", r": the document: expected an object, got a list"),
])
def test_broken_json_is_one_line_naming_the_file(
        tmp_path: Path, spoil: Callable[[str], str], message: str) -> None:
    text = BERT.read_text()
    assert '"p50": 0.2602063989999692' in text
    path = _write(tmp_path / "benchmark.json", spoil(text))
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_report_needs_its_config_and_a_config_alone_says_what_to_import(
        tmp_path: Path) -> None:
    report = tmp_path / "lonely" / "benchmark_report.json"
    report.parent.mkdir()
    shutil.copyfile(LLAMA / "benchmark_report.json", report)
    with pytest.raises(InputError, match=r"no benchmark_config\.json is next to it: import "
                                         r"the run's benchmark\.json$"):
        read_points(report, FORMAT)
    with pytest.raises(InputError, match=r"benchmark_config\.json: an optimum-benchmark "
                                         r"config holds no measurements"):
        read_points(LLAMA / "benchmark_config.json", FORMAT)
    # A fault in the config next to a report names the config file.
    _copy(LLAMA / "benchmark_report.json", tmp_path / "run" / "benchmark_report.json")
    config = _load(LLAMA / "benchmark_config.json")
    config["backend"]["torch_dtype"] = 16
    _write(tmp_path / "run" / "benchmark_config.json", config)
    with pytest.raises(InputError, match=r"run/benchmark_config\.json: backend\.torch_dtype: "
                                         r"expected a string, got 16$"):
        read_points(tmp_path / "run" / "benchmark_report.json", FORMAT)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "benchmark.json"
    with path.open("wb") as handle:  # sparse: no disk, no time
        handle.truncate(MAX_IMPORT_BYTES + 1)
    with pytest.raises(InputError, match=r"benchmark\.json: larger than 256 MiB; not a "
                                         r"benchmark result file$"):
        read_points(path, FORMAT)


def _importers() -> list[Any]:
    """The formats whose importer exists in this tree (each helper adds its own)."""
    return [f for f in FORMATS
            if importlib.util.find_spec(f"collector.adapters.imports.{f.module}") is not None]


def test_no_two_formats_claim_one_fixture_and_these_are_optimum_benchmarks() -> None:
    formats = _importers()
    assert {"optimum-benchmark", "benchmark_v2"} <= {f.name for f in formats}
    paths = sorted(p for p in FIXTURES.rglob("*") if not p.name.startswith("."))
    assert len(paths) > 10
    mine = {p for p in paths if HERE in p.parents and p.suffix == ".json"}
    assert len(mine) == 4
    for path in paths:
        text = "" if path.is_dir() else read_source(path)
        claimed = [f.name for f in formats if f.importer().recognises(path, text)]
        assert len(claimed) <= 1, (path, claimed)
        assert (claimed == [FORMAT]) == (path in mine), (path, claimed)
    for path in mine - {LLAMA / "benchmark_config.json"}:  # recognised by their content
        assert {p.origin for p in read_points(path)} == {Origin.OPTIMUM_BENCHMARK}
