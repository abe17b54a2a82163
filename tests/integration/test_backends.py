"""Every backend end to end through the real worker isolation, on one tiny synthetic BERT
classifier: eager (the model's default attention, eager attention, SDPA), torch.compile,
ONNX Runtime, OpenVINO and torchao int8, run once as one suite so the drift of each result
is computed against the eager float32 result of the same run; then delay_ms on an exported
graph, a backend whose package cannot be imported, and a generation task on a forward-only
backend."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.config import load_config
from collector.adapters.measure import WorkerPool, run_benchmark
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    FailureKind,
    Task,
)
from collector.usecases.cycle import run_once
from tests.helpers import TINY_MODELS, spec_dict
from tests.helpers import run_collector as collector
from tests.integration.test_cli import write_config

BERT: dict[str, Any] = {
    "source": "synthetic", "architecture": "BertForSequenceClassification",
    "config": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
               "intermediate_size": 128, "vocab_size": 512, "num_labels": 2}}
SHAPE: dict[str, Any] = {"batch_size": 2, "sequence_length": 16, "threads": 1,
                         "timeout_s": 300}
MEASUREMENT: dict[str, Any] = {"warmup_iterations": 1, "min_iterations": 3,
                               "min_duration_s": 0.0, "max_duration_s": 0.3, "repetitions": 1}
# name -> the fields that make the benchmark that backend.
VARIANTS: dict[str, dict[str, Any]] = {
    "eager": {},  # the numerics reference: eager, float32, unquantized, default attention
    "eager-attn": {"attn_implementation": "eager"},
    "sdpa": {"attn_implementation": "sdpa"},
    "compile": {"backend": "compile"},
    "onnxruntime": {"backend": "onnxruntime"},
    "openvino": {"backend": "openvino"},
    "int8-dynamic": {"quantization": "int8-dynamic"},
    "int8-weight-only": {"quantization": "int8-weight-only"},
}
LATENCY = ("latency_p50_seconds", "latency_p90_seconds", "latency_min_seconds",
           "latency_mean_seconds", "first_call_seconds", "throughput_samples_per_second")
DRIFT = ("output_max_abs_diff", "output_max_rel_diff_ratio", "output_top1_agreement_ratio")
EXPORTED = ("onnxruntime", "openvino")


def _entry(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "model": BERT, **SHAPE, "measurement": MEASUREMENT, **fields}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, pool: WorkerPool
            ) -> dict[str, BenchmarkResult]:
    """One run of the suite of every backend (no store: the only numerics reference is
    the eager float32 result of this run)."""
    path = write_config(tmp_path_factory.mktemp("backends") / "backends.yml",
                        [_entry(name, **fields) for name, fields in VARIANTS.items()])
    outcome = run_once(load_config(path), pool=pool, confirm=False)
    [run] = outcome.runs
    by_name = {r.spec.name: r for r in run.results}
    assert list(by_name) == list(VARIANTS)
    return by_name


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_backend_runs_and_reports_latency(results: dict[str, BenchmarkResult],
                                                name: str) -> None:
    result = results[name]
    assert result.failure is None, result.failure
    assert result.status == "ok"
    assert result.resolved_task is Task.TEXT_CLASSIFICATION
    for metric in LATENCY:
        value = result.metrics[metric]
        assert math.isfinite(value) and value > 0, (metric, value)
    m = result.metrics
    assert m["latency_min_seconds"] <= m["latency_p50_seconds"] <= m["latency_p90_seconds"]
    assert result.measurement is not None and result.measurement.iterations >= 3


@pytest.mark.parametrize("name", list(VARIANTS))
def test_export_time_only_for_exported_graphs(results: dict[str, BenchmarkResult],
                                              name: str) -> None:
    metrics = results[name].metrics
    if name in EXPORTED:
        assert metrics["export_time_seconds"] > 0
    else:
        assert "export_time_seconds" not in metrics
    # torch.compile reports compilation apart (on its first call), nobody else does.
    assert ("compile_time_seconds" in metrics) == (name == "compile")


def test_the_reference_has_no_drift(results: dict[str, BenchmarkResult]) -> None:
    reference = results["eager"]
    assert not [k for k in reference.metrics if k.startswith("output_")]
    # ...but carries the fingerprint the others are compared with.
    assert len(reference.samples["output_sample"]) == 256


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "eager"])
def test_every_other_result_has_drift(results: dict[str, BenchmarkResult], name: str) -> None:
    metrics = results[name].metrics
    for metric in DRIFT:
        assert math.isfinite(metrics[metric]), (metric, metrics.get(metric))
        assert metrics[metric] >= 0
    # Relative to the reference's largest sampled value, as collector/analysis/numerics.py defines.
    scale = max(abs(v) for v in results["eager"].samples["output_sample"])
    assert metrics["output_max_rel_diff_ratio"] == pytest.approx(
        metrics["output_max_abs_diff"] / scale)
    assert metrics["output_top1_agreement_ratio"] <= 1.0
    assert "output_token_agreement_ratio" not in metrics  # generation only


@pytest.mark.parametrize("name", ["eager-attn", "sdpa", "compile", "onnxruntime", "openvino"])
def test_float32_backends_compute_the_same_outputs(results: dict[str, BenchmarkResult],
                                                   name: str) -> None:
    """Another attention kernel, inductor, or an exported graph at float32: the same
    function to float32 rounding (OpenVINO pinned to f32, see its backend)."""
    metrics = results[name].metrics
    assert metrics["output_max_rel_diff_ratio"] < 1e-3
    assert metrics["output_top1_agreement_ratio"] == 1.0


@pytest.mark.parametrize("name", ["int8-dynamic", "int8-weight-only"])
def test_int8_drift_is_bounded(results: dict[str, BenchmarkResult], name: str) -> None:
    """int8 weights (and, for dynamic, int8 activations) move the logits. Measured on this
    model (2x64, seed 0, torchao 0.18): max relative difference 0.038 (int8-dynamic) and
    0.028 (weight-only), top-1 unchanged. The bound, 0.2, is five times that: room for
    another torchao or CPU kernel, while a quantization that computes something else (an
    unrelated output is off by ~1 relative) still fails. Above 0: the quantization was
    applied at all (an unquantized model is bit-identical to the reference)."""
    metrics = results[name].metrics
    assert 0 < metrics["output_max_rel_diff_ratio"] < 0.2
    assert metrics["output_max_abs_diff"] > 0
    assert metrics["output_top1_agreement_ratio"] >= 0.5


@pytest.mark.parametrize("name", ["int8-dynamic", "int8-weight-only"])
def test_int8_model_size_counts_what_the_weights_store(results: dict[str, BenchmarkResult],
                                                       name: str) -> None:
    """torchao's quantized weights report float32 as their dtype; the size counts the int8
    data and scales they hold. Only the linear layers are quantized (embeddings, norms and
    biases stay float32), so the model shrinks by less than 4x, but it shrinks."""
    plain = results["eager"].metrics["model_size_bytes"]
    quantized = results[name].metrics["model_size_bytes"]
    assert 0 < quantized < 0.9 * plain


DELAY_MS = 30.0


def test_delay_ms_slows_an_exported_graph(results: dict[str, BenchmarkResult],
                                          pool: WorkerPool, host_env: Environment) -> None:
    """ONNX Runtime runs no torch module for the forward hook to slow down: the worker
    wraps its step instead, once."""
    spec = BenchmarkSpec.model_validate({
        "suite": "t", "name": "onnxruntime", "backend": "onnxruntime",
        "model": {**BERT, "delay_ms": DELAY_MS}, **SHAPE, "measurement": MEASUREMENT})
    delayed = run_benchmark(pool, spec, host_env)
    assert delayed.status == "ok", delayed.failure
    without = results["onnxruntime"].metrics["latency_p50_seconds"]
    with_delay = delayed.metrics["latency_p50_seconds"]
    assert with_delay >= without + DELAY_MS / 1e3
    assert with_delay < without + 2 * DELAY_MS / 1e3  # slept once per step, not twice
    # The delay is fault injection, not identity: the same series as without it.
    assert delayed.series_id == results["onnxruntime"].spec.series_id("test-host")


@pytest.fixture
def hidden_runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Processes (the collector, its forkserver, its workers) in which onnxruntime, openvino
    and torchao look uninstalled: a sitecustomize on PYTHONPATH marks them absent in
    sys.modules, so `import` fails and importlib.util.find_spec says None, as it does for
    a package that is not there (transformers asks find_spec before importing torchao)."""
    fake = tmp_path / "hidden"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(
        "import sys\n"
        "for name in ('onnxruntime', 'openvino', 'torchao'):\n"
        "    sys.modules[name] = None  # uninstalled, as far as this interpreter knows\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    yield fake


def test_missing_runtime_fails_that_benchmark_alone(tmp_path: Path,
                                                    hidden_runtimes: Path) -> None:
    config = write_config(tmp_path / "c.yml", [
        _entry("onnx", backend="onnxruntime"), _entry("plain"),
        _entry("ov", backend="openvino"), _entry("int8", quantization="int8-dynamic")])
    out = tmp_path / "results.json"
    proc = collector("run-once", "--config", str(config), "--output", str(out),
                     "--no-confirm", "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a benchmark failed
    assert "Traceback" not in proc.stdout + proc.stderr
    [run] = json.loads(out.read_text())["runs"]
    onnx, plain, ov, int8 = run["results"]
    assert plain["status"] == "ok", plain["failure"]
    # Each missing package fails its own benchmarks, naming its own extra.
    for result, module, extra in ((ov, "openvino", "openvino"),
                                  (int8, "torchao.quantization", "quant")):
        assert result["status"] == "failed"
        assert result["failure"]["kind"] == FailureKind.BACKEND_UNAVAILABLE.value
        assert result["failure"]["message"].startswith(
            f"{module} is not installed in the worker's environment"), result["failure"]
        assert f"pip install 'transformers-perf-collector[{extra}]'" in result["failure"]["message"]
    assert onnx["status"] == "failed"
    failure = onnx["failure"]
    assert failure["kind"] == FailureKind.BACKEND_UNAVAILABLE.value
    assert "onnxruntime is not installed in the worker's environment" in failure["message"]
    assert "import of onnxruntime halted" in failure["message"]
    assert "pip install 'transformers-perf-collector[onnx]'" in failure["message"]
    assert failure["traceback_tail"] is None  # a diagnosis, not a crash: no worker frames
    # Said on the terminal too, with the kind.
    assert "backend_unavailable: onnxruntime is not installed" in proc.stderr
    assert "pip install 'transformers-perf-collector[onnx]'" in proc.stderr


def test_generation_on_a_forward_only_backend_is_a_clear_failure(
        pool: WorkerPool, host_env: Environment) -> None:
    """`task: auto` resolves in the worker (a hub or local model's config names the
    architecture); the worker checks the capability table with the resolved task before
    exporting anything."""
    spec = BenchmarkSpec.model_validate(spec_dict("gpt2", backend="onnxruntime"))
    assert spec.task is Task.AUTO and TINY_MODELS["gpt2"]["architecture"] == "GPT2LMHeadModel"
    result = run_benchmark(pool, spec, host_env)
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXCEPTION
    assert result.failure.traceback_tail is None
    assert result.failure.message == (
        "backend onnxruntime runs feature-extraction, image-classification, "
        "text-classification, zero-shot-image-classification, not text-generation")


def _worker_failure(script: str) -> tuple[str, str]:
    """(kind, message) of the WorkerFailure that `script`, run in a fresh process (torch
    stays out of this one), prints as `kind|message`."""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kind, message = proc.stdout.strip().splitlines()[-1].split("|", 1)
    return kind, message


TENSORRT_CHECK = """
import sys, tempfile
from pathlib import Path
import torch
from collector.domain.model import BenchmarkSpec, FailureKind, Task
from collector.adapters.measure.backends import get
from collector.adapters.measure.backends.base import Context
from collector.adapters.measure.isolation import WorkerFailure
spec = BenchmarkSpec.model_validate({
    "suite": "t", "name": "trt", "backend": "onnxruntime", "device": "cuda",
    "onnxruntime": {"execution_provider": "tensorrt"},
    "model": {"source": "synthetic", "architecture": "BertModel", "config": {}}})
context = Context(spec, Task.FEATURE_EXTRACTION, {}, torch.device("cpu"), None,
                  Path(tempfile.mkdtemp()))
try:
    get(spec.backend).prepare(object(), context)
except WorkerFailure as failure:
    print(failure.kind.value, failure, sep="|")
    sys.exit(0)
sys.exit("prepared without TensorRT")
"""


def test_a_missing_execution_provider_is_backend_unavailable() -> None:
    """TensorRT (or CUDA) missing from the installed onnxruntime is said before anything is
    exported. The CPU wheel here has neither, so the backend is asked directly (in a fresh
    process: torch stays out of this one), with the spec's device and a CPU context."""
    kind, message = _worker_failure(TENSORRT_CHECK)
    assert kind == FailureKind.BACKEND_UNAVAILABLE.value
    assert message.startswith("onnxruntime here has no TensorrtExecutionProvider (it has ")
    assert "CPUExecutionProvider" in message
    assert message.endswith("install onnxruntime-gpu and TensorRT (its libnvinfer)")


FLASH_CHECK = """
import sys
from collector.domain.model import BenchmarkSpec
from collector.adapters.measure.backends import get
from collector.adapters.measure.isolation import WorkerFailure
spec = BenchmarkSpec.model_validate({
    "suite": "t", "name": "flash", "device": "cuda", "attn_implementation": "flash_attention_2",
    "model": {"source": "synthetic", "architecture": "BertModel", "config": {}}})
try:
    get(spec.backend).load_kwargs(spec)
except WorkerFailure as failure:
    print(failure.kind.value, failure, sep="|")
    sys.exit(0)
sys.exit("loading would have been tried without flash-attn")
"""


def test_flash_attention_without_its_package_is_backend_unavailable() -> None:
    """Asked before loading, so the failure names the package instead of transformers'
    ImportError from deep inside from_pretrained (flash-attn is not installed here)."""
    kind, message = _worker_failure(FLASH_CHECK)
    assert kind == FailureKind.BACKEND_UNAVAILABLE.value
    assert message.startswith("flash_attn is not installed in the worker's environment")
    assert "`pip install flash-attn --no-build-isolation`" in message
