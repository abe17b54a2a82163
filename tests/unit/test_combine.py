"""Repetitions: the interleaving order and how repetitions become one stored point."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from collector.adapters.host import capture_host
from collector.analysis.combine import best_index, combine, combine_values
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Failure,
    FailureKind,
    MeasurementInfo,
    NoiseProbe,
)
from collector.usecases.bench import interleaved
from tests.helpers import spec_dict

T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)
ENV = capture_host("host-a")


def _spec(name: str = "bert", repetitions: int = 3) -> BenchmarkSpec:
    raw = spec_dict("bert")
    raw["name"] = name
    raw["measurement"] = {**raw["measurement"], "repetitions": repetitions}
    return BenchmarkSpec.model_validate(raw)


def _rep(index: int, p50: float, *, samples: int = 12, fail: bool = False,
         other: float = 0.0, ci: float = 0.002, converged: bool = True) -> BenchmarkResult:
    spec = _spec()
    common: dict[str, Any] = {
        "spec": spec, "series_id": spec.series_id("host-a"), "environment": ENV,
        "started_at": T0 + timedelta(seconds=10 * index),
        "finished_at": T0 + timedelta(seconds=10 * index + 5)}
    if fail:
        return BenchmarkResult(**common, status="failed", failure=Failure(
            kind=FailureKind.CRASH, message="worker crashed: killed by SIGSEGV"))
    values = [p50 * (1 + 0.001 * (i - samples // 2)) for i in range(samples)]
    return BenchmarkResult(
        **common, status="ok",
        metrics={"latency_p50_seconds": p50, "peak_rss_bytes": 3e8 + index,
                 "throughput_samples_per_second": 1 / p50 + index,
                 "load_time_seconds": 1.0 + 0.1 * ((index + 1) % 3)},
        samples={"latency_seconds": values},
        measurement=MeasurementInfo(iterations=samples, warmup_iterations=1, duration_s=1.0,
                                    target_rel_ci=0.01, achieved_rel_ci=ci,
                                    converged=converged,
                                    stop_reason="converged" if converged else "max_duration"),
        noise=NoiseProbe(wall_s=1.0, self_cpu_s=1.0, other_cpu_s=2 * other,
                         other_cpu_fraction=other))


def test_repetitions_run_round_robin_across_the_suite() -> None:
    specs = [_spec("a", 3), _spec("b", 1), _spec("c", 2)]
    assert interleaved(specs) == [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (0, 2)]
    assert interleaved([]) == []


def test_one_repetition_is_stored_as_it_ran() -> None:
    only = _rep(0, 0.010)
    assert combine([only]) is only


def test_the_point_is_the_best_repetition_and_every_one_is_kept() -> None:
    reps = [_rep(1, 0.011), _rep(0, 0.010), _rep(2, 0.013, other=0.5)]
    point = combine(reps)
    assert point.status == "ok"
    # The fastest window (interference only adds time): its p50, its throughput with it.
    assert best_index(reps) == 1
    assert point.metrics["latency_p50_seconds"] == 0.010
    assert point.metrics["throughput_samples_per_second"] == reps[1].metrics[
        "throughput_samples_per_second"]
    # Deterministic metrics are the median of the repetitions; one-off costs their best.
    assert point.metrics["peak_rss_bytes"] == 3e8 + 1
    assert point.metrics["load_time_seconds"] == min(r.metrics["load_time_seconds"]
                                                     for r in reps)
    assert [r.metrics for r in point.repetitions] == [r.metrics for r in reps]
    assert point.started_at == reps[0].started_at and point.finished_at == reps[2].finished_at
    # Samples: concatenated, and each repetition says where its own lie.
    assert len(point.samples["latency_seconds"]) == 36
    second = point.repetitions[1]
    start = second.sample_offsets["latency_seconds"]
    assert start == 12 and second.sample_counts["latency_seconds"] == 12
    assert point.samples["latency_seconds"][start:start + 12] == reps[1].samples[
        "latency_seconds"]
    # The noise probe covers all three windows.
    assert point.noise is not None
    assert point.noise.other_cpu_fraction == pytest.approx(0.5 / 3)
    assert point.noise.wall_s == pytest.approx(3.0)


def test_the_uncertainty_is_the_best_windows_and_the_spread_is_kept_beside_it() -> None:
    reps = [_rep(0, 0.0130, ci=0.03), _rep(1, 0.0100, ci=0.004), _rep(2, 0.0110, ci=0.02)]
    point = combine(reps)
    info = point.measurement
    assert info is not None
    assert info.best_repetition == 1 and info.repetitions == 3
    # The stored value's precision is its own window's; it converged there.
    assert info.achieved_rel_ci == info.within_rel_ci == 0.004
    assert info.converged and info.stop_reason == "converged"
    # The spread between the windows is the run's conditions, kept beside it.
    assert info.between_rel_sd == pytest.approx(0.131, abs=0.002)
    assert info.iterations == 36
    slow_best = combine([_rep(0, 0.0100, ci=0.03, converged=False), _rep(1, 0.0120)])
    assert slow_best.measurement is not None and not slow_best.measurement.converged


def test_a_deterministic_headline_has_no_best_repetition() -> None:
    reps = [_rep(0, 0.010), _rep(1, 0.012)]
    counted = [r.model_copy(update={"metrics": {"instructions_per_iteration": v}})
               for r, v in zip(reps, (2.0e6, 1.0e6), strict=True)]
    assert best_index(counted) == 0
    assert combine(counted).metrics["instructions_per_iteration"] == 1.5e6


def test_a_failed_repetition_fails_the_benchmark_and_keeps_the_others() -> None:
    point = combine([_rep(0, 0.010), _rep(1, 0.0, fail=True), _rep(2, 0.011)])
    assert point.status == "failed"
    assert point.failure is not None
    assert point.failure.kind is FailureKind.CRASH
    assert point.failure.message.startswith("repetition 2 of 3: worker crashed")
    assert [r.status for r in point.repetitions] == ["ok", "failed", "ok"]
    assert point.metrics == {}


def test_values_combine_by_median_or_mean_of_two() -> None:
    assert combine_values([3.0, 1.0, 2.0]) == 2.0
    assert combine_values([1.0, 2.0]) == 1.5
    assert combine_values([5.0]) == 5.0
    with pytest.raises(ValueError, match="no values"):
        combine_values([])
