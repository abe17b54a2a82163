"""Each task kind end to end through the real worker isolation, on tiny synthetic models."""

from __future__ import annotations

import math
import sys

import pytest

from collector.adapters.measure import WorkerPool, run_benchmark
from collector.domain.catalogue import METRICS
from collector.domain.model import BenchmarkSpec, Environment, FailureKind, Task
from tests.helpers import spec_dict

FORWARD_METRICS = {
    "load_time_seconds", "first_call_seconds", "latency_p50_seconds", "latency_p90_seconds",
    "latency_p99_seconds", "latency_mean_seconds", "latency_min_seconds",
    "latency_stdev_seconds", "latency_cv_ratio", "throughput_samples_per_second",
    "peak_rss_bytes", "load_peak_rss_bytes", "model_size_bytes",
}
GENERATION_METRICS = FORWARD_METRICS | {
    "time_to_first_token_p50_seconds", "time_to_first_token_mean_seconds",
    "inter_token_latency_mean_seconds", "inter_token_latency_p90_seconds",
    "decode_tokens_per_second", "generated_tokens_per_second",
}


@pytest.mark.parametrize(("model", "task", "expected", "tokens"), [
    ("gpt2", Task.TEXT_GENERATION, GENERATION_METRICS | {"prefill_tokens_per_second"}, True),
    ("llama", Task.TEXT_GENERATION, GENERATION_METRICS | {"prefill_tokens_per_second"}, True),
    ("bert", Task.TEXT_CLASSIFICATION, FORWARD_METRICS | {"throughput_input_tokens_per_second"},
     True),
    ("bert-base", Task.FEATURE_EXTRACTION,
     FORWARD_METRICS | {"throughput_input_tokens_per_second"}, True),
    ("vit", Task.IMAGE_CLASSIFICATION, FORWARD_METRICS, False),
    ("whisper", Task.SPEECH_RECOGNITION, GENERATION_METRICS, False),
    ("clip", Task.ZERO_SHOT_IMAGE_CLASSIFICATION,
     FORWARD_METRICS | {"throughput_input_tokens_per_second"}, True),
])
def test_task_end_to_end(pool: WorkerPool, host_env: Environment, *, model: str, task: Task,
                         expected: set[str], tokens: bool) -> None:
    spec = BenchmarkSpec.model_validate(spec_dict(model, batch_size=2))
    result = run_benchmark(pool, spec, host_env)
    assert result.failure is None, result.failure
    assert result.status == "ok"
    assert result.resolved_task is task
    assert set(result.metrics) == expected
    for name, value in result.metrics.items():
        assert (math.isfinite(value) and value > 0) or name == "latency_stdev_seconds", name
        assert name in METRICS
    m = result.metrics
    assert m["latency_min_seconds"] <= m["latency_p50_seconds"] <= m["latency_p90_seconds"]
    assert m["latency_p90_seconds"] <= m["latency_p99_seconds"]
    assert m["throughput_samples_per_second"] == pytest.approx(2 / m["latency_p50_seconds"])
    if "generated_tokens_per_second" in expected:  # both sequences' 4 new tokens per call
        assert m["generated_tokens_per_second"] == pytest.approx(2 * 4 / m["latency_p50_seconds"])
    if tokens and task is not Task.TEXT_GENERATION:
        assert m["throughput_input_tokens_per_second"] == pytest.approx(
            2 * 8 / m["latency_p50_seconds"])
    # Raw samples are kept, one latency per measured iteration.
    assert result.measurement is not None
    assert len(result.samples["latency_seconds"]) == result.measurement.iterations
    assert result.measurement.iterations >= 3
    assert m["peak_rss_bytes"] > 50 * 2**20  # torch alone is bigger than this
    assert m["model_size_bytes"] < 10 * 2**20
    if task in (Task.TEXT_GENERATION, Task.SPEECH_RECOGNITION):
        # 4 new tokens per call: one TTFT per call, three gaps per call.
        iterations = result.measurement.iterations
        assert len(result.samples["time_to_first_token_seconds"]) == iterations
        assert len(result.samples["inter_token_latency_seconds"]) == 3 * iterations
        assert m["time_to_first_token_p50_seconds"] < m["latency_p50_seconds"]
    # The worker fills in what only it knows; the parent never imported torch for it.
    assert result.environment.torch_threads is not None
    assert result.environment.torch_version is not None
    assert result.noise is not None and result.noise.wall_s > 0
    assert result.series_id == spec.series_id("test-host")


