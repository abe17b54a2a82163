"""`collector serve`: suites on a schedule (APScheduler 3), /metrics, and a clean stop.

One benchmark at a time on this host: every suite job and the outbox retry run on one
worker thread, so benchmarks never overlap (on any device), a suite whose time comes while
another runs waits its turn, and a suite already waiting is not queued twice (coalesced).
Misfires after downtime are coalesced into one run within `misfire_grace_s`.

On SIGTERM, SIGINT or SIGHUP (a hangup is a stop, not a reload: a config change takes a
restart): no new runs start; the running benchmark gets `grace_s` to finish, then its
worker is killed and recorded as aborted; the run is stored whole, in one transaction,
with status `aborted`. The stop never waits on the database: a thread stuck in a call to a
PostgreSQL that stopped answering is left behind (every run is in the local store first).

PostgreSQL is only ever called from the database thread (forwarding the outbox, then
reading what /metrics shows of regressions) and, right after it delivered runs, from the
detection job: benchmarks and scrapes never wait on it, and /healthz turns 503 when a
sync has not finished for `sync_stuck_s`. Runs of a collector that died mid-run are
recovered at start (collector.usecases.cycle.recover_crashed_runs).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from collector.adapters.config import Config
from collector.adapters.host import capture_host
from collector.adapters.http import ALERTS_TOKEN_FILE_ENV, MetricsServer, serve_metrics
from collector.adapters.measure import WorkerPool
from collector.adapters.scheduling import schedule_intervals, trigger_for
from collector.adapters.store import SQLiteStore, Stores, SyncReport
from collector.domain.errors import StoreError, TemporaryStoreError
from collector.domain.history import ACTIVE_STATUSES, DetectionState, Regression, Store
from collector.domain.model import RunResult
from collector.domain.series import SeriesInfo
from collector.present.exposition import Exposition, ServiceCollector
from collector.present.text import detection_line
from collector.usecases.cycle import detect_and_confirm, run_once
from collector.usecases.journal import recover_crashed_runs
from collector.usecases.outcome import Outcome
from collector.usecases.select import Selection
from collector.version import __version__

log = logging.getLogger("collector.serve")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


SYNC_STUCK_S = 300.0  # a sync running longer than this makes /healthz say 503
# After the kill, how long the stop waits for the benchmark thread: the runner itself may
# take its exit grace (10 s) to see a killed worker go; longer means a database call.
_STUCK_THREAD_WAIT_S = 25.0


class RegressionSnapshot:
    """What /metrics shows of the history of record's regressions, as the database thread
    last read it: a scrape never waits on PostgreSQL. Before the first read, or after a
    failed one, reading raises (the exporter then says collector_regressions_readable 0)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: list[SeriesInfo] = []
        self._active: list[Regression] = []
        self._states: list[DetectionState] = []
        self._error: str | None = "regressions not read from PostgreSQL yet"

    def refresh(self, store: Store) -> None:
        try:
            series, active = store.list_series(), store.regressions(ACTIVE_STATUSES)
            states = store.detection_states()
        except StoreError as exc:
            with self._lock:
                self._error = str(exc)
            return
        with self._lock:
            self._series, self._active, self._states, self._error = (
                series, active, states, None)

    def failed(self, error: str) -> None:
        with self._lock:
            self._error = error

    def _read(self) -> None:
        if self._error is not None:
            raise TemporaryStoreError(self._error)

    def list_series(self, **filters: str | int) -> list[SeriesInfo]:
        with self._lock:
            self._read()
            return [s for s in self._series
                    if all(getattr(s, k) == v for k, v in filters.items())]

    def regressions(self, statuses: tuple[str, ...] | None = None,
                    series_id: str | None = None,
                    metric: str | None = None) -> list[Regression]:
        with self._lock:
            self._read()
            return [r for r in self._active
                    if (statuses is None or r.status in statuses)
                    and series_id in (None, r.series_id) and metric in (None, r.metric)]

    def detection_states(self) -> list[DetectionState]:
        with self._lock:
            self._read()
            return list(self._states)


