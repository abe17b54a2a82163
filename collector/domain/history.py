"""What the rest of the project asks of a history store, and what it gets back.

The stores (collector/adapters/store/) implement `Store`; the use cases and the exporter depend
on this protocol only, never on a concrete store. The series a store keeps are described in
the series vocabulary (collector/domain/series.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from collector.domain.model import BenchmarkResult, RunResult
from collector.domain.series import SeriesInfo


@dataclass(frozen=True)
class Point:
    """One stored value of a series' metric."""

    time: datetime
    value: float
    run_id: str


@dataclass(frozen=True)
class StoredRun:
    """A stored scheduled run, as `collector compare` selects them."""

    run_id: str
    suite: str
    host: str
    started_at: datetime
    environment: dict[str, Any]


@dataclass(frozen=True)
class ResultsOfRun:
    """One run's results as `compare` and `report` read them, from a results file or the
    store: enough of the run to say which run a finding or a warning is about."""

    run_id: str
    suite: str
    host: str
    started_at: datetime
    results: tuple[BenchmarkResult, ...]


def flatten(runs: Sequence[ResultsOfRun]) -> list[BenchmarkResult]:
    return [result for run in runs for result in run.results]


@dataclass(frozen=True)
class LatestValue:
    series_id: str
    metric: str
    unit: str
    value: float
    time: datetime
    run_id: str


@dataclass(frozen=True)
class FailureRecord:
    run_id: str
    series_id: str
    time: datetime
    kind: str
    message: str
    exception_type: str | None
    traceback_tail: str | None


@dataclass(frozen=True)
class SeriesActivity:
    """How a series' benchmarks have been going: for health metrics and staleness."""

    series_id: str
    last_run: datetime
    last_success: datetime | None
    results: dict[str, int]  # by status: ok, failed
    failures: dict[str, int]  # by failure kind


@dataclass(frozen=True)
class SeriesConditions:
    """What a series' latest scheduled success was measured under: the noise probe's share
    of other processes, and how well its median settled (collector.analysis.reading reads
    them as a quality)."""

    series_id: str
    time: datetime
    other_cpu_fraction: float | None
    achieved_rel_ci: float | None
    target_rel_ci: float | None
    converged: bool | None


@dataclass(frozen=True)
class SuiteActivity:
    suite: str
    host: str
    runs: dict[str, int]  # by run status: ok, partial, failed, aborted
    last_started: datetime
    last_finished: datetime


@dataclass(frozen=True)
class RunPoint:
    """One successful result of a series, as the regression detector needs it."""

    run_id: str
    time: datetime
    other_cpu_fraction: float | None  # from the noise probe: contaminated runs are skipped
    environment: dict[str, Any]  # versions and hardware, for attribution
    spec_hash: str | None  # the full benchmark spec (measurement knobs included)


@dataclass(frozen=True)
class SeriesHistory:
    runs: list[RunPoint]  # oldest first
    values: dict[str, dict[str, float]]  # metric -> run_id -> value


RegressionStatus = Literal["suspected", "open", "acknowledged", "resolved", "expected",
                           "dismissed"]
REGRESSION_STATUSES: tuple[RegressionStatus, ...] = (
    "suspected", "open", "acknowledged", "resolved", "expected", "dismissed")
ACTIVE_STATUSES: tuple[RegressionStatus, ...] = ("suspected", "open", "acknowledged")


@dataclass(frozen=True)
class Regression:
    """A detected change of level of one series' metric, with its evidence, attribution
    and state (see migrations/postgres/0004_regressions.sql)."""

    regression_id: str
    series_id: str
    metric: str
    # host_drift: a step with no software, configuration or model change behind it
    # outputs_changed: output drift on fixed inputs stepped (collector/detect/outputs.py)
    kind: Literal["regression", "improvement", "host_drift", "outputs_changed"]
    status: RegressionStatus
    start_run_id: str
    start_time: datetime
    last_good_run_id: str | None
    last_good_time: datetime | None
    detected_run_id: str
    detected_at: datetime
    confirmed_at: datetime | None
    before_value: float
    after_value: float
    relative_change: float
    statistic: float
    p_value: float | None
    method: str
    environment_diff: dict[str, list[Any]]  # field -> [before, after]
    attribution: str
    resolved_at: datetime | None = None
    resolved_run_id: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    # Confirmation runs' evidence: runs, values, z, p, verdict (confirmed or dismissed).
    confirmation: dict[str, Any] | None = None
    # The automatic A/B of the package versions the attribution names (collector.usecases.auto_ab):
    # ab_summary(...).as_dict() (metric, ratio, low, high, verdict, text) with a, b (pins
    # as "name==version"), rounds, when, elapsed_s; or {"failure": why, ...} when it could
    # not run. None: no A/B was run. collector.present.text.ab_line renders it.
    ab: dict[str, Any] | None = None


