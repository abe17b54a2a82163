"""The history store on PostgreSQL (TimescaleDB when the extension is there), via psycopg 3.

One transaction per run; raw samples and measurements go in with COPY. Errors are sorted into
temporary (retry: the server is away or restarting) and permanent (permission, schema,
credentials: retrying will not help). The connection URL comes from the environment or a
file, never from the config, and is only ever shown with its password replaced.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from collector.adapters.redact import (
    database_url_problem,
    normalise_url,
    remember,
    remember_url,
    scrub,
)
from collector.adapters.redact import redact as redact  # noqa: PLC0414 - explicit re-export (mypy)
from collector.adapters.store import activity, regressions
from collector.adapters.store import results as stored
from collector.adapters.store.migrate import Applied, Migration, SchemaPolicy, ensure_schema
from collector.adapters.store.pg_errors import (
    LOCK_HOLDERS,
    REQUIRED_COLUMNS,
    TABLE_LOCK_HOLDERS,
    WRITTEN_COLUMNS,
    classify,
    describe_sessions,
)
from collector.adapters.store.rows import (
    FAILURE_COLUMNS,
    MEASUREMENT_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    SERIES_COLUMNS,
    SERIES_RELABELLED,
    measurement_table,
    run_rows,
)
from collector.domain.catalogue import METRICS
from collector.domain.errors import (
    PermanentStoreError,
    RejectedDataError,
    SchemaError,
    TemporaryStoreError,
)
from collector.domain.history import (
    Baseline,
    DetectionState,
    FailureRecord,
    LatestValue,
    Point,
    Regression,
    ResultsOfRun,
    SeriesActivity,
    SeriesConditions,
    SeriesHistory,
    StoredRun,
    SuiteActivity,
)
from collector.domain.model import BenchmarkResult, RunResult
from collector.domain.series import DIMENSIONS_BY_NAME, SeriesInfo, check_series_filters
from collector.domain.series import SERIES_COLUMNS as SERIES_LABEL_COLUMNS

_JSONB = {"environment", "spec", "identity", "measurement", "noise", "repetitions"}
_MIGRATION_LOCK_KEY = 0x636F6C6C  # "coll": one advisory lock for every collector
# Our sessions are named, so a lock holder or a blocked migration can be told apart from
# someone else's session (a `application_name` in the database URL wins).
APPLICATION_NAME = "collector"
# TCP-level bounds for a server (or the network to it) that goes silent: keepalive probes
# after 30 s idle, every 10 s, dead after 3 unanswered (about 1 minute); unacknowledged
# data gives up after 30 s. A `key=value` of the same name in the database URL wins.
_TCP_BOUNDS = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
               "keepalives_count": "3", "tcp_user_timeout": "30000"}
# Beyond the server's own statement_timeout, how long the client waits before it gives the
# connection up: a server that is stopped (SIGSTOP, a hung host whose kernel still
# acknowledges) enforces no timeout of its own, and the kernel answers keepalives.
_CLIENT_MARGIN_S = 5.0
# Migrations (a hypertable's data migration, say) get longer than ordinary statements.
MIGRATION_TIMEOUT_S = 1800.0

log = logging.getLogger("collector.store.postgres")


_RUNS_PER_BOUND = 100  # runs record_runs writes within one statement timeout, at least


def _insert(table: str, columns: Sequence[str], suffix: str = "") -> sql.Composed:
    marks = [sql.SQL("%s::jsonb" if c in _JSONB else "%s") for c in columns]
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) {}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(marks), sql.SQL(suffix))


# A series' labels follow its latest run (collector.adapters.store.rows.SERIES_RELABELLED).
_RELABEL = "ON CONFLICT (series_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in SERIES_RELABELLED)


def _copy(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))


# Binary COPY (about 20% faster than text here) needs each column's type up front.
_COPY_TYPES = {
    "measurements": ["timestamptz", "uuid", "text", "text", "float8", "text"],
    "confirmation_measurements": ["timestamptz", "uuid", "text", "text", "float8", "text"],
    "samples": ["uuid", "text", "text", "int4", "float8"],
}


class PostgresStore:
    dialect = "postgres"

    def __init__(self, url: str, *, schema: SchemaPolicy | None = "migrate",
                 migrations: list[Migration] | None = None, connect_timeout: float = 10.0,
                 statement_timeout: float = 60.0,
                 bulk: Literal["copy", "executemany"] = "copy",
                 timescale_policies: tuple[str | None, str | None] | None = None,
                 ) -> None:
        """`connect_timeout` bounds each connection attempt and `statement_timeout` each
        call (on the server, and on the client a few seconds later, for a server that
        stops answering). `timescale_policies` (compress_after, retain_for) are set after
        a start-up migration on TimescaleDB, as `collector db migrate` sets them."""
        # Every secret of the URL, as given, is scrubbed from whatever this process shows
        # from now on; the store connects with the URL as meant (no BOM, quotes, spaces).
        remember_url(url)
        self._url = normalise_url(url)
        self.redacted_url = redact(self._url)
        problem = database_url_problem(self._url)
        if problem is not None:
            raise PermanentStoreError(f"cannot use the database URL: it {problem}")
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._bulk = bulk
        self._conn: psycopg.Connection[Any] | None = None
        self._armed = 0  # the token of the outermost _guard running (0: none)
        self._token = 0
        self._abort_lock = threading.Lock()
        self._aborted = False
        self.notes: list[str] = []  # what a user should know about this database
        # How long to wait for another session's migration lock (and a migration for a
        # table lock) before giving up with the holder named; `db migrate` waits less.
        self.migration_lock_timeout_s = MIGRATION_TIMEOUT_S
        with self._guard():
            conn = self._connection()
            if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
                # Under the migration lock: concurrent CREATE TABLE IF NOT EXISTS collide.
                with self.migration_lock():
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer "
                        "PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
                        "applied_at timestamptz NOT NULL DEFAULT now())")
        # Not under one guard: each call bounds itself (a migration for longer).
        applied = ensure_schema(self, schema, migrations)
        if schema is not None:  # a store that writes
            try:
                self.check_columns()
            except SchemaError:
                self.close()
                raise
        if applied and timescale_policies is not None:
            self.apply_timescale_policies(*timescale_policies)

    # -- connection and errors -------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            given = conninfo_to_dict(self._url)
            bounds = {k: v for k, v in _TCP_BOUNDS.items() if k not in given}
            bounds.setdefault("fallback_application_name", APPLICATION_NAME)
            self._conn = psycopg.connect(make_conninfo(self._url, **bounds), autocommit=True,
                                         connect_timeout=max(1, int(self._connect_timeout)))
            try:
                self._conn.execute("SELECT set_config('statement_timeout', %s, false)",
                                   (f"{int(self._statement_timeout * 1000)}ms",))
            except BaseException:
                self._conn.close()
                self._conn = None
                raise
        return self._conn

    def _abort(self, token: int) -> None:
        """The client-side deadline: shut the socket down under a call that waits on a
        server that does not answer, so it fails now (the connection is then dropped)."""
        with self._abort_lock:
            conn = self._conn
            if self._armed != token or conn is None or conn.closed:
                return
            self._aborted = True
            with contextlib.suppress(OSError, psycopg.Error):
                duplicate = socket.socket(fileno=os.dup(conn.pgconn.socket))
                try:
                    duplicate.shutdown(socket.SHUT_RDWR)
                finally:
                    duplicate.close()

    @contextlib.contextmanager
    def _guard(self, bound_s: float | None = None) -> Iterator[None]:
        """Database errors as store errors; the outermost guard also bounds the whole
        block in time (statement_timeout plus a margin, unless told otherwise)."""
        if self._armed:
            yield
            return
        bound = (bound_s if bound_s is not None else self._statement_timeout) \
            + _CLIENT_MARGIN_S + self._connect_timeout
        with self._abort_lock:
            self._token += 1
            self._armed, self._aborted = self._token, False
        timer = threading.Timer(bound, self._abort, args=(self._armed,))
        timer.daemon = True
        timer.start()
        try:
            yield
        except psycopg.Error as exc:
            if self._conn is not None and (self._conn.broken or self._aborted or isinstance(
                    exc, psycopg.OperationalError)):
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            if self._aborted:
                raise TemporaryStoreError(
                    f"{self.redacted_url} did not answer within {bound:g} s; the "
                    "connection was given up") from None
            raise classify(exc, self._url) from None
        finally:
            with self._abort_lock:
                self._armed = 0
            timer.cancel()

    # -- migrations ------------------------------------------------------------------------

    def applied_migrations(self) -> list[Applied]:
        with self._guard():
            rows = self._connection().execute(
                "SELECT version, name, checksum, applied_at FROM schema_migrations "
                "ORDER BY version").fetchall()
        return [Applied(*row) for row in rows]

    def apply_migration(self, migration: Migration) -> bool:
        with self._guard(MIGRATION_TIMEOUT_S):
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                 (f"{int(MIGRATION_TIMEOUT_S * 1000)}ms",))
                    # A session holding a table (a reader's open transaction) would hold
                    # the migration up silently: bounded, and named below.
                    conn.execute("SELECT set_config('lock_timeout', %s, true)",
                                 (f"{max(1, int(self.migration_lock_timeout_s * 1000))}ms",))
                    if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s",
                                    (migration.version,)).fetchone():
                        return False
                    conn.execute(migration.sql.encode())  # no parameters: a script
                    conn.execute("INSERT INTO schema_migrations (version, name, checksum) "
                                 "VALUES (%s, %s, %s)",
                                 (migration.version, migration.name, migration.checksum))
            except pg_errors.LockNotAvailable:
                holders = describe_sessions(conn.execute(TABLE_LOCK_HOLDERS).fetchall())
                raise TemporaryStoreError(
                    f"{self.redacted_url}: migration {migration.version:04d}_{migration.name} "
                    f"waited {self.migration_lock_timeout_s:g} s for a table that another "
                    f"session holds ({holders or 'it has let go since'}); nothing was "
                    "applied; end that session (SELECT pg_terminate_backend(pid)) or wait "
                    "for it, then migrate again") from None
        return True

    def check_columns(self) -> None:
        """Refuse a schema with a NOT NULL column, without a default, that the collector
        does not write (added by hand): every run would be refused by it. The error names
        the columns."""
        with self._guard():
            rows = self._connection().execute(REQUIRED_COLUMNS,
                                              (list(WRITTEN_COLUMNS),)).fetchall()
        foreign = [f"{table}.{column}" for table, column in rows
                   if column not in WRITTEN_COLUMNS[table]]
        if foreign:
            raise SchemaError(
                f"schema mismatch on {self.redacted_url}: column(s) {', '.join(foreign)} are "
                "NOT NULL without a default, and the collector does not write them (added "
                "outside its migrations?): every run would be refused; give them a default, "
                "allow NULL or drop them")

    def _listed_extensions(self) -> set[str]:
        rows = self._connection().execute("SELECT name FROM pg_available_extensions")
        return {name for (name,) in rows}

    def _timescaledb_preloaded(self) -> bool:
        """TimescaleDB's loader defines timescaledb.disable_load only when the library is
        in shared_preload_libraries; without it the extension cannot be used."""
        row = self._connection().execute(
            "SELECT current_setting('timescaledb.disable_load', true)").fetchone()
        return row is not None and row[0] is not None

    def available_extensions(self) -> set[str]:
        """The extensions this database can use. TimescaleDB installed but not preloaded
        counts as absent (its migration would kill the session), with a note saying so."""
        with self._guard():
            names = self._listed_extensions()
            if "timescaledb" in names and not self._timescaledb_preloaded():
                names.discard("timescaledb")
                note = ("the timescaledb extension is installed but not in "
                        "shared_preload_libraries: running as plain PostgreSQL (add it there "
                        "and restart the server to use TimescaleDB)")
                if note not in self.notes:
                    self.notes.append(note)
                    log.warning("%s: %s", self.redacted_url, note)
        return names

    def lock_holders(self) -> str:
        """The sessions holding the migration lock, described ('' when none)."""
        with self._guard():
            rows = self._connection().execute(
                LOCK_HOLDERS, (_MIGRATION_LOCK_KEY >> 32, _MIGRATION_LOCK_KEY & 0xFFFFFFFF),
            ).fetchall()
        return describe_sessions(rows)

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        # Polled with short statements, so a server that stops answering is told apart
        # from another collector that migrates (which may take minutes). Waiting is said
        # at once, with the holder; giving up names it again.
        timeout = self.migration_lock_timeout_s
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            with self._guard():
                row = self._connection().execute("SELECT pg_try_advisory_lock(%s)",
                                                 (_MIGRATION_LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                break
            if not waiting:
                waiting = True
                log.warning("%s: waiting up to %g s for the migration lock, held by %s",
                            self.redacted_url, timeout, self.lock_holders() or "another session")
            if time.monotonic() > deadline:
                holders = self.lock_holders()
                raise TemporaryStoreError(
                    f"{self.redacted_url}: the migration lock was held for {timeout:g} s by "
                    f"{holders or 'another session (it has let go since)'}; a collector that "
                    "migrates holds it for as long as that takes, any other session can be "
                    "ended with SELECT pg_terminate_backend(pid)")
            time.sleep(0.2)
        try:
            yield
        finally:
            with self._guard():
                if self._conn is not None and not self._conn.closed:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))

    @property
    def mode(self) -> str:
        """'timescaledb X.Y' when the extension is installed here, else 'postgresql'."""
        with self._guard():
            row = self._connection().execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        return f"timescaledb {row[0]}" if row else "postgresql"

    def apply_timescale_policies(self, compress_after: str | None,
                                 retain_for: str | None) -> None:
        """Compression and retention of measurements (TimescaleDB only; a no-op elsewhere)."""
        if not self.mode.startswith("timescaledb"):
            return
        with self._guard():
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT remove_compression_policy('measurements', "
                             "if_exists => true)")
                if compress_after:
                    conn.execute("SELECT add_compression_policy('measurements', "
                                 "compress_after => %s::interval)", (compress_after,))
                conn.execute("SELECT remove_retention_policy('measurements', if_exists => true)")
                if retain_for:
                    conn.execute("SELECT add_retention_policy('measurements', "
                                 "drop_after => %s::interval)", (retain_for,))
        self.refresh_aggregates()

    def refresh_aggregates(self) -> None:
        """Materialise the hourly and daily aggregates over all history (after a
        migration: their policies then keep them current). Outside any transaction, as
        TimescaleDB requires; a no-op where they are plain views."""
        with self._guard(MIGRATION_TIMEOUT_S):
            conn = self._connection()
            views = {name for (name,) in conn.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates "
                "WHERE view_name IN ('measurements_hourly', 'measurements_daily')")}
            conn.execute("SELECT set_config('statement_timeout', %s, false)",
                         (f"{int(MIGRATION_TIMEOUT_S * 1000)}ms",))
            try:
                for view in sorted(views):
                    try:
                        conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, "
                                     "NULL)", (view,))
                    except psycopg.Error as exc:
                        # A refresh policy started at creation is materialising it now
                        # (from the beginning, like this call): nothing left to do here.
                        if "concurrent refresh" not in str(exc):
                            raise
                        log.info("%s is being refreshed by its policy job", view)
            finally:
                conn.execute("SELECT set_config('statement_timeout', %s, false)",
                             (f"{int(self._statement_timeout * 1000)}ms",))

    def create_reader(self, name: str, password: str, *, kind: str = "reader") -> None:
        """A log-in role that can SELECT and nothing else (member of collector_readonly),
        or with kind="writer" read and write rows and nothing else (collector_writer).
        An existing role that is more than that is refused (collector.adapters.store.roles)."""
        from collector.adapters.store import roles

        remember(password)  # never in an error text, whatever the server quotes
        with self._guard():
            roles.create_login(self._connection(), name, password, kind=kind)

    # -- writes ----------------------------------------------------------------------------

    def record_run(self, run: RunResult) -> bool:
        return self.record_runs([run]) == 1

    def record_runs(self, runs: Sequence[RunResult], *, bound_s: float | None = None) -> int:
        """Store runs in one transaction, all of them or none; a run already stored (same
        run id) is left as it is. Returns how many were new. `bound_s` bounds the whole
        write; by default one statement's timeout per 100 runs (an import of a year is
        thousands of runs in one transaction: each statement stays bounded on its own)."""
        if bound_s is None and len(runs) > _RUNS_PER_BOUND:
            bound_s = self._statement_timeout * math.ceil(len(runs) / _RUNS_PER_BOUND)
        if len(runs) > 1:  # an import again: what is stored already is not even flattened
            with self._guard():
                present = {row[0].hex for row in self._connection().execute(
                    "SELECT run_id FROM runs WHERE run_id = ANY(%s)",
                    ([uuid.UUID(run.run_id) for run in runs],))}
            runs = [run for run in runs if run.run_id not in present]
        if not runs:
            return 0
        prepared = []
        for run in runs:
            try:
                prepared.append((run, run_rows(run)))
            except (ValueError, TypeError, KeyError, OverflowError) as exc:
                raise RejectedDataError(
                    f"run {run.run_id} cannot be written to {self.redacted_url}: "
                    f"{type(exc).__name__}: {scrub(str(exc))}") from None
        with self._guard(bound_s):
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                # One statement per table for all the runs (pipelined inserts, one COPY
                # each for values and samples): a year's import is tens of thousands of
                # runs, and a round trip per statement per run would be most of its time.
                cur.executemany(_insert("runs", RUN_COLUMNS,
                                        "ON CONFLICT (run_id) DO NOTHING RETURNING run_id"),
                                [rows.run for _, rows in prepared], returning=True)
                new: set[str] = set()
                while True:
                    new.update(row[0].hex if isinstance(row[0], uuid.UUID) else str(row[0])
                               for row in cur.fetchall())
                    if not cur.nextset():
                        break
                fresh = [(run, rows) for run, rows in prepared if run.run_id in new]
                series: dict[str, tuple[Any, ...]] = {}
                for _, rows in fresh:  # oldest first: a series' latest labels win
                    series.update((row[0], row) for row in rows.series)
                cur.executemany(_insert("series", SERIES_COLUMNS, _RELABEL),
                                [series[k] for k in sorted(series)])
                cur.executemany(_insert("results", RESULT_COLUMNS),
                                [r for _, rows in fresh for r in rows.results])
                for table in ("measurements", "confirmation_measurements"):
                    self._bulk_write(cur, table, MEASUREMENT_COLUMNS,
                                     [m for run, rows in fresh
                                      if measurement_table(run) == table
                                      for m in rows.measurements])
                self._bulk_write(cur, "samples", SAMPLE_COLUMNS,
                                 [x for _, rows in fresh for x in rows.samples])
                cur.executemany(_insert("failures", FAILURE_COLUMNS),
                                [f for _, rows in fresh for f in rows.failures])
        return len(fresh)

    def _bulk_write(self, cur: psycopg.Cursor[Any], table: str, columns: Sequence[str],
                    rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self._bulk == "executemany":
            cur.executemany(_insert(table, columns), rows)
            return
        run_at = columns.index("run_id")
        with cur.copy(_copy(table, columns)) as copy:
            copy.set_types(_COPY_TYPES[table])
            for row in rows:
                copy.write_row((*row[:run_at], uuid.UUID(row[run_at]), *row[run_at + 1:]))

    # -- reads -----------------------------------------------------------------------------

    def _query(self, query: str | sql.Composed, params: Sequence[Any] = ()) -> list[Any]:
        with self._guard():
            return self._connection().execute(query, params).fetchall()

    def history(self, series_id: str, metric: str, start: datetime | None = None,
                end: datetime | None = None) -> list[Point]:
        rows = self._query(
            "SELECT time, value, run_id FROM measurements WHERE series_id = %s AND metric = %s "
            "AND (%s::timestamptz IS NULL OR time >= %s) "
            "AND (%s::timestamptz IS NULL OR time < %s) ORDER BY time",
            (series_id, metric, start, start, end, end))
        return [Point(t, float(v), r.hex) for t, v, r in rows]

    def latest(self, metric: str | None = None) -> list[LatestValue]:
        # One index probe per (series, metric): PostgreSQL cannot skip-scan, and DISTINCT ON
        # over a year of history sorts the whole table (3 s at 7M rows, 3 ms this way).
        metrics = [metric] if metric is not None else sorted(METRICS)
        rows = self._query(
            "SELECT s.series_id, k.metric, m.unit, m.value, m.time, m.run_id "
            "FROM series s CROSS JOIN unnest(%s::text[]) AS k(metric) "
            "CROSS JOIN LATERAL (SELECT unit, value, time, run_id FROM measurements "
            "    WHERE series_id = s.series_id AND metric = k.metric "
            "    ORDER BY time DESC LIMIT 1) AS m "
            "ORDER BY s.series_id, k.metric", (metrics,))
        return [LatestValue(s, m, u, float(v), t, r.hex) for s, m, u, v, t, r in rows]

    def list_series(self, **filters: str | int) -> list[SeriesInfo]:
        check_series_filters(filters)
        conditions = sql.SQL("").join(
            sql.SQL(" AND {} = %s").format(sql.Identifier(DIMENSIONS_BY_NAME[name].store_column))
            for name in filters)
        query = sql.SQL("SELECT {} FROM series WHERE TRUE{} ORDER BY series_id").format(
            sql.SQL(", ").join(map(sql.Identifier, SERIES_LABEL_COLUMNS)), conditions)
        return [SeriesInfo(*row) for row in self._query(query, list(filters.values()))]

    def failures(self, series_id: str | None = None,
                 since: datetime | None = None) -> list[FailureRecord]:
        rows = self._query(
            "SELECT run_id, series_id, time, kind, message, exception_type, traceback_tail "
            "FROM failures WHERE (%s::text IS NULL OR series_id = %s) "
            "AND (%s::timestamptz IS NULL OR time >= %s) ORDER BY time DESC",
            (series_id, series_id, since, since))
        return [FailureRecord(r.hex, s, t, k, m, e, tb) for r, s, t, k, m, e, tb in rows]

    def data_version(self) -> str:
        count, stored, changed = self._query(
            "SELECT count(*), max(stored_at), (SELECT max(updated_at) FROM regressions) "
            "FROM runs")[0]
        return f"{count}:{stored}:{changed}"

    def series_activity(self) -> list[SeriesActivity]:
        return activity.series_activity(self._query)

    def suite_activity(self) -> list[SuiteActivity]:
        return activity.suite_activity(self._query)

    def series_conditions(self) -> list[SeriesConditions]:
        return activity.series_conditions(self._query)

    def run_count(self) -> int:
        return int(self._query("SELECT count(*) FROM runs")[0][0])

    # -- regressions -----------------------------------------------------------------------

    def series_history(self, series_id: str, limit: int = 400) -> SeriesHistory:
        return regressions.series_history(self._query, series_id, limit)

    def runs(self, *, suite: str | None = None, host: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             run_id_prefix: str | None = None) -> list[StoredRun]:
        return stored.select_runs(self._query, suite=suite, host=host, since=since, until=until,
                                  run_id_prefix=run_id_prefix)

    def stored_results(self, runs: Sequence[StoredRun]) -> list[BenchmarkResult]:
        return stored.select_results(self._query, runs)

    def results_of_runs(self, runs: Sequence[StoredRun]) -> list[ResultsOfRun]:
        return stored.select_results_of_runs(self._query, runs)

    def latest_samples(self, series_id: str, names: Sequence[str]) -> dict[str, list[float]]:
        return regressions.latest_samples(self._query, series_id, names)

    def regressions(self, statuses: tuple[str, ...] | None = None,
                    series_id: str | None = None,
                    metric: str | None = None) -> list[Regression]:
        return regressions.select_regressions(self._query, statuses, series_id, metric)

    def save_regression(self, regression: Regression) -> None:
        params = regressions.regression_params(
            regression, encode_time=lambda t: t, encode_json=Jsonb,
            now=datetime.now(timezone.utc))
        self._write(regressions.UPSERT_REGRESSION, params)

    def add_baseline(self, baseline: Baseline) -> None:
        self._write(regressions.INSERT_BASELINE,
                    (baseline.series_id, baseline.metric, baseline.since, baseline.run_id,
                     baseline.reason))

    def baselines(self, series_id: str | None = None) -> list[Baseline]:
        return regressions.select_baselines(self._query, series_id)

    def save_detection_states(self, states: list[DetectionState]) -> None:
        if not states:
            return
        now = datetime.now(timezone.utc)
        with self._guard():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(regressions.UPSERT_DETECTION_STATE,
                                [regressions.detection_state_params(s, now) for s in states])

    def detection_states(self) -> list[DetectionState]:
        return regressions.select_detection_states(self._query)

    def _write(self, statement: str, params: Sequence[Any]) -> None:
        with self._guard():
            conn = self._connection()
            with conn.transaction():
                conn.execute(statement, params)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