class Service:
    """The long-running collector: scheduler, metrics endpoint and stores."""

    def __init__(self, config: Config, stores: Stores, *, host: str | None = None,
                 start_method: str = "forkserver", port: int | None = None,
                 alerts_token: bytes | None = None, sync_stuck_s: float = SYNC_STUCK_S) -> None:
        self.config = config
        self._alerts_token = alerts_token
        self._sync_stuck_s = sync_stuck_s
        self.stores = stores
        self.host = host
        self.port = config.serve.port if port is None else port
        self.stop_event = threading.Event()  # no new benchmark starts
        self.kill_event = threading.Event()  # the running worker is killed
        self.stopped = threading.Event()
        self.abandoned = False  # the stop left a thread stuck in a database call behind
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
        # The database thread's own stores (SQLite and PostgreSQL connections of its own).
        self._db_stores: Stores | None = None
        self._db_thread: threading.Thread | None = None
        self._db_wake = threading.Event()
        self._db_since: float | None = None  # monotonic start of the sync in progress
        self._undetected: list[RunResult] = []  # stored, waiting for PostgreSQL
        self._undetected_lock = threading.Lock()
        self._snapshot = RegressionSnapshot()
        self.exposition = Exposition(self._reader, ServiceCollector(
            {"version": __version__, "torch": env.torch_version or "",
             "transformers": env.transformers_version or ""},
            # Without a database nothing is forwarded: the backlog is not one to alert on.
            outbox_pending=(self._reader.pending_count if stores.database_url is not None
                            else None), next_runs=self.next_runs,
            intervals=schedule_intervals(config)), regressions=self._regression_store)

    def _regression_store(self) -> Store:
        """Where the exporter reads regressions: the local store, or with PostgreSQL the
        database thread's latest snapshot of it (scrapes never wait on a database)."""
        if self.stores.database_url is None:
            return self._reader
        return self._snapshot  # type: ignore[return-value]  # the read half of Store

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        recover_crashed_runs(self.stores.local)  # a previous process killed mid-run
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
        self._scheduler.start()
        if self.stores.database_url is not None:
            self._db_stores = Stores(SQLiteStore(self.stores.local.path),
                                     self.stores.database_url, self.stores.schema,
                                     self.stores.retry, self.stores.options)
            self._db_thread = threading.Thread(target=self._database_loop,
                                               name="collector-db", daemon=True)
            self._db_thread.start()
        self._http = serve_metrics(self.exposition.render, self.health, host=self.config.serve.host,
                                   port=self.port, alerts_token=self._alerts_token)
        if self._alerts_token is None and self.config.serve.host not in _LOOPBACK:
            log.warning("POST /alerts takes notifications from anyone who can reach %s: set "
                        "%s to a file holding a bearer token", self.config.serve.host,
                        ALERTS_TOKEN_FILE_ENV)
        host, port = self._http.address
        log.info("serving /metrics on http://%s:%d", f"[{host}]" if ":" in host else host, port)

    @property
    def address(self) -> tuple[str, int]:
        assert self._http is not None
        return self._http.address

    def request_stop(self, reason: str | None = None) -> None:
        """Stop scheduling; give the running benchmark grace_s, then kill it. `reason` (the
        signal's name) goes in the log line."""
        if self.stop_event.is_set():
            return
        log.info("stopping%s: no new runs; %.0f s grace for the running benchmark",
                 f" on {reason}" if reason else "", self.config.serve.grace_s)
        self.stop_event.set()
        self._scheduler.pause()
        threading.Thread(target=self._finish, name="collector-stop", daemon=True).start()

    def _finish(self) -> None:
        self._db_wake.set()  # the database thread sees the stop and ends after its call
        idle = self._busy.acquire(timeout=self.config.serve.grace_s)
        if not idle:
            log.warning("grace period over: killing the running benchmark")
            self.kill_event.set()
            idle = self._busy.acquire(timeout=_STUCK_THREAD_WAIT_S)
        if idle:
            self._busy.release()
            self._scheduler.shutdown(wait=True)
            self._pool.close()  # stops the valgrind forkserver, if instructions mode started one
        else:  # stuck in a database call, not in a benchmark (its worker is killed)
            log.warning("the benchmark thread is stuck in a database call: stopping without "
                        "it (its runs are in the local store)")
            self.abandoned = True
            self._scheduler.shutdown(wait=False)
        if self._http is not None:
            self._http.stop()
        if self._db_thread is not None:
            self._db_thread.join(timeout=1.0)
        if self._db_thread is None or not self._db_thread.is_alive():
            self._reader.close()
            if self._db_stores is not None:
                self._db_stores.close()
        self.stopped.set()

    def health(self) -> tuple[bool, str]:
        if self.stop_event.is_set():
            return False, "stopping"
        if not self._scheduler.running:
            return False, "scheduler is not running"
        since = self._db_since
        if since is not None and time.monotonic() - since > self._sync_stuck_s:
            return False, (f"database sync running for {time.monotonic() - since:.0f} s "
                           f"(limit {self._sync_stuck_s:.0f} s): PostgreSQL does not answer")
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
                               kill=self.kill_event, forward=False)
            # Render the new values now, so no scrape pays for it (about 1 s at 1,000 series).
            self.exposition.render()
        if self.stores.database_url is not None and not outcome.store_error:
            with self._undetected_lock:
                self._undetected += outcome.runs
            self._db_wake.set()  # forward now, then detect
        for run in outcome.runs:
            failed = sum(r.status == "failed" for r in run.results)
            log.info("suite %s: %s, %d result(s), %d failed", name, run.status,
                     len(run.results), failed)
        if outcome.store_error:
            log.error("suite %s: results not stored: %s", name, outcome.store_error)
        if outcome.sync is not None and not outcome.sync.ok:
            log.warning("%d run(s) wait in the outbox: %s", outcome.sync.pending,
                        outcome.sync.error)
        if outcome.detection_error is not None and self.stores.database_url is None:
            log.warning("regression detection did not run: %s", outcome.detection_error)
        self._log_detection(outcome)

    def _log_detection(self, outcome: Outcome) -> None:
        judged = {r.regression_id: r for r in outcome.confirmed}
        for seen in (outcome.detection.new + outcome.detection.changed
                     if outcome.detection is not None else []):
            record = judged.get(seen.regression_id, seen)
            log.info("%s (id %s)", detection_line(record), record.regression_id)

    def _database_loop(self) -> None:
        """Forward the outbox now and then (at once after a suite), refresh what /metrics
        shows of regressions, and hand delivered runs to detection. Its own connections;
        it holds no lock a benchmark, a scrape or the stop needs."""
        assert self._db_stores is not None
        while not self.stop_event.is_set():
            self._db_since = time.monotonic()
            try:
                report = self._db_stores.sync()
                if report is not None and report.ok:
                    self._snapshot.refresh(self._db_stores.primary())
                elif report is not None:
                    self._snapshot.failed(report.error or "PostgreSQL unavailable")
            except StoreError as exc:  # sync reports; reaching primary() may raise
                report = None
                self._snapshot.failed(str(exc))
                log.warning("database: %s", exc)
            finally:
                self._db_since = None
            if report is not None and not report.ok:
                log.warning("%d run(s) wait in the outbox: %s", report.pending, report.error)
            elif report is not None and not self.stop_event.is_set():
                with self._undetected_lock:
                    runs, self._undetected = self._undetected, []
                if runs:
                    self._scheduler.add_job(self._detect, args=[runs, report],
                                            name="detection")
            self._db_wake.wait(self.config.serve.outbox_retry_s)
            self._db_wake.clear()

    def _detect(self, runs: list[RunResult], report: SyncReport) -> None:
        """Detection and confirmation runs for delivered runs, on the benchmark thread
        (confirmation runs are benchmarks)."""
        with self._busy:
            if self.stop_event.is_set():
                return
            outcome = detect_and_confirm(self.config, self.stores, runs, report,
                                         pool=self._pool, host=self.host,
                                         stop=self.stop_event, kill=self.kill_event)
            self.exposition.render()
        if outcome.detection_error is not None:
            log.warning("regression detection did not run: %s", outcome.detection_error)
        self._log_detection(outcome)
