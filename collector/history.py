"""What the rest of the project asks of a history store, and what it gets back.

Core module: the stores (adapters) implement `Store`; the exporter and the regression
detector (later) depend on this protocol only, never on a concrete store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from collector.model import RunResult


@dataclass(frozen=True)
class Point:
    """One stored value of a series' metric."""

    time: datetime
    value: float
    run_id: str


@dataclass(frozen=True)
class SeriesInfo:
    series_id: str
    host: str
    suite: str
    name: str
    model: str
    source: str
    revision: str | None
    task: str
    backend: str
    device: str
    dtype: str
    batch_size: int
    sequence_length: int
    new_tokens: int


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
class SuiteActivity:
    suite: str
    host: str
    runs: dict[str, int]  # by run status: ok, partial, failed, aborted
    last_started: datetime
    last_finished: datetime


SERIES_FILTERS = ("host", "suite", "name", "model", "task", "backend", "device", "dtype",
                  "batch_size", "sequence_length", "new_tokens")


def check_series_filters(filters: dict[str, str | int]) -> None:
    """Refuse filters that are not series labels (both stores build SQL from the names)."""
    unknown = sorted(set(filters) - set(SERIES_FILTERS))
    if unknown:
        raise ValueError(f"unknown series filter(s): {', '.join(unknown)}")


class Store(Protocol):
    """A place that keeps every run. Writes are atomic per run and idempotent by run id."""

    def record_run(self, run: RunResult) -> bool:
        """Store a run with all its results in one transaction. False if it was already
        stored (same run id): nothing is written twice."""
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

    def suite_activity(self) -> list[SuiteActivity]:
        """Per suite and host: run counts by status and the latest run's bounds."""
        ...

    def close(self) -> None:
        ...
