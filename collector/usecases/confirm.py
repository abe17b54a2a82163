"""Detection after a cycle and the confirmation runs of its suspicions: a suspected change
(or a latest run that is a worse outlier) gets more points of its benchmark at once, so a
real change pages in the same cycle and a burst of noise is dismissed."""

from __future__ import annotations

import dataclasses
import logging
import threading

from collector.adapters.config import Config
from collector.adapters.store import Stores, SyncReport
from collector.analysis.combine import combine
from collector.analysis.cost import priced
from collector.domain.errors import StoreError
from collector.domain.history import Regression
from collector.domain.model import BenchmarkSpec, MeasurementMode, RunResult
from collector.usecases.bench import Bench, RunClock
from collector.usecases.outcome import Outcome
from collector.usecases.scan import ScanReport, ScanSettings, confirm_series, scan
from collector.version import __version__

log = logging.getLogger("collector.runs")


def detect_changes(config: Config, stores: Stores, runs: list[RunResult],
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


def confirm(config: Config, stores: Stores, outcome: Outcome, bench: Bench,
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
            reps = spec.measurement.repetitions
            # Stored and forwarded like a scheduled run's result: priced alike.
            point = priced(combine([bench.one(spec, log_run, 0, clock, (rep + 1, reps))
                                    for rep in range(reps)]), bench.pricing, host)
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