def test_dtype_is_applied(pool: WorkerPool, host_env: Environment) -> None:
    fp32 = run_benchmark(pool, BenchmarkSpec.model_validate(spec_dict("bert")), host_env)
    bf16 = run_benchmark(pool, BenchmarkSpec.model_validate(spec_dict("bert", dtype="bfloat16")),
                         host_env)
    assert bf16.status == "ok", bf16.failure
    assert bf16.metrics["model_size_bytes"] == pytest.approx(
        fp32.metrics["model_size_bytes"] / 2, rel=0.05)


def test_explicit_task_overrides_inference(pool: WorkerPool, host_env: Environment) -> None:
    spec = BenchmarkSpec.model_validate(spec_dict("bert-base", task="feature-extraction"))
    result = run_benchmark(pool, spec, host_env)
    assert result.resolved_task is Task.FEATURE_EXTRACTION


def test_input_longer_than_the_model_allows_is_a_clear_failure(
        pool: WorkerPool, host_env: Environment) -> None:
    spec = BenchmarkSpec.model_validate(spec_dict("gpt2", sequence_length=126, new_tokens=4))
    result = run_benchmark(pool, spec, host_env)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXCEPTION
    assert "needs 130 positions but the model supports at most 128" in result.failure.message


def test_invalid_synthetic_config_is_recorded_with_its_traceback(
        pool: WorkerPool, host_env: Environment) -> None:
    bad = spec_dict("bert")
    bad["model"] = {**bad["model"], "config": {**bad["model"]["config"], "hidden_size": 30,
                                               "num_attention_heads": 4}}
    result = run_benchmark(pool, BenchmarkSpec.model_validate(bad), host_env)
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXCEPTION
    assert "multiple of the number of attention heads" in result.failure.message
    assert result.failure.traceback_tail


def test_cuda_requested_without_cuda_is_a_clear_failure(
        pool: WorkerPool, host_env: Environment) -> None:
    result = run_benchmark(pool, BenchmarkSpec.model_validate(spec_dict("bert", device="cuda")),
                           host_env)
    if result.status == "ok":  # a machine with a GPU: the CUDA path ran
        assert "cuda_max_allocated_bytes" in result.metrics
        return
    assert result.failure is not None
    assert "CUDA is not available" in result.failure.message


def test_missing_local_model_is_model_unavailable(pool: WorkerPool, host_env: Environment
                                                  ) -> None:
    spec = BenchmarkSpec.model_validate(spec_dict(
        "bert", model={"source": "local", "path": "/nonexistent/model-dir"}))
    result = run_benchmark(pool, spec, host_env)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.MODEL_UNAVAILABLE
    assert result.failure.message == "local model directory '/nonexistent/model-dir' does not exist"


def test_unreachable_hub_model_is_model_unavailable(pool: WorkerPool, host_env: Environment
                                                    ) -> None:
    spec = BenchmarkSpec.model_validate(spec_dict(
        "bert", model={"source": "hub", "id": "no-such-org/no-such-model", "revision": "main"}))
    result = run_benchmark(pool, spec, host_env)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.MODEL_UNAVAILABLE
    assert "'no-such-org/no-such-model' at revision 'main' could not be fetched" in (
        result.failure.message)


def test_the_parent_never_imports_torch(pool: WorkerPool, host_env: Environment) -> None:
    run_benchmark(pool, BenchmarkSpec.model_validate(spec_dict("bert")), host_env)
    assert "torch" not in sys.modules
    assert "transformers" not in sys.modules or "torch" not in sys.modules


@pytest.mark.slow
def test_torch_compile_on_the_causal_lm(pool: WorkerPool, host_env: Environment) -> None:
    eager = run_benchmark(pool, BenchmarkSpec.model_validate(spec_dict("gpt2")), host_env)
    compiled = run_benchmark(pool, BenchmarkSpec.model_validate(
        spec_dict("gpt2", backend="compile", timeout_s=600)), host_env)
    assert compiled.status == "ok", compiled.failure
    m = compiled.metrics
    assert "compile_time_seconds" not in eager.metrics
    assert m["compile_time_seconds"] > 0
    # Compilation happens on the first call, which is reported apart from steady state.
    assert m["first_call_seconds"] > 5 * m["latency_p50_seconds"]
    assert m["compile_time_seconds"] == pytest.approx(
        m["first_call_seconds"] - m["latency_p50_seconds"])
    assert compiled.series_id != eager.series_id


def test_misspelt_synthetic_config_key_fails_instead_of_being_ignored(
        pool: WorkerPool, host_env: Environment) -> None:
    bad = spec_dict("gpt2")
    bad["model"] = {**bad["model"], "config": {**bad["model"]["config"], "n_layers": 12}}
    result = run_benchmark(pool, BenchmarkSpec.model_validate(bad), host_env)
    assert result.failure is not None
    assert result.failure.message == "unknown GPT2Config key(s) in model.config: n_layers"
