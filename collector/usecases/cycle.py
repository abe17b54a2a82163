"""Composition root for `run-once`: expand the config, run every benchmark in isolation, one
at a time, gather one RunResult per suite, store it, forward it, and run regression
detection over the series it touched.

Nothing finished is lost when the process is killed: each run is journalled in the local
store as it happens (its start, each benchmark's start, each finished repetition), and a
journal whose process is gone becomes an aborted run at the next start (recover_crashed_runs).
Times come from a wall clock read once per run and advanced by the monotonic clock, so a
wall clock stepped back mid-run never yields a result that ends before it starts."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from collector.adapters.config import AbSettings, Config, Suite
from collector.adapters.host import capture_host
from collector.adapters.locks import OwnerLock
from collector.adapters.measure import WorkerPool, run_benchmark
from collector.adapters.measure.isolation import Target
from collector.adapters.store import SQLiteStore, Stores, SyncReport
from collector.analysis.combine import combine
from collector.analysis.numerics import FINGERPRINT_KEYS, with_drift
from collector.detect.attribution import package_changes
from collector.domain.catalogue import SIZE
from collector.domain.errors import CollectorError, SelectionError, StoreError
from collector.domain.history import Regression
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    Failure,
    FailureKind,
    MeasurementMode,
    RunResult,
)
from collector.usecases.scan import ScanReport, ScanSettings, confirm_series, scan
from collector.version import __version__

if TYPE_CHECKING:
    from collector.adapters.envs import Pin

log = logging.getLogger("collector.runs")


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


# -- the run journal ---------------------------------------------------------------------

_owners: dict[Path, OwnerLock] = {}
_owners_lock = threading.Lock()
CRASH_MESSAGE = ("the collector process died (killed, out of memory or power loss) while "
                 "this benchmark ran; the run was recovered at the next start")


def owner_for(store: SQLiteStore) -> OwnerLock:
    """This process's journal owner token for `store` (one lock file, held until exit)."""
    key = Path(str(store.path))
    with _owners_lock:
        if key not in _owners:
            _owners[key] = OwnerLock(key)
        return _owners[key]


class Journal:
    """One run's journal in the local store. Journalling is best effort: a store error
    disables it for this run (logged once); the run is still kept in memory and stored
    whole at its end, as before."""

    def __init__(self, store: SQLiteStore | None, run_id: str, header: dict[str, Any],
                 started: datetime) -> None:
        self._store = store
        self.run_id = run_id
        self._seq = itertools.count()
        if store is not None:
            owner = owner_for(store).token
            self._write(lambda: store.journal_begin(run_id, owner, header, started))

    def _write(self, action: Callable[[], None]) -> None:
        if self._store is None:
            return
        try:
            action()
        except StoreError as exc:
            log.warning("run %s is not journalled (a crash now would lose its finished "
                        "results): %s", self.run_id, exc)
            self._store = None

    def started(self, position: int, spec: BenchmarkSpec) -> None:
        store = self._store
        if store is not None:
            seq = next(self._seq)
            self._write(lambda: store.journal_entry(self.run_id, seq, position, "started",
                                                    spec.model_dump_json()))

    def finished(self, position: int, result: BenchmarkResult) -> None:
        store = self._store
        if store is not None:
            seq = next(self._seq)
            self._write(lambda: store.journal_entry(self.run_id, seq, position, "finished",
                                                    result.model_dump_json()))

    def close(self) -> None:
        """The run is stored: the journal goes."""
        store = self._store
        if store is not None:
            self._write(lambda: store.journal_end(self.run_id))


def _header(suite: str, env: Environment, started: datetime, purpose: str) -> dict[str, Any]:
    return {"suite": suite, "host": env.host, "started_at": started.isoformat(),
            "collector_version": __version__, "purpose": purpose,
            "environment": env.model_dump(mode="json")}


