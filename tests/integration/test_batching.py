"""Continuous batching end to end: real workers (through the worker pool, as every benchmark
runs), a tiny synthetic Llama, N seeded requests per measured batch."""

from __future__ import annotations

import math
from typing import Any

import pytest

from collector.adapters.measure import WorkerPool, run_benchmark
from collector.domain import capabilities
from collector.domain.catalogue import METRICS
from collector.domain.model import BenchmarkSpec, Environment, FailureKind, Task
from tests.helpers import spec_dict

REQUESTS, OUTPUT_TOKENS, BLOCKS = 8, 8, 64
# The cache is sized here: transformers' defaults on a CPU take 60% of the memory and fill
# a static attention mask of max_batch_tokens (8192) x cache tokens before the first step
# (about 20 s and gigabytes for this tiny model). 8 prompts of at most 24 tokens prefill
# in one step of 256 tokens.
BATCHING: dict[str, Any] = {
    "requests": REQUESTS,
    "input_tokens": {"mean": 16, "distribution": "uniform", "spread": 0.5},
    "output_tokens": {"mean": OUTPUT_TOKENS},
    "num_blocks": BLOCKS, "max_batch_tokens": 256,
}
PER_REQUEST = ("time_to_first_token", "inter_token_latency", "time_per_output_token",
               "request_latency")


def _spec(batching: dict[str, Any] | None = None, **overrides: Any) -> BenchmarkSpec:
    fields = spec_dict("llama", threads=1, **overrides)
    del fields["sequence_length"], fields["new_tokens"]  # the load's means
    fields["batching"] = batching or BATCHING
    return BenchmarkSpec.model_validate(fields)


def test_batching_end_to_end(pool: WorkerPool, host_env: Environment) -> None:
    spec = _spec()
    assert spec.task is Task.TEXT_GENERATION and spec.new_tokens == OUTPUT_TOKENS
    assert spec.identity()["batching"]["requests"] == REQUESTS
    assert spec.load == "cb 8 req"
    result = run_benchmark(pool, spec, host_env)
    assert result.failure is None, result.failure
    assert result.status == "ok"
    m = result.metrics
    assert set(m) <= set(METRICS)
    for name in ("request_throughput_per_second", "output_throughput_tokens_per_second",
                 "kv_cache_blocks", "kv_cache_peak_usage_ratio", "first_call_seconds",
                 "latency_p50_seconds", "request_error_ratio", "model_size_bytes",
                 "time_to_first_token_mean_seconds", "inter_token_latency_mean_seconds"):
        assert name in m, name
    for name, value in m.items():
        assert math.isfinite(value), name
    for figure in ("latency", *PER_REQUEST):
        p50, p90, p99 = (m[f"{figure}_{q}_seconds"] for q in ("p50", "p90", "p99"))
        assert 0 < p50 <= p90 <= p99, figure
    assert "goodput_requests_per_second" not in m  # no SLOs: it would repeat the rate
    assert m["request_error_ratio"] == 0

    # Raw samples: one batch time per iteration, one TTFT and E2E per request, every gap.
    assert result.measurement is not None
    iterations = result.measurement.iterations
    batches = result.samples["latency_seconds"]
    assert len(batches) == iterations >= 3
    assert len(result.samples["time_to_first_token_seconds"]) == REQUESTS * iterations
    assert len(result.samples["request_latency_seconds"]) == REQUESTS * iterations
    assert len(result.samples["inter_token_latency_seconds"]) == (
        REQUESTS * (OUTPUT_TOKENS - 1) * iterations)

    # The rates are over the summed batch times: exactly N requests and N x 8 tokens per
    # batch (every request generates exactly its output length). At the median batch time
    # they differ by the mean/median ratio of the batch times, which is bounded by the
    # fastest and the slowest batch.
    tokens = REQUESTS * OUTPUT_TOKENS
    assert m["request_throughput_per_second"] == pytest.approx(
        REQUESTS * iterations / sum(batches))
    assert m["output_throughput_tokens_per_second"] == pytest.approx(
        tokens * iterations / sum(batches))
    assert tokens / max(batches) <= m["output_throughput_tokens_per_second"] <= (
        tokens / min(batches))
    # Every request lives inside its batch; its first token comes before its last.
    assert max(result.samples["request_latency_seconds"]) <= max(batches)
    assert m["time_to_first_token_p50_seconds"] < m["request_latency_p50_seconds"]

    # The KV cache: its capacity in blocks, and the share of it the batch used at most: with
    # the default page of 256 tokens, each request (at most 32 tokens) holds one block.
    assert m["kv_cache_blocks"] == BLOCKS
    assert m["kv_cache_peak_usage_ratio"] == pytest.approx(REQUESTS / BLOCKS)
    assert result.series_id == spec.series_id("test-host")


def test_unavailable_attention_then_another_batching_benchmark(
        pool: WorkerPool, host_env: Environment) -> None:
    """flash_attention_2 on CPU is a recorded backend_unavailable failure (check-config says
    so too); the next benchmark, with another page size (another series), still runs."""
    flash = _spec(attn_implementation="flash_attention_2")
    assert capabilities.problem(flash) is not None  # refused by check-config as well
    failed = run_benchmark(pool, flash, host_env)
    assert failed.status == "failed"
    assert failed.failure is not None
    assert failed.failure.kind is FailureKind.BACKEND_UNAVAILABLE
    assert "flash_attention_2 under continuous batching needs a CUDA device" in (
        failed.failure.message)

    paged = _spec({**BATCHING, "page_size": 8}, attn_implementation="eager")
    assert paged.series_id("test-host") != _spec(attn_implementation="eager").series_id(
        "test-host")
    result = run_benchmark(pool, paged, host_env)
    assert result.failure is None, result.failure
    assert result.metrics["output_throughput_tokens_per_second"] > 0
    assert result.metrics["kv_cache_blocks"] >= 1


@pytest.mark.parametrize(("overrides", "field"), [
    ({"backend": "onnxruntime"}, "backend"),
    ({"measurement": {"mode": "instructions", "min_iterations": 3}}, "measurement"),
    ({"compile": {"fullgraph": True}, "backend": "compile"}, "compile"),
    ({"task": "text-classification"}, "task"),
])
def test_what_batching_cannot_run(overrides: dict[str, Any], field: str) -> None:
    spec = _spec(**overrides)
    assert field in {f for f, _ in capabilities.problems(spec)}
