"""Running benchmarks for a cycle: one at a time, journalled, each repetition in a fresh
worker, timed by a RunClock; the order repetitions interleave in; what the caller is told
as they go (Reporter)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from collector.adapters.config import Config, Suite
from collector.adapters.measure import WorkerPool, run_benchmark
from collector.adapters.measure.isolation import Target
from collector.adapters.store import SQLiteStore
from collector.analysis.combine import combine
from collector.analysis.cost import Pricing, with_costs
from collector.analysis.numerics import FINGERPRINT_KEYS, with_drift
from collector.domain.errors import StoreError
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    FailureKind,
    RunResult,
)
from collector.usecases.journal import Journal, _header
from collector.version import __version__

log = logging.getLogger("collector.runs")


class Reporter(Protocol):
    """What the service tells its caller while it runs (the CLI draws progress with it)."""

    def start(self, total: int) -> None: ...
    def benchmark_started(self, index: int, spec: BenchmarkSpec,
                          repetition: tuple[int, int] = (1, 1)) -> None: ...
    def progress(self, spec: BenchmarkSpec, body: dict[str, Any]) -> None: ...
    def benchmark_finished(self, index: int, result: BenchmarkResult,
                           repetition: tuple[int, int] = (1, 1)) -> None: ...
    def finish(self) -> None: ...


class SilentReporter:
    def start(self, total: int) -> None:
        pass

    def benchmark_started(self, index: int, spec: BenchmarkSpec,
                          repetition: tuple[int, int] = (1, 1)) -> None:
        pass

    def progress(self, spec: BenchmarkSpec, body: dict[str, Any]) -> None:
        pass

    def benchmark_finished(self, index: int, result: BenchmarkResult,
                           repetition: tuple[int, int] = (1, 1)) -> None:
        pass

    def finish(self) -> None:
        pass




def _now() -> datetime:
    return datetime.now(timezone.utc)


class RunClock:
    """The wall time at the start of a run, advanced by the monotonic clock: durations are
    monotonic, and a wall clock stepped back (NTP, a VM restored) mid-run cannot make a
    result end before it started. Read afresh for every run."""

    def __init__(self, wall: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._start_wall = (wall or _now)()
        self._start_mono = monotonic()

    def __call__(self) -> datetime:
        return self._start_wall + timedelta(seconds=max(
            0.0, self._monotonic() - self._start_mono))




def interleaved(specs: Sequence[BenchmarkSpec]) -> list[tuple[int, int]]:
    """The order repetitions run in: round-robin over the suite's benchmarks (A1 B1 C1 A2
    B2 C2 ...), as (benchmark position, repetition) pairs; a benchmark with fewer
    repetitions drops out of later rounds."""
    rounds = max((s.measurement.repetitions for s in specs), default=0)
    return [(pos, rep) for rep in range(rounds) for pos, spec in enumerate(specs)
            if rep < spec.measurement.repetitions]




@dataclass
class Bench:
    """Runs benchmarks for run_once: one at a time, journalled, timed by a RunClock."""

    workers: WorkerPool
    env: Environment
    report: Reporter
    store: SQLiteStore | None
    target: Target | None = None
    kill: threading.Event | None = None
    packages: tuple[str, ...] = ()  # whose versions every result records
    # The config's cost section: each combined result's cost and carbon metrics, at the
    # rates in force now (collector.analysis.cost); None: none.
    pricing: Pricing | None = None
    counter: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    def one(self, spec: BenchmarkSpec, journal: Journal, position: int,
            clock: RunClock, repetition: tuple[int, int] = (1, 1)) -> BenchmarkResult:
        """One fresh-process repetition (`repetition`: which of how many) of `spec`."""
        index = next(self.counter)
        self.report.benchmark_started(index, spec, repetition)
        journal.started(position, spec)
        result = run_benchmark(self.workers, spec, self.env, target=self.target,
                               kill=self.kill, now=clock,
                               on_progress=functools.partial(self.report.progress, spec),
                               packages=self.packages)
        journal.finished(position, result)
        self.report.benchmark_finished(index, result, repetition)
        return result

    def journal(self, suite: str, clock: RunClock, purpose: str) -> Journal:
        started = clock()
        return Journal(self.store, uuid.uuid4().hex,
                       _header(suite, self.env, started, purpose), started)

    def run_suite(self, suite: Suite,
                  stop: threading.Event | None) -> tuple[RunResult, Journal]:
        """One run of `suite` (not yet stored), and its open journal."""
        clock = RunClock()
        started = clock()
        log_run = self.journal(suite.name, clock, "scheduled")
        done: list[list[BenchmarkResult]] = [[] for _ in suite.benchmarks]
        planned = interleaved(suite.benchmarks)
        for pos, rep in planned:
            if stop is not None and stop.is_set():
                break  # the rest of the suite is not run; the run is marked aborted
            spec = suite.benchmarks[pos]
            done[pos].append(self.one(spec, log_run, pos, clock,
                                      (rep + 1, spec.measurement.repetitions)))
        results = [combine(reps) for reps in done if reps]
        ran = sum(len(reps) for reps in done)
        run = RunResult(run_id=log_run.run_id, suite=suite.name, host=self.env.host,
                        started_at=started, finished_at=clock(),
                        collector_version=__version__, results=tuple(results),
                        aborted=ran < len(planned) or _any_aborted(done))
        return with_costs(with_drift(run, self.previous_fingerprint), self.pricing), log_run

    def previous_fingerprint(self, series_id: str) -> dict[str, list[float]]:
        """The series' previous stored fingerprint: the numerics reference of a result
        without one in its run. A store that cannot answer costs the drift, not the run."""
        if self.store is None:
            return {}
        try:
            return self.store.latest_samples(series_id, FINGERPRINT_KEYS)
        except StoreError as exc:
            log.warning("no numerics reference from the local store for %s: %s",
                        series_id, exc)
            return {}



def _any_aborted(done: list[list[BenchmarkResult]]) -> bool:
    return any(r.failure is not None and r.failure.kind is FailureKind.ABORTED
               for reps in done for r in reps)


def recorded_packages(config: Config) -> tuple[str, ...]:
    """The package names every result records (config environment.record_packages),
    canonical (PEP 503), as the environment diff names them."""
    from packaging.utils import canonicalize_name

    return tuple(dict.fromkeys(canonicalize_name(n)
                               for n in config.environment.record_packages))

