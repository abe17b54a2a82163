"""Scripts written for the transformers `benchmark/` module, run by the collector.

    from collector.compat.transformers_benchmark import BenchmarkConfig, ModelBenchmark

    bench = ModelBenchmark(BenchmarkConfig(model_name_or_path="gpt2", sequence_length=128,
                                           num_iterations=20, device="cpu"))
    result = bench.run_benchmark()
    print(result.inference_time, result.tokens_per_second, result.error)
    bench.save_results("results.json")      # {"benchmark_results": [...], "summary": {...}}

A BenchmarkConfig is one entry of the module's default.yml with its global settings beside
it; it becomes a BenchmarkSpec through the translation that reads the module's files
(collector/adapters/config/legacy.py: one mapping, not two; defaults as there, device
`auto`), and runs through collector.api.run: a fresh worker process, a hard timeout, a fixed
count of iterations, our statistics. A bad field raises ConfigError naming it when the
config is made; a failed benchmark is a result whose `error` says why, never an exception.

The module's result fields, from our metrics (docs/metrics.md):
- inference_time: the median latency of one iteration in seconds (latency_p50_seconds): a
  forward pass, or one whole generate() call for a generation model;
- throughput_samples_per_second: batch size / median latency (ours, same name);
- memory_usage_mb: peak memory in MiB: on cuda torch's peak allocation
  (cuda_max_allocated_bytes), else the worker's peak RSS while measuring (peak_rss_bytes);
- time_to_first_token: generation: the median seconds to the first new token
  (time_to_first_token_p50_seconds); else None;
- tokens_per_second: generation: new tokens per second of a whole generate() call (batch x
  new tokens / median latency); a text forward pass: input tokens per second
  (throughput_input_tokens_per_second); else None.
`result` is our whole BenchmarkResult: every metric, the samples, environment and quality.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.adapters.config import Config, legacy, load_document
from collector.adapters.files import write_atomic
from collector.api import results_of, run
from collector.domain.model import BenchmarkResult as Result
from collector.domain.model import BenchmarkSpec, Task
from collector.version import __version__

__all__ = ["BenchmarkConfig", "BenchmarkResult", "ModelBenchmark", "run_benchmarks",
           "save_results"]

MIB = float(1 << 20)


@dataclass(frozen=True)
class BenchmarkConfig:
    model_name_or_path: str
    batch_size: int = 1
    sequence_length: int | None = None  # None: 128 (a CLIP model's text: 16)
    num_iterations: int = legacy.NUM_ITERATIONS
    device: str = "auto"
    warmup_iterations: int = legacy.WARMUP_ITERATIONS
    torch_dtype: str = "float32"
    trust_remote_code: bool = False
    use_cache: bool = True
    num_tokens_to_generate: int | None = None  # None: 100, within sequence_length
    revision: str | None = None  # a Hub commit (trust_remote_code needs one)

    def __post_init__(self) -> None:
        _translated([self])  # a bad field is a ConfigError now, not when it runs

    @property
    def spec(self) -> BenchmarkSpec:
        return _translated([self]).suites[0].benchmarks[0]

    @property
    def notes(self) -> tuple[str, ...]:
        """What the translation decided (prompt length, device auto, ...); the first note,
        that it was translated, left out."""
        return _translated([self]).notes[1:]


def _translated(configs: Sequence[BenchmarkConfig]) -> Config:
    entries = [{k: v for k, v in dataclasses.asdict(c).items() if v is not None}
               for c in configs]
    return load_document({"benchmarks": entries}, "BenchmarkConfig")


@dataclass(frozen=True)
class BenchmarkResult:
    model_name: str
    config: BenchmarkConfig
    inference_time: float | None
    throughput_samples_per_second: float | None
    memory_usage_mb: float | None
    time_to_first_token: float | None
    tokens_per_second: float | None
    error: str | None
    result: Result

    @classmethod
    def of(cls, config: BenchmarkConfig, result: Result) -> BenchmarkResult:
        metric, spec = result.metrics.get, result.spec
        p50 = metric("latency_p50_seconds")
        generation = result.resolved_task is Task.TEXT_GENERATION
        tokens = metric("generated_tokens_per_second" if generation
                        else "throughput_input_tokens_per_second")
        memory = metric("cuda_max_allocated_bytes" if spec.device.startswith("cuda")
                        else "peak_rss_bytes")
        failure = result.failure
        return cls(config.model_name_or_path, config, p50,
                   metric("throughput_samples_per_second"),
                   memory / MIB if memory is not None else None,
                   metric("time_to_first_token_p50_seconds") if generation else None, tokens,
                   f"{failure.kind.value}: {failure.message}" if failure else None, result)

    @property
    def success(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The module's fields, its config, and what identifies our result."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("config", "result")}
        task = self.result.resolved_task or self.result.spec.task
        return {**fields, "success": self.success, "config": dataclasses.asdict(self.config),
                "task": task.value, "series_id": self.result.series_id,
                "label": self.result.spec.label}


def run_benchmarks(configs: Sequence[BenchmarkConfig], *, store: str | Path | None = None,
                   isolation: str = "forkserver") -> list[BenchmarkResult]:
    """Every config in one run (one suite, one worker per benchmark), in order."""
    specs = _translated(configs).suites[0].benchmarks
    ours = {r.spec.name: r for r in results_of(run(specs, store=store, isolation=isolation))}
    return [BenchmarkResult.of(c, ours[s.name]) for c, s in zip(configs, specs, strict=True)]


def save_results(results: Sequence[BenchmarkResult], path: str | Path) -> Path:
    """The module's JSON: `benchmark_results` (a list) and a `summary`."""
    done = [r for r in results if r.success and r.inference_time is not None]
    fastest = min(done, key=lambda r: r.inference_time or 0.0, default=None)
    summary = {"total_benchmarks": len(results), "successful_benchmarks": len(done),
               "failed_benchmarks": len(results) - len(done),
               "fastest_model": fastest.model_name if fastest else None,
               "fastest_inference_time": fastest.inference_time if fastest else None,
               "collector_version": __version__}
    target = Path(path)
    write_atomic(target, json.dumps({"benchmark_results": [r.to_dict() for r in results],
                                     "summary": summary}, indent=2) + "\n")
    return target


class ModelBenchmark:
    """One config, run as often as asked; `results` keeps each run's result."""

    def __init__(self, config: BenchmarkConfig, *, store: str | Path | None = None) -> None:
        self.config = config
        self.store = store
        self.results: list[BenchmarkResult] = []

    def run_benchmark(self) -> BenchmarkResult:
        [result] = run_benchmarks([self.config], store=self.store)
        self.results.append(result)
        return result

    def save_results(self, path: str | Path) -> Path:
        return save_results(self.results, path)