def rebuild_run(journal: dict[str, Any]) -> RunResult:
    """The aborted run a dead process's journal stands for: every finished repetition
    combined per benchmark, a benchmark that had started but finished nothing as an
    aborted failure, the run marked aborted. Entries that no longer validate are skipped."""
    header = journal["header"]
    env = Environment.model_validate(header["environment"])
    slots: dict[int, dict[str, Any]] = {}
    last: datetime = journal["started_at"]
    for _seq, position, kind, document, recorded in journal["entries"]:
        slot = slots.setdefault(position, {"finished": [], "spec": None, "at": None})
        last = max(last, recorded)
        try:
            if kind == "started":
                slot["spec"] = BenchmarkSpec.model_validate_json(document)
                slot["at"] = recorded
            else:
                slot["finished"].append(BenchmarkResult.model_validate_json(document))
                slot["at"] = None
        except ValidationError as exc:
            log.warning("run %s: a journal entry no longer validates, skipped: %s",
                        journal["run_id"], str(exc).splitlines()[0])
    results: list[BenchmarkResult] = []
    for position in sorted(slots):
        slot = slots[position]
        if slot["finished"]:
            results.append(combine(slot["finished"]))
        elif slot["spec"] is not None and slot["at"] is not None:
            spec: BenchmarkSpec = slot["spec"]
            results.append(BenchmarkResult(
                spec=spec, series_id=spec.series_id(env.host), status="failed",
                started_at=slot["at"], finished_at=max(slot["at"], last), environment=env,
                failure=Failure(kind=FailureKind.ABORTED, message=CRASH_MESSAGE)))
    return RunResult(run_id=journal["run_id"], suite=header["suite"], host=header["host"],
                     started_at=journal["started_at"], finished_at=last,
                     collector_version=header["collector_version"], results=tuple(results),
                     aborted=True, purpose=header.get("purpose", "scheduled"))


def recover_crashed_runs(store: SQLiteStore) -> list[RunResult]:
    """Store, as aborted runs, the journals of collector processes that died mid-run (their
    lock file is free), and close those journals. A journal that cannot be rebuilt stays,
    logged, for a later version to read; a store error is logged and retried next time."""
    owner = owner_for(store)
    recovered: list[RunResult] = []
    try:
        journals = store.open_journals()
    except (StoreError, ValueError) as exc:
        log.error("cannot read the run journal: %s", exc)
        return recovered
    for journal in journals:
        if owner.alive(journal["owner"]):
            continue  # a run in progress in a live process (this one or another)
        try:
            if not journal["stored"]:
                run = rebuild_run(journal)
                store.record_run(run)
                recovered.append(run)
                log.warning("run %s of suite %s was in progress when its collector died: "
                            "stored as aborted with %d result(s)", run.run_id, run.suite,
                            len(run.results))
            store.journal_end(journal["run_id"])
            owner.forget(journal["owner"])
        except (StoreError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot recover run %s from its journal: %s", journal["run_id"], exc)
    return recovered


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
    # Runs of a collector that died mid-run, stored as aborted before this one started.
    recovered: list[RunResult] = dataclasses.field(default_factory=list)
    # Regressions the automatic A/B ran for this cycle, as saved with their `ab`.
    ab: list[Regression] = dataclasses.field(default_factory=list)


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
             kill: threading.Event | None = None, confirm: bool = True,
             forward: bool = True, ab_runner: AbRunner | None = None) -> Outcome:
    """Run the selected suites now, keep every run in the local store (one transaction per
    run, as soon as its suite ends), then forward pending runs to PostgreSQL. Benchmark
    failures are results, not exceptions; a database that is away is a report, not an
    error: the runs wait in the outbox. `stop` (set by a shutdown) starts no further
    benchmark and marks the run aborted; `kill` also stops the running worker.
    Repetitions of a suite's benchmarks are interleaved (see `interleaved`) and combined
    into one result per benchmark (collector.analysis.combine). When detection flags a suspected
    change, confirmation runs of that benchmark follow at once (`confirm`, bounded by the
    config's detection.confirmation). `forward=False` (serve, whose database thread
    forwards) stores the runs locally and stops there when a database is configured:
    detection then waits for `detect_and_confirm` after the runs are delivered. A
    regression confirmed in this cycle whose attribution names package versions gets the
    automatic A/B (config detection.ab; `ab_runner` replaces how it runs, for tests)."""
    suites = selection.apply(config)
    report = reporter or SilentReporter()
    recovered = recover_crashed_runs(stores.local) if stores is not None else []
    env = environment(host)
    total = sum(len(interleaved(s.benchmarks)) for s in suites)
    report.start(total)
    runs: list[RunResult] = []
    store_error: str | None = None
    workers = pool or WorkerPool(start_method)
    bench = _Bench(workers, env, report, stores.local if stores is not None else None,
                   target=target, kill=kill, packages=recorded_packages(config))
    try:
        for suite in suites:
            if stop is not None and stop.is_set():
                break
            run, log_run = bench.run_suite(suite, stop)
            runs.append(run)
            if stores is not None and store_error is None:
                try:
                    stores.local.record_run(run)
                except StoreError as exc:
                    store_error = str(exc)  # the journal stays: recovered at next start
                else:
                    log_run.close()
    finally:
        report.finish()
    try:
        if not forward and stores is not None and stores.database_url is not None:
            return Outcome(runs, store_error, recovered=recovered, detection_error=(
                "deferred: detection follows when the runs reach PostgreSQL"))
        outcome = _after_runs(config, stores, runs, store_error, bench, stop=stop,
                              confirm=confirm)
        if stores is not None:
            outcome = auto_ab(config, stores, outcome, ab_runner or package_ab(
                config.detection.ab, host=host, start_method=workers.start_method,
                stop=stop))
        return dataclasses.replace(outcome, recovered=recovered)
    finally:
        if pool is None:
            workers.close()  # ours: stop a valgrind forkserver it may have started


