"""A cycle (`run-once`, and each scheduled run of `serve`): the selected suites run, one
benchmark at a time, each run stored as its suite ends, forwarded, and detection over the
series it touched, with confirmation runs and the automatic A/B.

Its phases have their own modules: running and journalling (bench, journal), detection with
confirmation (confirm), the automatic A/B (auto_ab); what the cycle did is an Outcome
(outcome). Nothing finished is lost when the process is killed (journal); times come from a
wall clock read once per run and advanced by the monotonic clock (bench.RunClock)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from collector.adapters.config import Config
from collector.adapters.host import capture_host
from collector.adapters.measure import WorkerPool
from collector.adapters.measure.isolation import Target
from collector.adapters.store import Stores, SyncReport
from collector.domain.errors import StoreError
from collector.domain.model import Environment, RunResult
from collector.usecases import confirm as confirmation
from collector.usecases.auto_ab import AbRunner, auto_ab, package_ab
from collector.usecases.bench import (
    Bench,
    Reporter,
    SilentReporter,
    interleaved,
    recorded_packages,
)
from collector.usecases.journal import recover_crashed_runs
from collector.usecases.outcome import Outcome
from collector.usecases.select import Selection

log = logging.getLogger("collector.runs")


def run_once(config: Config, *, selection: Selection | None = None,
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
    suites = (selection or Selection()).apply(config)
    report = reporter or SilentReporter()
    recovered = recover_crashed_runs(stores.local) if stores is not None else []
    env = environment(host)
    total = sum(len(interleaved(s.benchmarks)) for s in suites)
    report.start(total)
    runs: list[RunResult] = []
    store_error: str | None = None
    workers = pool or WorkerPool(start_method)
    bench = Bench(workers, env, report, stores.local if stores is not None else None,
                   target=target, kill=kill, packages=recorded_packages(config),
                   pricing=config.pricing)
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




def detect_and_confirm(config: Config, stores: Stores, runs: list[RunResult],
                       sync: SyncReport | None, *, pool: WorkerPool,
                       host: str | None = None, stop: threading.Event | None = None,
                       kill: threading.Event | None = None,
                       environment: Callable[[str | None], Environment] = capture_host,
                       confirm: bool = True, ab_runner: AbRunner | None = None) -> Outcome:
    """Detection (and confirmation runs, and the automatic A/B) for runs already stored
    and forwarded: what run_once does after its sync, for serve, whose database thread
    forwards."""
    bench = Bench(pool, environment(host), SilentReporter(), stores.local, kill=kill,
                   packages=recorded_packages(config), pricing=config.pricing)
    detection, detection_error = confirmation.detect_changes(config, stores, runs, sync)
    outcome = Outcome(runs, None, sync, detection, detection_error)
    if confirm and detection is not None and config.detection.confirmation.enabled:
        outcome = confirmation.confirm(config, stores, outcome, bench, stop)
    return auto_ab(config, stores, outcome, ab_runner or package_ab(
        config.detection.ab, host=host, start_method=pool.start_method, stop=stop))


def _after_runs(config: Config, stores: Stores | None, runs: list[RunResult],
                store_error: str | None, bench: Bench, *,
                stop: threading.Event | None, confirm: bool) -> Outcome:
    """Forward, detect, and run confirmation points for this cycle's suspicions."""
    sync = stores.sync() if stores is not None and store_error is None else None
    detection, detection_error = (confirmation.detect_changes(config, stores, runs, sync)
                                  if stores is not None and store_error is None
                                  else (None, None))
    outcome = Outcome(runs, store_error, sync, detection, detection_error)
    if (confirm and stores is not None and detection is not None
            and config.detection.confirmation.enabled):
        outcome = confirmation.confirm(config, stores, outcome, bench, stop)
    return outcome


