"""`collector serve`: suites on a schedule (APScheduler 3), /metrics, and a clean stop.

One benchmark at a time on this host: every suite job and the outbox retry run on one
worker thread, so benchmarks never overlap (on any device), a suite whose time comes while
another runs waits its turn, and a suite already waiting is not queued twice (coalesced).
Misfires after downtime are coalesced into one run within `misfire_grace_s`.

On SIGTERM/SIGINT: no new runs start; the running benchmark gets `grace_s` to finish, then
its worker is killed and recorded as aborted; the run is stored whole, in one transaction,
with status `aborted`.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector import __version__
from collector.config import Config, Schedule
from collector.environment import capture_host
from collector.exporter import Exposition, ServiceCollector
from collector.history import Store
from collector.http import ALERTS_TOKEN_FILE_ENV, MetricsServer, serve_metrics
from collector.runner import WorkerPool
from collector.service import Selection, run_once
from collector.store import SQLiteStore, Stores

log = logging.getLogger("collector.serve")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def trigger_for(schedule: Schedule) -> BaseTrigger:
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
    return IntervalTrigger(seconds=schedule.interval_s, timezone=schedule.timezone,
                           jitter=schedule.jitter_s or None)


def next_fire_times(config: Config, count: int = 3,
                    now: datetime | None = None) -> dict[str, list[datetime]]:
    """The next `count` run times of every scheduled suite (for `collector schedule`)."""
    start = now or datetime.now(timezone.utc)
    table: dict[str, list[datetime]] = {}
    for suite in config.suites:
        if suite.schedule is None:
            continue
        trigger = trigger_for(suite.schedule)
        times: list[datetime] = []
        previous = None
        current = start
        while len(times) < count:
            fire = trigger.get_next_fire_time(previous, current)
            if fire is None:
                break
            times.append(fire)
            previous, current = fire, fire
        table[suite.name] = times
    return table


def schedule_intervals(config: Config) -> dict[str, float]:
    """Expected seconds between runs of each scheduled suite: the interval, or for cron the
    gap between its next two run times (alert rules judge staleness by it)."""
    intervals: dict[str, float] = {}
    for name, times in next_fire_times(config, count=2).items():
        if len(times) == 2:
            intervals[name] = (times[1] - times[0]).total_seconds()
    return intervals


class Service:
    """The long-running collector: scheduler, metrics endpoint and stores."""

    def __init__(self, config: Config, stores: Stores, *, host: str | None = None,
                 start_method: str = "forkserver", port: int | None = None,
                 alerts_token: bytes | None = None) -> None:
        self.config = config
        self._alerts_token = alerts_token
        self.stores = stores
        self.host = host
        self.port = config.serve.port if port is None else port
        self.stop_event = threading.Event()  # no new benchmark starts
        self.kill_event = threading.Event()  # the running worker is killed
        self.stopped = threading.Event()
        self._busy = threading.Lock()
        self._pool = WorkerPool(start_method)
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(config.serve.misfire_grace_s)},
            timezone="UTC")
        self._http: MetricsServer | None = None
        # The exporter reads through its own connection (WAL: readers never block writers).
        self._reader = SQLiteStore(stores.local.path)
        env = capture_host(host)
        self._remote_reader: Store | None = None
        self.exposition = Exposition(self._reader, ServiceCollector(
            {"version": __version__, "torch": env.torch_version or "",
             "transformers": env.transformers_version or ""},
            outbox_pending=self._reader.pending_count, next_runs=self.next_runs,
            intervals=schedule_intervals(config)), regressions=self._regression_store)

    def _regression_store(self) -> Store:
        """Where the exporter reads regressions: the history of record, through a
        connection of its own (scrapes run on the HTTP thread)."""
        if self.stores.database_url is None:
            return self._reader
        if self._remote_reader is None:
            from collector.store.postgres import PostgresStore

            self._remote_reader = PostgresStore(self.stores.database_url, schema=None)
        return self._remote_reader

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        now = datetime.now(timezone.utc)
        for suite in self.config.suites:
            if suite.schedule is None:
                continue
            options: dict[str, Any] = {}
            if self.config.serve.run_at_start:
                options["next_run_time"] = now
            self._scheduler.add_job(self._run_suite, trigger_for(suite.schedule),
                                    args=[suite.name], id=f"suite:{suite.name}",
                                    name=suite.name, **options)
        if self.stores.database_url is not None:
            self._scheduler.add_job(self._sync, IntervalTrigger(
                seconds=self.config.serve.outbox_retry_s), id="outbox", name="outbox")
        self._scheduler.start()
        self._http = serve_metrics(self.exposition.render, self.health, host=self.config.serve.host,
                                   port=self.port, alerts_token=self._alerts_token)
        if self._alerts_token is None and self.config.serve.host not in _LOOPBACK:
            log.warning("POST /alerts takes notifications from anyone who can reach %s: set "
                        "%s to a file holding a bearer token", self.config.serve.host,
                        ALERTS_TOKEN_FILE_ENV)
        log.info("serving /metrics on http://%s:%d", *self._http.address)

    @property
    def address(self) -> tuple[str, int]:
        assert self._http is not None
        return self._http.address

    def request_stop(self) -> None:
        """Stop scheduling; give the running benchmark grace_s, then kill it."""
        if self.stop_event.is_set():
            return
        log.info("stopping: no new runs; %.0f s grace for the running benchmark",
                 self.config.serve.grace_s)
        self.stop_event.set()
        self._scheduler.pause()
        threading.Thread(target=self._finish, name="collector-stop", daemon=True).start()

    def _finish(self) -> None:
        if not self._busy.acquire(timeout=self.config.serve.grace_s):
            log.warning("grace period over: killing the running benchmark")
            self.kill_event.set()
            self._busy.acquire()
        self._busy.release()
        self._scheduler.shutdown(wait=True)
        if self._http is not None:
            self._http.stop()
        self._reader.close()
        self._pool.close()  # stops the valgrind forkserver, if instructions mode started one
        if self._remote_reader is not None:
            self._remote_reader.close()
        self.stopped.set()

    def health(self) -> tuple[bool, str]:
        if self.stop_event.is_set():
            return False, "stopping"
        if not self._scheduler.running:
            return False, "scheduler is not running"
        return True, f"ok: {len(self._scheduler.get_jobs())} job(s) scheduled"

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.name: job.next_run_time for job in self._scheduler.get_jobs()
                if job.id.startswith("suite:")}

    # -- jobs -----------------------------------------------------------------------------

    def _run_suite(self, name: str) -> None:
        with self._busy:  # the stop sequence waits on this lock
            if self.stop_event.is_set():
                return
            log.info("suite %s: starting", name)
            outcome = run_once(self.config, selection=Selection([name]), stores=self.stores,
                               pool=self._pool, host=self.host, stop=self.stop_event,
                               kill=self.kill_event)
            # Render the new values now, so no scrape pays for it (about 1 s at 1,000 series).
            self.exposition.render()
        for run in outcome.runs:
            failed = sum(r.status == "failed" for r in run.results)
            log.info("suite %s: %s, %d result(s), %d failed", name, run.status,
                     len(run.results), failed)
        if outcome.store_error:
            log.error("suite %s: results not stored: %s", name, outcome.store_error)
        if outcome.sync is not None and not outcome.sync.ok:
            log.warning("%d run(s) wait in the outbox: %s", outcome.sync.pending,
                        outcome.sync.error)
        if outcome.detection_error is not None:
            log.warning("regression detection did not run: %s", outcome.detection_error)
        judged = {r.regression_id: r for r in outcome.confirmed}
        for seen in (outcome.detection.new + outcome.detection.changed
                     if outcome.detection is not None else []):
            record = judged.get(seen.regression_id, seen)
            verdict = (f" [{record.confirmation.get('verdict')} by "
                       f"{record.confirmation.get('points')} confirmation point(s)]"
                       if record.confirmation else "")
            log.info("%s %s: %s %+.1f%% on series %s%s%s (id %s)", record.kind, record.status,
                     record.metric, record.relative_change * 100, record.series_id,
                     f" ({record.attribution})" if record.attribution else "", verdict,
                     record.regression_id)

    def _sync(self) -> None:
        with self._busy:
            report = self.stores.sync()
        if report is not None and not report.ok:
            log.warning("outbox retry: %d run(s) still pending: %s", report.pending,
                        report.error)