@dataclass(frozen=True)
class DetectionState:
    """What the detector learnt of a series' metric at its latest scan."""

    series_id: str
    metric: str
    runs: int
    noise: float  # relative noise between runs
    min_detectable_effect: float  # smallest step that pages from scheduled runs
    confirm_min_detectable_effect: float | None  # ... with confirmation runs


@dataclass(frozen=True)
class Baseline:
    """From `since` on, the series' metric is judged afresh: a change accepted as
    expected stops alerting."""

    series_id: str
    metric: str
    since: datetime
    run_id: str | None
    reason: str | None


class Store(Protocol):
    """A place that keeps every run. Writes are atomic per run and idempotent by run id."""

    def record_run(self, run: RunResult) -> bool:
        """Store a run with all its results in one transaction. False if it was already
        stored (same run id): nothing is written twice."""
        ...

    def record_runs(self, runs: Sequence[RunResult]) -> int:
        """Store runs in one transaction, all or none (an import); runs already stored
        are left as they are. Returns how many were new."""
        ...

    def history(self, series_id: str, metric: str, start: datetime | None = None,
                end: datetime | None = None) -> list[Point]:
        """A series' metric over [start, end), oldest first."""
        ...

    def latest(self, metric: str | None = None) -> list[LatestValue]:
        """The most recent value of every (series, metric), or of one metric."""
        ...

    def list_series(self, **filters: str | int) -> list[SeriesInfo]:
        """Series whose labels equal the given filters (names in SERIES_FILTERS)."""
        ...

    def failures(self, series_id: str | None = None,
                 since: datetime | None = None) -> list[FailureRecord]:
        """Recorded benchmark failures, newest first."""
        ...

    def run_count(self) -> int:
        ...

    def data_version(self) -> str:
        """Changes whenever a run is recorded: lets readers cache what they derive."""
        ...

    def series_activity(self) -> list[SeriesActivity]:
        """Per series: last run, last success, result and failure counts."""
        ...

    def series_conditions(self) -> list[SeriesConditions]:
        """Per series: the conditions of its latest scheduled success."""
        ...

    def suite_activity(self) -> list[SuiteActivity]:
        """Per suite and host: run counts by status and the latest run's bounds."""
        ...

    def series_history(self, series_id: str, limit: int = 400) -> SeriesHistory:
        """The latest `limit` successful results of a series with every metric."""
        ...

    def runs(self, *, suite: str | None = None, host: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             run_id_prefix: str | None = None) -> list[StoredRun]:
        """Scheduled runs, newest first."""
        ...

    def stored_results(self, runs: Sequence[StoredRun]) -> list[BenchmarkResult]:
        """The successful results of `runs`, with metrics, repetitions and the raw samples
        behind median metrics."""
        ...

    def results_of_runs(self, runs: Sequence[StoredRun]) -> list[ResultsOfRun]:
        """stored_results, run by run (in the order of `runs`)."""
        ...

    def latest_samples(self, series_id: str, names: Sequence[str]) -> dict[str, list[float]]:
        """Raw samples `names` of the series' latest scheduled result that has any of them
        (what the numerics drift of the next run is measured against)."""
        ...

    def regressions(self, statuses: tuple[str, ...] | None = None,
                    series_id: str | None = None,
                    metric: str | None = None) -> list[Regression]:
        """Detected changes, newest first."""
        ...

    def save_regression(self, regression: Regression) -> None:
        """Insert or replace a regression (by id)."""
        ...

    def add_baseline(self, baseline: Baseline) -> None:
        ...

    def baselines(self, series_id: str | None = None) -> list[Baseline]:
        ...

    def save_detection_states(self, states: list[DetectionState]) -> None:
        """Insert or replace the detector's noise and MDE per (series, metric)."""
        ...

    def detection_states(self) -> list[DetectionState]:
        ...

    def close(self) -> None:
        ...
