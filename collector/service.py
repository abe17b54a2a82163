"""Composition root for `run-once`: expand the config, run every benchmark in isolation, one
at a time, gather one RunResult per suite, store it, forward it, and run regression
detection over the series it touched."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import itertools
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from collector import __version__
from collector.combine import combine
from collector.config import Config, Suite
from collector.environment import capture_host
from collector.errors import SelectionError, StoreError
from collector.history import Regression
from collector.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    FailureKind,
    MeasurementMode,
    RunResult,
)
from collector.regress.scan import ScanReport, ScanSettings, confirm_series, scan
from collector.runner import WorkerPool, run_benchmark
from collector.runner.isolation import Target
from collector.store import Stores, SyncReport


class Reporter(Protocol):
    """What the service tells its caller while it runs (the CLI draws progress with it)."""

    def start(self, total: int) -> None: ...
    def benchmark_started(self, index: int, spec: BenchmarkSpec) -> None: ...
    def progress(self, spec: BenchmarkSpec, body: dict[str, Any]) -> None: ...
    def benchmark_finished(self, index: int, result: BenchmarkResult) -> None: ...
    def finish(self) -> None: ...


class SilentReporter:
    def start(self, total: int) -> None:
        pass

    def benchmark_started(self, index: int, spec: BenchmarkSpec) -> None:
        pass

    def progress(self, spec: BenchmarkSpec, body: dict[str, Any]) -> None:
        pass

    def benchmark_finished(self, index: int, result: BenchmarkResult) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class Selection:
    """Which suites and benchmarks to run; None means all. Benchmark names accept globs."""

    suites: Sequence[str] | None = None
    benchmarks: Sequence[str] | None = None

    def apply(self, config: Config) -> list[Suite]:
        known = [s.name for s in config.suites]
        if self.suites:
            missing = [name for name in self.suites if name not in known]
            if missing:
                raise SelectionError(f"unknown suite(s): {', '.join(missing)}; the config "
                                     f"defines: {', '.join(known)}")
        chosen = [s for s in config.suites if not self.suites or s.name in self.suites]
        if self.benchmarks:
            patterns = list(self.benchmarks)
            chosen = [dataclasses.replace(s, benchmarks=tuple(
                b for b in s.benchmarks if any(fnmatch.fnmatchcase(b.name, p) for p in patterns)))
                for s in chosen]
            chosen = [s for s in chosen if s.benchmarks]
            if not chosen:
                raise SelectionError(f"no benchmark matches {', '.join(patterns)}")
        return chosen


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Outcome:
    runs: list[RunResult]
    store_error: str | None = None  # the local store could not keep the runs
    sync: SyncReport | None = None  # forwarding to PostgreSQL, when one is configured
    detection: ScanReport | None = None  # regression detection over the runs' series
    detection_error: str | None = None  # why detection did not run (it runs next time)
    # Confirmation runs for suspicions of this cycle, and the records they judged.
    confirmation_runs: list[RunResult] = dataclasses.field(default_factory=list)
    confirmed: list[Regression] = dataclasses.field(default_factory=list)


def detect(config: Config, stores: Stores, runs: list[RunResult],
           sync: SyncReport | None) -> tuple[ScanReport | None, str | None]:
    """Regression detection over the series of these runs, in the history of record.
    When PostgreSQL holds it but the runs are still in the outbox, detection waits: the
    next run (or `collector regressions scan`) catches up, since it replays history."""
    settings = config.detection
    series = {r.series_id for run in runs for r in run.results if r.status == "ok"}
    if not settings.enabled or not series:
        return None, None
    if sync is not None and not sync.ok:
        return None, "deferred: runs still wait in the outbox for PostgreSQL"
    try:
        report = scan(stores.primary(), series_ids=series,
                      settings=ScanSettings.from_config(settings))
    except StoreError as exc:
        return None, str(exc)
    return report, None


def interleaved(specs: Sequence[BenchmarkSpec]) -> list[tuple[int, int]]:
    """The order repetitions run in: round-robin over the suite's benchmarks (A1 B1 C1 A2
    B2 C2 ...), as (benchmark position, repetition) pairs; a benchmark with fewer
    repetitions drops out of later rounds."""
    rounds = max((s.measurement.repetitions for s in specs), default=0)
    return [(pos, rep) for rep in range(rounds) for pos, spec in enumerate(specs)
            if rep < spec.measurement.repetitions]


def run_once(config: Config, *, selection: Selection = Selection(),
             reporter: Reporter | None = None, start_method: str = "forkserver",
             host: str | None = None, stores: Stores | None = None,
             environment: Callable[[str | None], Environment] = capture_host,
             target: Target | None = None, pool: WorkerPool | None = None,
             stop: threading.Event | None = None,
             kill: threading.Event | None = None, confirm: bool = True) -> Outcome:
    """Run the selected suites now, keep every run in the local store (one transaction per
    run, as soon as its suite ends), then forward pending runs to PostgreSQL. Benchmark
    failures are results, not exceptions; a database that is away is a report, not an
    error: the runs wait in the outbox. `stop` (set by a shutdown) starts no further
    benchmark and marks the run aborted; `kill` also stops the running worker.
    Repetitions of a suite's benchmarks are interleaved (see `interleaved`) and combined
    into one result per benchmark (collector.combine). When detection flags a suspected
    change, confirmation runs of that benchmark follow at once (`confirm`, bounded by the
    config's detection.confirmation)."""
    suites = selection.apply(config)
    report = reporter or SilentReporter()
    env = environment(host)
    total = sum(len(interleaved(s.benchmarks)) for s in suites)
    report.start(total)
    runs: list[RunResult] = []
    store_error: str | None = None
    counter = itertools.count()
    workers = pool or WorkerPool(start_method)

    def one(spec: BenchmarkSpec) -> BenchmarkResult:
        index = next(counter)
        report.benchmark_started(index, spec)
        result = run_benchmark(workers, spec, env, target=target, kill=kill,
                               on_progress=functools.partial(report.progress, spec))
        report.benchmark_finished(index, result)
        return result

    try:
        for suite in suites:
            if stop is not None and stop.is_set():
                break
            started = _now()
            done: list[list[BenchmarkResult]] = [[] for _ in suite.benchmarks]
            planned = interleaved(suite.benchmarks)
            for pos, _rep in planned:
                if stop is not None and stop.is_set():
                    break  # the rest of the suite is not run; the run is marked aborted
                done[pos].append(one(suite.benchmarks[pos]))
            results = [combine(reps) for reps in done if reps]
            ran = sum(len(reps) for reps in done)
            run = RunResult(run_id=uuid.uuid4().hex, suite=suite.name, host=env.host,
                            started_at=started, finished_at=_now(),
                            collector_version=__version__, results=tuple(results),
                            aborted=ran < len(planned) or _any_aborted(done))
            runs.append(run)
            if stores is not None and store_error is None:
                try:
                    stores.local.record_run(run)
                except StoreError as exc:
                    store_error = str(exc)
    finally:
        report.finish()
    try:
        return _after_runs(config, stores, runs, store_error, one, stop=stop,
                           confirm=confirm)
    finally:
        if pool is None:
            workers.close()  # ours: stop a valgrind forkserver it may have started


def _after_runs(config: Config, stores: Stores | None, runs: list[RunResult],
                store_error: str | None, one: Callable[[BenchmarkSpec], BenchmarkResult], *,
                stop: threading.Event | None, confirm: bool) -> Outcome:
    """Forward, detect, and run confirmation points for this cycle's suspicions."""
    sync = stores.sync() if stores is not None and store_error is None else None
    detection, detection_error = (detect(config, stores, runs, sync)
                                  if stores is not None and store_error is None
                                  else (None, None))
    outcome = Outcome(runs, store_error, sync, detection, detection_error)
    if (confirm and stores is not None and detection is not None
            and config.detection.confirmation.enabled):
        outcome = _confirm(config, stores, outcome, one, stop)
    return outcome


def to_confirm(detection: ScanReport, limit: int) -> list[str]:
    """Series that want confirmation runs now: a suspected change not yet judged by them,
    or a latest run that is a worse outlier. At most `limit`, the largest change first."""
    wanted: dict[str, float] = {}
    for record in detection.new + detection.changed:
        if record.status == "suspected" and record.confirmation is None:
            wanted[record.series_id] = max(wanted.get(record.series_id, 0.0),
                                           abs(record.relative_change))
    for trigger in detection.triggers:
        wanted[trigger.series_id] = max(wanted.get(trigger.series_id, 0.0),
                                        abs(trigger.relative_change))
    return sorted(wanted, key=lambda series: -wanted[series])[:limit]


def confirmation_points(spec: BenchmarkSpec, configured: int) -> int:
    """Points to run for a suspicion: the configured number for wall time; two for
    instruction counts, which repeat to a few hundredths of a percent: the detector pages
    on one scheduled run and one point at the new level (collector.regress.detector,
    INSTRUCTION_SETTINGS), and a second point costs another valgrind start-up."""
    if spec.measurement.mode is MeasurementMode.INSTRUCTIONS:
        return min(configured, 2)
    return configured


def _confirm(config: Config, stores: Stores, outcome: Outcome,
             one: Callable[[BenchmarkSpec], BenchmarkResult],
             stop: threading.Event | None) -> Outcome:
    """Run confirmation points for this cycle's suspicions and judge them. Each point is
    its own run (purpose confirmation: stored and forwarded, never a point of the series)
    with the benchmark's own repetitions; the points' values go to the detector as
    evidence only."""
    assert outcome.detection is not None
    settings = config.detection.confirmation
    specs = {r.series_id: r.spec for run in outcome.runs for r in run.results}
    host = outcome.runs[0].host if outcome.runs else ""
    extra_runs: list[RunResult] = []
    judged: list[Regression] = []
    scan_settings = ScanSettings.from_config(config.detection)
    for series_id in to_confirm(outcome.detection, settings.max_series):
        spec = specs.get(series_id)
        if spec is None:
            continue
        values: dict[str, list[float]] = {}
        for _ in range(confirmation_points(spec, settings.points)):
            if stop is not None and stop.is_set():
                break
            started = _now()
            point = combine([one(spec) for _ in range(spec.measurement.repetitions)])
            run = RunResult(run_id=uuid.uuid4().hex, suite=spec.suite, host=host,
                            started_at=started, finished_at=_now(),
                            collector_version=__version__, results=(point,),
                            purpose="confirmation")
            extra_runs.append(run)
            try:
                stores.local.record_run(run)
            except StoreError as exc:
                return dataclasses.replace(outcome, store_error=str(exc),
                                           confirmation_runs=extra_runs)
            if point.status == "ok":
                for metric, value in point.metrics.items():
                    values.setdefault(metric, []).append(value)
        try:
            judged += confirm_series(stores.primary(), series_id, values,
                                     settings=scan_settings)
        except StoreError as exc:
            return dataclasses.replace(outcome, detection_error=str(exc),
                                       confirmation_runs=extra_runs, confirmed=judged)
    sync = stores.sync() if extra_runs else outcome.sync
    return dataclasses.replace(outcome, sync=sync, confirmation_runs=extra_runs,
                               confirmed=judged)


def _any_aborted(done: list[list[BenchmarkResult]]) -> bool:
    return any(r.failure is not None and r.failure.kind is FailureKind.ABORTED
               for reps in done for r in reps)