@dataclass
class _Bench:
    """Runs benchmarks for run_once: one at a time, journalled, timed by a RunClock."""

    workers: WorkerPool
    env: Environment
    report: Reporter
    store: SQLiteStore | None
    target: Target | None = None
    kill: threading.Event | None = None
    packages: tuple[str, ...] = ()  # whose versions every result records
    counter: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    def one(self, spec: BenchmarkSpec, journal: Journal, position: int,
            clock: RunClock) -> BenchmarkResult:
        index = next(self.counter)
        self.report.benchmark_started(index, spec)
        journal.started(position, spec)
        result = run_benchmark(self.workers, spec, self.env, target=self.target,
                               kill=self.kill, now=clock,
                               on_progress=functools.partial(self.report.progress, spec),
                               packages=self.packages)
        journal.finished(position, result)
        self.report.benchmark_finished(index, result)
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
        for pos, _rep in planned:
            if stop is not None and stop.is_set():
                break  # the rest of the suite is not run; the run is marked aborted
            done[pos].append(self.one(suite.benchmarks[pos], log_run, pos, clock))
        results = [combine(reps) for reps in done if reps]
        ran = sum(len(reps) for reps in done)
        run = RunResult(run_id=log_run.run_id, suite=suite.name, host=self.env.host,
                        started_at=started, finished_at=clock(),
                        collector_version=__version__, results=tuple(results),
                        aborted=ran < len(planned) or _any_aborted(done))
        return with_drift(run, self.previous_fingerprint), log_run

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


def detect_and_confirm(config: Config, stores: Stores, runs: list[RunResult],
                       sync: SyncReport | None, *, pool: WorkerPool,
                       host: str | None = None, stop: threading.Event | None = None,
                       kill: threading.Event | None = None,
                       environment: Callable[[str | None], Environment] = capture_host,
                       confirm: bool = True, ab_runner: AbRunner | None = None) -> Outcome:
    """Detection (and confirmation runs, and the automatic A/B) for runs already stored
    and forwarded: what run_once does after its sync, for serve, whose database thread
    forwards."""
    bench = _Bench(pool, environment(host), SilentReporter(), stores.local, kill=kill,
                   packages=recorded_packages(config))
    detection, detection_error = detect(config, stores, runs, sync)
    outcome = Outcome(runs, None, sync, detection, detection_error)
    if confirm and detection is not None and config.detection.confirmation.enabled:
        outcome = _confirm(config, stores, outcome, bench, stop)
    return auto_ab(config, stores, outcome, ab_runner or package_ab(
        config.detection.ab, host=host, start_method=pool.start_method, stop=stop))


