"""Repetitions: the interleaving order and how repetitions become one stored point."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from collector.adapters.host import capture_host
from collector.analysis.combine import combine, combine_values, repetition_rel_ci
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
         other: float = 0.0) -> BenchmarkResult:
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
        metrics={"latency_p50_seconds": p50, "peak_rss_bytes": 3e8 + index},
        samples={"latency_seconds": values},
        measurement=MeasurementInfo(iterations=samples, warmup_iterations=1, duration_s=1.0,
                                    target_rel_ci=0.01, achieved_rel_ci=0.002,
                                    converged=True, stop_reason="converged"),
        noise=NoiseProbe(wall_s=1.0, self_cpu_s=1.0, other_cpu_s=2 * other,
                         other_cpu_fraction=other))


def test_repetitions_run_round_robin_across_the_suite() -> None:
    specs = [_spec("a", 3), _spec("b", 1), _spec("c", 2)]
    assert interleaved(specs) == [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (0, 2)]
    assert interleaved([]) == []


def test_one_repetition_is_stored_as_it_ran() -> None:
    only = _rep(0, 0.010)
    assert combine([only]) is only


def test_the_point_is_the_median_of_the_repetitions_and_every_one_is_kept() -> None:
    reps = [_rep(0, 0.010), _rep(1, 0.013, other=0.5), _rep(2, 0.011)]
    point = combine(reps)
    assert point.status == "ok"
    assert point.metrics["latency_p50_seconds"] == 0.011  # the slow one does not move it
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


def test_the_interval_is_honest_about_the_spread_between_repetitions() -> None:
    tight = combine([_rep(0, 0.0100), _rep(1, 0.0101), _rep(2, 0.0100)])
    spread = combine([_rep(0, 0.0100), _rep(1, 0.0130), _rep(2, 0.0110)])
    assert tight.measurement is not None and spread.measurement is not None
    assert spread.measurement.repetitions == 3
    # Each window's samples are tight (+-0.6%); the windows are not. The pooled samples'
    # rank interval alone (as if one window) would understate it: t over 3 medians wins.
    assert spread.measurement.within_rel_ci is not None
    assert spread.measurement.achieved_rel_ci is not None
    assert spread.measurement.achieved_rel_ci > 2 * spread.measurement.within_rel_ci
    assert spread.measurement.achieved_rel_ci > 0.1
    assert spread.measurement.achieved_rel_ci == pytest.approx(
        repetition_rel_ci([0.0100, 0.0130, 0.0110]))
    assert not spread.measurement.converged
    assert tight.measurement.achieved_rel_ci is not None
    assert tight.measurement.achieved_rel_ci < spread.measurement.achieved_rel_ci
    assert spread.measurement.iterations == 36


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
