"""Scripts written for the transformers benchmark module, run by the collector: its
BenchmarkConfig / ModelBenchmark / run_benchmark / save_results usage (model comparison, CPU
vs CUDA, batch benchmarking), offline on local models saved with save_pretrained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.config import load_config
from collector.adapters.config.legacy import nvidia_present
from collector.compat.transformers_benchmark import (
    BenchmarkConfig,
    ModelBenchmark,
    run_benchmarks,
    save_results,
)
from collector.domain.errors import ConfigError
from collector.domain.model import LocalSource, Task
from tests.helpers import ROOT, save_tiny_model

FAST: dict[str, Any] = {"num_iterations": 5, "warmup_iterations": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny models saved as a user's own checkpoints are (a directory with config.json)."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_model(root / "bert", "BertModel", "BertConfig", num_hidden_layers=1,
                    hidden_size=32, num_attention_heads=2, intermediate_size=64,
                    vocab_size=512)
    save_tiny_model(root / "gpt2", "GPT2LMHeadModel", "GPT2Config", n_layer=1, n_embd=32,
                    n_head=2, n_positions=128, vocab_size=512, bos_token_id=1,
                    eos_token_id=2)
    return {name: str(root / name) for name in ("bert", "gpt2")}


def test_model_comparison(models: dict[str, str], tmp_path: Path) -> None:
    """The module's model comparison: one ModelBenchmark per model, then save_results."""
    results = []
    for name in ("bert", "gpt2"):
        config = BenchmarkConfig(model_name_or_path=models[name], batch_size=1,
                                 sequence_length=32, num_tokens_to_generate=8, **FAST)
        results.append(ModelBenchmark(config).run_benchmark())
    bert, gpt2 = results
    assert [r.error for r in results] == [None, None]
    assert (bert.result.resolved_task, gpt2.result.resolved_task) == (
        Task.FEATURE_EXTRACTION, Task.TEXT_GENERATION)
    for result in results:
        metrics = result.result.metrics
        assert result.inference_time == metrics["latency_p50_seconds"] > 0
        assert result.throughput_samples_per_second == metrics["throughput_samples_per_second"]
        assert result.memory_usage_mb == metrics["peak_rss_bytes"] / 2**20 > 10
        assert result.result.measurement is not None
        assert result.result.measurement.iterations == 5
    assert bert.time_to_first_token is None
    assert bert.tokens_per_second == bert.result.metrics["throughput_input_tokens_per_second"]
    assert gpt2.time_to_first_token == gpt2.result.metrics["time_to_first_token_p50_seconds"]
    # a local model's task is the worker's to read (auto): sequence_length is the prompt
    assert (gpt2.result.spec.task, gpt2.result.spec.sequence_length) == (Task.AUTO, 32)
    assert gpt2.result.spec.new_tokens == 8
    assert gpt2.inference_time is not None
    assert gpt2.tokens_per_second == pytest.approx(8 / gpt2.inference_time)
    path = save_results(results, tmp_path / "comparison.json")
    document = json.loads(path.read_text())
    assert [r["model_name"] for r in document["benchmark_results"]] == [models["bert"],
                                                                      models["gpt2"]]
    assert document["benchmark_results"][1]["task"] == "text-generation"
    assert document["summary"]["total_benchmarks"] == 2
    assert document["summary"]["successful_benchmarks"] == 2
    assert document["summary"]["fastest_model"] in models.values()


def test_cpu_vs_cuda(models: dict[str, str], tmp_path: Path) -> None:
    """The module's CPU vs CUDA example. Without a GPU the CUDA half is a failed result that
    says so, never an exception."""
    cpu, cuda = run_benchmarks([
        BenchmarkConfig(model_name_or_path=models["bert"], sequence_length=16,
                        **{**FAST, "device": device}) for device in ("cpu", "cuda")])
    assert cpu.success and cpu.inference_time is not None
    assert cuda.result.spec.device == "cuda"
    if nvidia_present():
        assert cuda.success, cuda.error
        assert cuda.memory_usage_mb == cuda.result.metrics["cuda_max_allocated_bytes"] / 2**20
    else:
        assert not cuda.success and cuda.result.status == "failed"
        assert cuda.error == ("exception: device 'cuda' requested but CUDA is not available "
                              "here")
        assert (cuda.inference_time, cuda.memory_usage_mb, cuda.tokens_per_second) == (
            None, None, None)
    bench = ModelBenchmark(cuda.config)
    bench.results.extend([cpu, cuda])
    document = json.loads(bench.save_results(tmp_path / "devices.json").read_text())
    assert document["summary"]["failed_benchmarks"] == (0 if nvidia_present() else 1)
    assert document["benchmark_results"][1]["success"] is nvidia_present()


def test_batch_benchmarking(models: dict[str, str]) -> None:
    """The module's batch sweep: one config per batch size, run together."""
    results = run_benchmarks([BenchmarkConfig(model_name_or_path=models["bert"],
                                              batch_size=size, sequence_length=16, **FAST)
                              for size in (1, 2, 4)])
    assert [r.result.spec.batch_size for r in results] == [1, 2, 4]
    assert [r.result.spec.name for r in results] == ["bert", "bert-2", "bert-3"]
    assert all(r.success for r in results)
    for result in results:
        assert result.throughput_samples_per_second == pytest.approx(
            result.result.spec.batch_size / (result.inference_time or 0))


def test_one_translation_for_files_and_scripts(models: dict[str, str], tmp_path: Path) -> None:
    config = BenchmarkConfig(model_name_or_path="gpt2", sequence_length=1024, device="cpu",
                             torch_dtype="float16", num_iterations=20, warmup_iterations=10)
    old = tmp_path / "default.yml"
    old.write_text("benchmarks:\n  - model_name_or_path: gpt2\n    sequence_length: 1024\n"
                   "    num_iterations: 20\n    device: cpu\nglobal_settings:\n"
                   "  warmup_iterations: 10\n  torch_dtype: float16\n")
    [from_file] = load_config(old).suites[0].benchmarks
    assert config.spec.identity() == from_file.identity()
    assert config.spec.measurement == from_file.measurement
    assert any("a prompt of 924 tokens and 100 new tokens" in n for n in config.notes)
    local = BenchmarkConfig(model_name_or_path=models["bert"])
    assert isinstance(local.spec.model, LocalSource) and local.spec.task is Task.AUTO
    assert local.spec.measurement.min_iterations == 100  # the module's defaults


@pytest.mark.parametrize(("fields", "expected"), [
    ({"device": "tpu"}, "BenchmarkConfig: benchmarks[0].device: expected cuda, cuda:N, cpu or "
                        "auto (got 'tpu')"),
    ({"use_cache": False}, "BenchmarkConfig: benchmarks[0].use_cache: no equivalent"),
    ({"batch_size": 0}, "BenchmarkConfig: benchmarks[0].batch_size: Input should be greater "
                        "than or equal to 1"),
    ({"model_name_or_path": "./missing"}, "benchmarks[0].model_name_or_path: a path"),
])
def test_a_bad_field_is_a_config_error_naming_it(fields: dict[str, Any],
                                                  expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BenchmarkConfig(**{"model_name_or_path": "gpt2", **fields})
    assert expected in str(caught.value)


def test_the_adapter_imports_no_torch() -> None:
    probe = ("import sys\nfrom collector.compat.transformers_benchmark import BenchmarkConfig\n"
             "spec = BenchmarkConfig(model_name_or_path='gpt2', device='cpu').spec\n"
             "print(spec.task.value, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.stdout.split() == ["text-generation", "False"], done.stdout + done.stderr