def _after_runs(config: Config, stores: Stores | None, runs: list[RunResult],
                store_error: str | None, bench: _Bench, *,
                stop: threading.Event | None, confirm: bool) -> Outcome:
    """Forward, detect, and run confirmation points for this cycle's suspicions."""
    sync = stores.sync() if stores is not None and store_error is None else None
    detection, detection_error = (detect(config, stores, runs, sync)
                                  if stores is not None and store_error is None
                                  else (None, None))
    outcome = Outcome(runs, store_error, sync, detection, detection_error)
    if (confirm and stores is not None and detection is not None
            and config.detection.confirmation.enabled):
        outcome = _confirm(config, stores, outcome, bench, stop)
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
    on one scheduled run and one point at the new level (collector.detect.detector,
    INSTRUCTION_SETTINGS), and a second point costs another valgrind start-up."""
    if spec.measurement.mode is MeasurementMode.INSTRUCTIONS:
        return min(configured, 2)
    return configured


def _confirm(config: Config, stores: Stores, outcome: Outcome, bench: _Bench,
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
            clock = RunClock()
            started = clock()
            log_run = bench.journal(spec.suite, clock, "confirmation")
            point = combine([bench.one(spec, log_run, 0, clock)
                             for _ in range(spec.measurement.repetitions)])
            run = RunResult(run_id=log_run.run_id, suite=spec.suite, host=host,
                            started_at=started, finished_at=clock(),
                            collector_version=__version__, results=(point,),
                            purpose="confirmation")
            extra_runs.append(run)
            try:
                stores.local.record_run(run)
            except StoreError as exc:
                return dataclasses.replace(outcome, store_error=str(exc),
                                           confirmation_runs=extra_runs)
            log_run.close()
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


def recorded_packages(config: Config) -> tuple[str, ...]:
    """The package names every result records (config environment.record_packages),
    canonical (PEP 503), as the environment diff names them."""
    from packaging.utils import canonicalize_name

    return tuple(dict.fromkeys(canonicalize_name(n)
                               for n in config.environment.record_packages))


# -- the automatic A/B -----------------------------------------------------------------------

# Runs an A/B of `spec` between the old pins and the new ones and returns, per metric asked
# for, the summary to keep on the regression record (ab_summary(...).as_dict(), with the
# rounds it completed), or raises CollectorError when it could not run.
AbRunner = Callable[[BenchmarkSpec, "Sequence[Pin]", "Sequence[Pin]", Sequence[str]],
                    dict[str, dict[str, Any]]]


def package_ab(settings: AbSettings, *, host: str | None, start_method: str,
               stop: threading.Event | None) -> AbRunner:
    """The A/B runner of the config: collector.usecases.ab.run_ab in cached environments (built
    with the config's pip arguments), bounded by its rounds and budget."""

    def run(spec: BenchmarkSpec, before: Sequence[Pin], after: Sequence[Pin],
            metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
        from collector.adapters.envs import EnvironmentCache
        from collector.usecases.ab import ab_summary, run_ab

        cache = EnvironmentCache(Path(settings.env_cache).expanduser() if settings.env_cache
                                 else None, pip_args=settings.pip_args)
        result = run_ab(spec, before, after, rounds=settings.rounds, cache=cache, host=host,
                        start_method=start_method, stop=stop, budget_s=settings.budget_s)
        if result.failure is not None:
            raise CollectorError(result.failure.message)
        done = {"rounds": result.rounds, "build_s": round(result.build_s, 3)}
        headline = ab_summary(result)
        found: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            summary = ab_summary(result, metric=metric)
            if summary is not None:
                found[metric] = {**summary.as_dict(), **done}
            elif headline is not None:  # no comparison of this one: the headline's, named
                found[metric] = {**headline.as_dict(), **done, "text": headline.text.replace(
                    "A/B:", f"A/B of {headline.metric}:", 1)}
        return found

    return run


def ab_candidates(records: Sequence[Regression]) -> list[list[Regression]]:
    """Confirmed regressions without an A/B whose attribution names package versions,
    grouped by series and pins (one A/B measures every metric of the change: latency and
    throughput of one slowdown share it, even where the detector placed their starts a run
    apart), the largest change first."""
    groups: dict[tuple[Any, ...], dict[str, Regression]] = {}
    for record in records:
        if record.kind != "regression" or record.status != "open" or record.ab is not None:
            continue
        before, after = package_changes(record.environment_diff)
        if not after:
            continue
        key = (record.series_id, tuple(before), tuple(after))
        groups.setdefault(key, {})[record.regression_id] = record  # the latest version wins
    return sorted((list(g.values()) for g in groups.values()),
                  key=lambda g: -max(abs(r.relative_change) for r in g))


def _model_size_mib(outcome: Outcome, series_id: str) -> float | None:
    """The model's size in MiB from this cycle's latest result of the series."""
    for run in reversed([*outcome.runs, *outcome.confirmation_runs]):
        for result in run.results:
            size = result.metrics.get(SIZE.name) if result.series_id == series_id else None
            if size is not None:
                return size / 2**20
    return None


def auto_ab(config: Config, stores: Stores, outcome: Outcome, runner: AbRunner) -> Outcome:
    """The automatic A/B (config detection.ab) of this cycle's confirmed regressions whose
    attribution names package versions: at most `max_per_cycle` of them, none for a model
    above `max_model_size_mib`. Each record gets `ab`: the summary with the pins, rounds,
    time and elapsed seconds, or {"failure": why}; saved in the history of record. A
    failure is recorded, never raised."""
    settings = config.detection.ab
    if not settings.enabled or settings.max_per_cycle == 0:
        return outcome
    found = outcome.detection.new + outcome.detection.changed if outcome.detection else []
    specs = {r.series_id: r.spec for run in outcome.runs for r in run.results}
    done: list[Regression] = []
    budget = settings.max_per_cycle
    for group in ab_candidates([*found, *outcome.confirmed]):
        spec = specs.get(group[0].series_id)
        if budget == 0 or spec is None:
            continue
        size = _model_size_mib(outcome, group[0].series_id)
        if settings.max_model_size_mib is not None and size is not None and (
                size > settings.max_model_size_mib):
            log.info("no automatic A/B for %s: the model is %.0f MiB, above "
                     "detection.ab.max_model_size_mib %g", spec.label, size,
                     settings.max_model_size_mib)
            continue
        budget -= 1
        saved = _ab_one(stores, runner, spec, group, settings)
        if saved is None:
            return dataclasses.replace(outcome, ab=done)
        done += saved
    if not done:
        return outcome
    by_id = {r.regression_id: r for r in done}
    return dataclasses.replace(
        outcome, ab=done, confirmed=[by_id.get(r.regression_id, r) for r in outcome.confirmed])


def _ab_one(stores: Stores, runner: AbRunner, spec: BenchmarkSpec, group: list[Regression],
            settings: AbSettings) -> list[Regression] | None:
    """A/B one change and save its records; None when the store refused them."""
    before, after = package_changes(group[0].environment_diff)
    context: dict[str, Any] = {"a": [str(p) for p in before], "b": [str(p) for p in after],
                               "rounds": settings.rounds,
                               "when": _now().isoformat(timespec="seconds")}
    started = time.monotonic()
    log.info("automatic A/B of %s: %s against %s, %d rounds", spec.label,
             " ".join(context["b"]), " ".join(context["a"]), settings.rounds)
    try:
        summaries = runner(spec, before, after, [r.metric for r in group])
        failure = None
    except CollectorError as exc:
        summaries, failure = {}, str(exc) or type(exc).__name__
    except Exception as exc:  # an A/B's fault is its record's failure, not the cycle's
        log.exception("automatic A/B of %s failed", spec.label)
        summaries, failure = {}, f"{type(exc).__name__}: {exc}"
    context["elapsed_s"] = round(time.monotonic() - started, 3)
    saved = []
    for record in group:
        summary = summaries.get(record.metric)
        ab = ({**context, **_finite(summary)} if summary is not None else
              {"failure": failure or f"the A/B measured no {record.metric}", **context})
        updated = dataclasses.replace(record, ab=ab)
        try:
            stores.primary().save_regression(updated)
        except StoreError as exc:
            log.error("the automatic A/B of %s is not stored: %s", spec.label, exc)
            return None
        log.info("A/B %s %s: %s", record.regression_id, record.metric,
                 ab.get("text") or f"failed: {ab['failure']}")
        saved.append(updated)
    return saved


def _finite(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with non-finite numbers as None: both stores keep it as JSON."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in summary.items()}
