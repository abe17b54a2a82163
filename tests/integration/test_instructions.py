"""Measurement mode `instructions` through the real runner, under real valgrind.

One valgrind forkserver serves the whole session (the `pool` fixture); its start-up (~35 s
on 2 cores) is most of this module's cost, each tiny-model benchmark after it ~5-15 s.
Without valgrind or a C compiler the valgrind tests are skipped, except under CI (the `CI`
environment variable is non-empty), where they fail.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.measure import WorkerPool, run_benchmark
from collector.adapters.measure.valgrind import build_client_library
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Environment, FailureKind
from tests.helpers import TINY_MODELS, spec_dict
from tests.integration import faults

INSTRUCTIONS = {"mode": "instructions", "warmup_iterations": 1, "min_iterations": 3}
FORWARD_METRICS = {"instructions_per_iteration", "model_size_bytes"}
GENERATION_METRICS = FORWARD_METRICS | {"instructions_per_token"}


@pytest.fixture(scope="module")
def valgrind() -> None:
    missing = [tool for tool in ("valgrind", "cc") if shutil.which(tool) is None]
    if missing:
        reason = f"instructions mode needs {' and '.join(missing)} (apt-get install valgrind gcc)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the valgrind tests: {reason}")
        pytest.skip(reason)


def _spec(name: str = "bert", **fields: Any) -> BenchmarkSpec:
    fields.setdefault("measurement", INSTRUCTIONS)
    fields.setdefault("timeout_s", 300)
    return BenchmarkSpec.model_validate(spec_dict(name, **fields))


def _ok(result: BenchmarkResult) -> dict[str, float]:
    assert result.failure is None, result.failure
    assert result.status == "ok"
    return result.metrics


@pytest.fixture(scope="module")
def bert_runs(valgrind: None, pool: WorkerPool, host_env: Environment) -> list[BenchmarkResult]:
    """Two fresh instructions-mode runs of the tiny BERT classifier."""
    return [run_benchmark(pool, _spec(), host_env) for _ in range(2)]


def test_forward_model_counts_instructions_and_nothing_timed(
        bert_runs: list[BenchmarkResult]) -> None:
    result = bert_runs[0]
    metrics = _ok(result)
    assert set(metrics) == FORWARD_METRICS
    assert metrics["instructions_per_iteration"] > 100_000
    assert result.measurement is not None
    assert result.measurement.iterations == 3
    assert result.measurement.stop_reason == "max_iterations"
    assert result.measurement.converged
    # One count per iteration, summing to the metric.
    counts = result.samples["instructions"]
    assert len(counts) == 3
    assert statistics.mean(counts) == pytest.approx(metrics["instructions_per_iteration"])
    assert result.environment.torch_threads == 1


def test_two_fresh_runs_agree_within_half_a_percent(bert_runs: list[BenchmarkResult]) -> None:
    first, second = (_ok(r)["instructions_per_iteration"] for r in bert_runs)
    assert abs(second / first - 1) < 0.005, (first, second)


def test_generation_counts_per_token(valgrind: None, pool: WorkerPool,
                                     host_env: Environment) -> None:
    spec = _spec("gpt2", batch_size=2)
    metrics = _ok(run_benchmark(pool, spec, host_env))
    assert set(metrics) == GENERATION_METRICS
    assert metrics["instructions_per_token"] == pytest.approx(
        metrics["instructions_per_iteration"] / (spec.new_tokens * 2))


def test_extra_compute_adds_its_fraction_of_instructions(
        bert_runs: list[BenchmarkResult], pool: WorkerPool, host_env: Environment) -> None:
    baseline = statistics.mean(_ok(r)["instructions_per_iteration"] for r in bert_runs)
    model = {**TINY_MODELS["bert"], "extra_compute": 0.03}
    spec = _spec(model=model)
    assert spec.series_id("h") == bert_runs[0].spec.series_id("h")  # same series
    injected = _ok(run_benchmark(pool, spec, host_env))["instructions_per_iteration"]
    assert injected / baseline - 1 == pytest.approx(0.03, abs=0.005), (baseline, injected)


def test_worker_failures_under_valgrind_keep_their_kinds(valgrind: None,
                                                         pool: WorkerPool) -> None:
    crash = pool.run(faults.segfault, None, timeout_s=60, under_valgrind=True)
    assert crash.failure is not None and crash.failure.kind is FailureKind.CRASH
    # valgrind's own account of the crash comes back with it.
    assert crash.failure.traceback_tail is not None
    assert "SIGSEGV" in crash.failure.traceback_tail
    start = time.monotonic()
    hang = pool.run(faults.hangs, None, timeout_s=2, under_valgrind=True)
    assert hang.failure is not None and hang.failure.kind is FailureKind.TIMEOUT
    assert time.monotonic() - start < 30


def test_threads_above_one_are_refused_before_valgrind_starts(host_env: Environment) -> None:
    with WorkerPool(valgrind="/nonexistent/valgrind") as pool:
        result = run_benchmark(pool, _spec(threads=2), host_env)
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXCEPTION
    assert "one torch thread" in result.failure.message
    assert "threads: 2" in result.failure.message


def test_missing_valgrind_is_a_clean_failure(host_env: Environment, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with WorkerPool(valgrind=str(tmp_path / "valgrind")) as pool:
        result = run_benchmark(pool, _spec(), host_env)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXCEPTION
    assert "apt-get install valgrind" in result.failure.message
    assert result.failure.traceback_tail is None
    # The same without a setting: no valgrind on PATH.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("COLLECTOR_VALGRIND", raising=False)
    with WorkerPool() as pool:
        result = run_benchmark(pool, _spec(), host_env)
    assert result.failure is not None and "no valgrind on PATH" in result.failure.message


def test_missing_compiler_is_a_clean_failure(valgrind: None, host_env: Environment,
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with WorkerPool() as pool:
        result = run_benchmark(pool, _spec(), host_env)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXCEPTION
    assert "install a C compiler" in result.failure.message


def test_client_library_is_built_once_and_harmless_outside_valgrind(
        valgrind: None, tmp_path: Path) -> None:
    library = build_client_library(tmp_path)
    built = library.stat().st_mtime_ns
    assert build_client_library(tmp_path) == library
    assert library.stat().st_mtime_ns == built
    lib = ctypes.CDLL(str(library))
    assert lib.collector_running_on_valgrind() == 0
    lib.collector_dump_stats_at(b"no-op outside valgrind")


def test_extra_compute_in_wall_mode_runs(pool: WorkerPool, host_env: Environment) -> None:
    model = {**TINY_MODELS["bert"], "extra_compute": 0.5}
    result = run_benchmark(pool, BenchmarkSpec.model_validate(spec_dict("bert", model=model)),
                           host_env)
    assert "latency_p50_seconds" in _ok(result)
