"""The attention and kernel dimensions transformers' benchmark_v2 sweeps, through real workers
on tiny synthetic models: flex_attention where the model and torch support it (and a clear
backend_unavailable where not), the SDPA kernel (math and flash run on a CPU; efficient and
cudnn are CUDA kernels), and the Hub `kernels` (not installed here)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from collector.adapters.measure import WorkerPool, run_benchmark
from collector.domain import capabilities
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Environment, FailureKind
from collector.domain.series import series_info
from tests.helpers import spec_dict


def _spec(model: str, **overrides: Any) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate(spec_dict(model, threads=1, **overrides))


def _ok(result: BenchmarkResult) -> BenchmarkResult:
    assert result.failure is None, result.failure
    assert result.status == "ok"
    assert result.metrics["latency_p50_seconds"] > 0
    return result


def _unavailable(result: BenchmarkResult) -> str:
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind is FailureKind.BACKEND_UNAVAILABLE, result.failure
    return result.failure.message


@pytest.mark.slow
@pytest.mark.parametrize("model", ["llama", "bert"], ids=["generate-llama", "forward-bert"])
def test_flex_attention_runs_where_the_model_implements_it(
        pool: WorkerPool, host_env: Environment, model: str) -> None:
    """Llama and BERT implement flex_attention: generate() and a forward pass run it
    (inductor compiles the flex kernel on the first call, on a CPU too: most of this file's
    time)."""
    spec = _spec(model, attn_implementation="flex_attention")
    result = _ok(run_benchmark(pool, spec, host_env))
    assert result.metrics["first_call_seconds"] > result.metrics["latency_p50_seconds"]
    assert "attn=flex_attention" in spec.label
    assert spec.identity()["attn_implementation"] == "flex_attention"


@pytest.mark.slow
def test_flex_attention_inside_a_compiled_graph_that_inductor_cannot_lower(
        pool: WorkerPool, host_env: Environment) -> None:
    """BERT's whole-model graph with flex_attention does not lower in inductor on a CPU
    (torch 2.13), while the eager backend runs it (above): backend_unavailable saying so."""
    spec = _spec("bert", backend="compile", attn_implementation="flex_attention")
    message = _unavailable(run_benchmark(pool, spec, host_env))
    assert message.startswith("flex_attention does not compile inside backend compile's graph "
                              "on cpu with torch "), message
    assert message.endswith("backend eager runs it (transformers compiles the flex kernel on "
                            "its own)")


def test_flex_attention_on_a_model_without_it_is_backend_unavailable(
        pool: WorkerPool, host_env: Environment) -> None:
    """GPT-2 has no flex_attention in transformers 5.24: said from the model class before
    loading, naming what it runs instead; a config cannot know it (the class decides)."""
    spec = _spec("gpt2", attn_implementation="flex_attention")
    assert capabilities.problem(spec) is None
    message = _unavailable(run_benchmark(pool, spec, host_env))
    assert message.startswith("GPT2LMHeadModel does not support attn_implementation "
                              "flex_attention in transformers "), message
    assert "it runs eager, sdpa" in message


def test_sdpa_math_and_flash_run_on_cpu_as_two_series(
        pool: WorkerPool, host_env: Environment) -> None:
    """Both CPU kernels of SDPA run generate(); each is its own series and label, and greedy
    decoding gives the same tokens with either kernel (the same attention, two kernels)."""
    results = {}
    for kernel in ("math", "flash"):
        spec = _spec("llama", attn_implementation="sdpa", sdpa_backend=kernel)
        results[kernel] = _ok(run_benchmark(pool, spec, host_env))
        assert f"attn=sdpa/{kernel}" in spec.label
        assert series_info(results[kernel]).attn_implementation == f"sdpa/{kernel}"
        assert spec.identity()["sdpa_backend"] == kernel
    plain = _spec("llama", attn_implementation="sdpa")
    ids = {plain.series_id("h"), *(r.spec.series_id("h") for r in results.values())}
    assert len(ids) == 3
    assert "sdpa_backend" not in plain.identity()
    tokens = [r.samples["output_tokens"] for r in results.values()]
    assert tokens[0] == tokens[1] and len(tokens[0]) > 0


def test_sdpa_kernel_under_continuous_batching(pool: WorkerPool, host_env: Environment) -> None:
    """The SDPA kernel holds in the batching scheduler's thread too (torch's switches are
    process-wide)."""
    fields = spec_dict("llama", threads=1, attn_implementation="sdpa", sdpa_backend="flash")
    del fields["sequence_length"], fields["new_tokens"]
    fields["batching"] = {"requests": 4, "input_tokens": {"mean": 8},
                          "output_tokens": {"mean": 4}, "num_blocks": 16,
                          "max_batch_tokens": 64}
    spec = BenchmarkSpec.model_validate(fields)
    result = _ok(run_benchmark(pool, spec, host_env))
    assert result.metrics["request_error_ratio"] == 0
    assert "attn=sdpa/flash" in spec.label and "[cb 4 req]" in spec.label


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"attn_implementation": "sdpa", "sdpa_backend": "efficient"},
     "sdpa_backend efficient is a CUDA kernel of scaled_dot_product_attention; torch "),
    ({"attn_implementation": "sdpa", "sdpa_backend": "cudnn"},
     "sdpa_backend cudnn is a CUDA kernel"),
    ({"kernels": True},
     "kernels: true needs the Hugging Face kernels package, which is not installed in the "
     "worker's environment"),
], ids=["efficient-on-cpu", "cudnn-on-cpu", "kernels-not-installed"])
def test_what_cannot_run_here_is_backend_unavailable(
        pool: WorkerPool, host_env: Environment, overrides: dict[str, Any],
        fragment: str) -> None:
    """Said before the model is loaded. A CUDA kernel on a CPU is a config error as well
    (check-config knows the device); whether `kernels` is installed only the worker knows."""
    spec = _spec("bert", **overrides)
    refused = capabilities.problem(spec)
    assert (refused is not None) is ("sdpa_backend" in overrides)
    message = _unavailable(run_benchmark(pool, spec, host_env))
    assert fragment in message, message
    if "kernels" in overrides:
        assert "pip install kernels; it fetches kernels from the Hugging Face Hub" in message
        assert "attn=auto+kernels" in spec.label and spec.identity()["kernels"] is True


def test_flex_attention_under_continuous_batching_is_backend_unavailable(
        pool: WorkerPool, host_env: Environment) -> None:
    fields = spec_dict("llama", threads=1, attn_implementation="flex_attention")
    del fields["sequence_length"], fields["new_tokens"]
    fields["batching"] = {"requests": 2}
    spec = BenchmarkSpec.model_validate(fields)
    assert capabilities.problem(spec) == ("attn_implementation", (
        "batching runs attention eager (as paged|eager), sdpa or flash_attention_2; "
        "transformers refuses flex_attention under continuous batching"))
    message = _unavailable(run_benchmark(pool, spec, host_env))
    assert message.startswith("flex_attention does not run under continuous batching"), message


# The kernel is really held: a CPU call of SDPA under a CUDA-only kernel has no viable
# backend, which the worker says as backend_unavailable (in a fresh process: torch stays out
# of this one).
HELD_CHECK = """
import torch
from collector.adapters.measure.attention import sdpa_kernel
from collector.adapters.measure.isolation import WorkerFailure
from collector.domain.model import BenchmarkSpec
spec = BenchmarkSpec.model_validate({
    "suite": "t", "name": "held", "device": "cuda", "attn_implementation": "sdpa",
    "sdpa_backend": "efficient", "model": {"source": "synthetic", "architecture": "BertModel"}})
q = torch.randn(1, 2, 4, 8)
torch.nn.functional.scaled_dot_product_attention(q, q, q)
try:
    with sdpa_kernel(spec):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
except WorkerFailure as failure:
    torch.nn.functional.scaled_dot_product_attention(q, q, q)  # restored on the way out
    print(failure.kind.value, failure, sep="|")
"""


def test_the_sdpa_kernel_is_held_and_its_failure_is_backend_unavailable() -> None:
    proc = subprocess.run([sys.executable, "-c", HELD_CHECK], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kind, message = proc.stdout.strip().splitlines()[-1].split("|", 1)
    assert kind == FailureKind.BACKEND_UNAVAILABLE.value
    assert message.startswith("sdpa_backend efficient cannot run this model's attention on "
                              "cuda with float32 (torch "), message
    assert "No viable backend for scaled_dot_product_attention" in message
