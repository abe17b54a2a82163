"""The embedded local store (SQLite): history without a server, and the outbox.

Every run lands here first, in one transaction, with its JSON document in the outbox; the
forwarder later copies pending runs to PostgreSQL in order and marks them delivered. A run
PostgreSQL refuses is quarantined (kept, with its reason) so the runs behind it still go.

Every SQLite error becomes a store error: busy or locked is temporary, and writes are
retried (bounded, with backoff) past the busy timeout; a full disk (SQLITE_FULL) is a
permanent error with the whole write rolled back; anything else is permanent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from collector.adapters.store import activity, regressions
from collector.adapters.store import results as stored
from collector.adapters.store.migrate import (
    Applied,
    Migration,
    SchemaPolicy,
    ensure_schema,
    split_statements,
)
from collector.adapters.store.retry import RetryPolicy, with_retry
from collector.adapters.store.rows import (
    FAILURE_COLUMNS,
    MEASUREMENT_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    SERIES_COLUMNS,
    SERIES_RELABELLED,
    measurement_table,
    parse_time,
    run_rows,
)
from collector.domain.errors import PermanentStoreError, StoreError, TemporaryStoreError
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
from collector.version import __version__

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 30_000  # SQLite's own wait for a lock, per attempt
# Past the busy timeout a write is tried again, with backoff: about 2 minutes in all
# (4 x 30 s plus 7 s of pauses) before the caller hears the store is busy.
BUSY_RETRY = RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=4.0)


@dataclass(frozen=True)
class QuarantinedRun:
    """A run the database refused, kept in the outbox with the reason."""

    seq: int
    run_id: str
    quarantined_at: datetime
    quarantined_by: str  # the collector version that set it aside
    attempts: int
    reason: str


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def default_local_path() -> Path:
    """$COLLECTOR_DATA_DIR, else $XDG_DATA_HOME/collector, else ~/.local/share/collector."""
    base = os.environ.get("COLLECTOR_DATA_DIR")
    if base:
        return Path(base) / "collector.db"
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return root / "collector" / "collector.db"


_IN_CHUNK = 500  # ids per `IN (...)` (SQLite allows 32,766 variables; smaller is plenty)


def _ts(value: datetime) -> str:
    """One textual form for every time, so text order is time order."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _sql_values(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_ts(v) if isinstance(v, datetime) else v for v in row)


def _insert(table: str, columns: Sequence[str], conflict: str = "") -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT {conflict} INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - table and column names are ours


def _full_hint(path: Path) -> str:
    """SQLite reports a full file system as a "disk I/O error" where it cannot map its
    shared-memory file: say what it is, when the store's file system has no space left."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return ""
    if stats.f_bavail > 0:
        return ""
    return " (no space left on the file system that holds it: free some disk space)"


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, schema: SchemaPolicy | None = "migrate",
                 migrations: list[Migration] | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         timeout=_BUSY_TIMEOUT_MS / 1000,
                                         check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_MS)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise PermanentStoreError(f"cannot open the local store {self.path}: {exc}"
                                      f"{_full_hint(self.path)}") from None
        ensure_schema(self, schema, migrations)

    # -- migrations ------------------------------------------------------------------------

    def applied_migrations(self) -> list[Applied]:
        rows = self._fetch(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
        return [Applied(*row) for row in rows]

    def apply_migration(self, migration: Migration) -> bool:
        def apply() -> bool:
            done = self._conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                                      (migration.version,)).fetchone()
            if done:
                return False
            for statement in split_statements(migration.sql):
                self._conn.execute(statement)
            self._conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                "VALUES (?, ?, ?, ?)", (migration.version, migration.name, migration.checksum,
                                        _ts(datetime.now(timezone.utc))))
            return True

        return self._write(apply)

    def has_outbox(self) -> bool:
        """Whether the schema has the outbox yet (a fresh file before `db migrate` has
        not)."""
        return bool(self._fetch(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"))

    def available_extensions(self) -> set[str]:
        return set()

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        yield  # apply_migration re-checks inside BEGIN IMMEDIATE, which serialises writers

    # -- errors, transactions and retries -------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """A SQLite error as a store error: busy/locked temporary, the rest permanent."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or (
                not name and ("locked" in text or "busy" in text)):
            return TemporaryStoreError(f"local store {self.path} busy: {text}")
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            return PermanentStoreError(
                f"local store {self.path} is full ({text}): nothing of this write was kept; "
                "free some disk space")
        return PermanentStoreError(f"local store {self.path}: {text}{_full_hint(self.path)}")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """One read, all rows, as store errors (a busy read is retried too)."""
        def read() -> list[Any]:
            with self._guard():
                return self._conn.execute(query, params).fetchall()

        return with_retry(read, BUSY_RETRY)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, all of it rolled back on any error (SQLite may have
        rolled back already, e.g. on SQLITE_FULL); SQLite errors become store errors."""
        with self._guard():
            self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the first error is the one to tell
                    self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise

    def _write(self, body: Callable[[], T]) -> T:
        """body in one transaction; tried again (bounded, with backoff) while the store is
        busy, so a long-held lock delays a write instead of losing it."""
        def once() -> T:
            with self._transaction():
                return body()

        return with_retry(once, BUSY_RETRY)

    # -- writes ----------------------------------------------------------------------------

    def record_run(self, run: RunResult) -> bool:
        return self.record_runs([run]) == 1

    def record_runs(self, runs: Sequence[RunResult]) -> int:
        """Store runs (each with its outbox document) in one transaction, all of them or
        none; a run already stored (same run id) is left as it is, and not even flattened
        (importing a year again reads it all, writes nothing). Returns how many were
        new."""
        def write() -> int:
            present = self._stored_run_ids([run.run_id for run in runs])
            added = 0
            for run in runs:
                if run.run_id in present:
                    continue
                rows = run_rows(run)
                cur = self._conn.execute(_insert("runs", RUN_COLUMNS, "OR IGNORE"),
                                         _sql_values(rows.run))
                if cur.rowcount == 0:  # the same run twice in `runs`
                    continue
                added += 1
                self._conn.executemany(
                    _insert("series", SERIES_COLUMNS) + " ON CONFLICT (series_id) DO UPDATE "
                    "SET " + ", ".join(f"{c} = excluded.{c}" for c in SERIES_RELABELLED),
                    [_sql_values(r) for r in rows.series])
                for table, columns, values in (
                    ("results", RESULT_COLUMNS, rows.results),
                    (measurement_table(run), MEASUREMENT_COLUMNS, rows.measurements),
                    ("failures", FAILURE_COLUMNS, rows.failures),
                ):
                    self._conn.executemany(_insert(table, columns),
                                           [_sql_values(r) for r in values])
                # Samples hold no time to convert (the most rows of a run, by far).
                self._conn.executemany(_insert("samples", SAMPLE_COLUMNS), rows.samples)
                self._conn.execute("INSERT INTO outbox (run_id, document) VALUES (?, ?)",
                                   (run.run_id, run.model_dump_json()))
            return added

        return self._write(write)

    def _stored_run_ids(self, run_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(run_ids), _IN_CHUNK):
            chunk = run_ids[start:start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            found.update(row[0] for row in self._conn.execute(
                f"SELECT run_id FROM runs WHERE run_id IN ({marks})", chunk))  # noqa: S608 - placeholders only
        return found

    # -- outbox ----------------------------------------------------------------------------

    def pending_documents(self, limit: int = 100) -> list[tuple[str, str]]:
        """(run id, JSON document) of runs waiting to be forwarded, oldest first;
        quarantined runs are not among them."""
        rows = self._fetch("SELECT run_id, document FROM outbox WHERE delivered_at IS NULL "
                           "AND quarantined_at IS NULL ORDER BY seq LIMIT ?", (limit,))
        return [(str(run_id), str(doc)) for run_id, doc in rows]

    def pending(self, limit: int = 100) -> list[RunResult]:
        """Runs not yet delivered to PostgreSQL, oldest first. A document that no longer
        validates is left out (the forwarder quarantines it, with the reason)."""
        runs = []
        for _run_id, document in self.pending_documents(limit):
            try:
                runs.append(RunResult.model_validate_json(document))
            except ValueError:  # pydantic's ValidationError; bad JSON
                continue
        return runs

    def pending_count(self) -> int:
        """Runs waiting to be forwarded (quarantined ones not counted)."""
        (count,) = self._fetch("SELECT count(*) FROM outbox WHERE delivered_at IS NULL "
                               "AND quarantined_at IS NULL")[0]
        return int(count)

    def mark_delivered(self, run_id: str) -> None:
        def mark() -> None:
            self._conn.execute("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, "
                               "last_error = NULL, quarantined_at = NULL, "
                               "quarantined_by = NULL WHERE run_id = ?",
                               (_ts(datetime.now(timezone.utc)), run_id))

        self._write(mark)

    def mark_attempt(self, run_id: str, error: str) -> None:
        def mark() -> None:
            self._conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? "
                               "WHERE run_id = ?", (error[:2000], run_id))

        self._write(mark)

    def quarantine(self, run_id: str, reason: str) -> None:
        """Set a run the database refuses aside: kept here with the reason, skipped by
        pending(), until release_quarantined() puts it back in line."""
        def mark() -> None:
            self._conn.execute(
                "UPDATE outbox SET quarantined_at = ?, quarantined_by = ?, "
                "attempts = attempts + 1, last_error = ? WHERE run_id = ? "
                "AND delivered_at IS NULL",
                (_ts(datetime.now(timezone.utc)), __version__, reason[:2000], run_id))
            self._bump()

        self._write(mark)

    def quarantined(self) -> list[QuarantinedRun]:
        rows = self._fetch("SELECT seq, run_id, quarantined_at, quarantined_by, attempts, "
                           "last_error FROM outbox WHERE quarantined_at IS NOT NULL "
                           "ORDER BY seq")
        return [QuarantinedRun(int(seq), str(r), parse_time(at), str(by or ""), int(n),
                               str(why or "")) for seq, r, at, by, n, why in rows]

    def quarantined_count(self) -> int:
        (count,) = self._fetch(
            "SELECT count(*) FROM outbox WHERE quarantined_at IS NOT NULL")[0]
        return int(count)

    def release_quarantined(self, run_ids: Sequence[str] | None = None, *,
                            not_by: str | None = None) -> int:
        """Put quarantined runs back in line (all, those named, or those a collector
        version other than `not_by` set aside); how many were released."""
        sql = "UPDATE outbox SET quarantined_at = NULL, quarantined_by = NULL " \
              "WHERE quarantined_at IS NOT NULL"
        params: list[Any] = []
        if not_by is not None:
            sql += " AND coalesce(quarantined_by, '') <> ?"
            params.append(not_by)
        if run_ids is not None:
            if not run_ids:
                return 0
            sql += f" AND run_id IN ({', '.join('?' for _ in run_ids)})"
            params.extend(run_ids)

        def release() -> int:
            count = self._conn.execute(sql, params).rowcount
            if count:
                self._bump()
            return int(count)

        return self._write(release)

    def prune_delivered(self, before: datetime, *, batch: int = 500) -> int:
        """Drop the outbox documents (and the local raw samples) of runs delivered before
        `before`: PostgreSQL has them. Runs, results and measurements stay. In batches, so
        no write waits long behind it; how many documents were dropped."""
        cutoff = _ts(before)
        dropped = 0

        def prune() -> int:
            ids = [r for (r,) in self._conn.execute(
                "SELECT run_id FROM outbox WHERE delivered_at IS NOT NULL "
                "AND delivered_at < ? ORDER BY seq LIMIT ?", (cutoff, batch))]
            if ids:
                marks = ", ".join("?" for _ in ids)
                self._conn.execute(f"DELETE FROM samples WHERE run_id IN ({marks})", ids)  # noqa: S608 - placeholders only
                self._conn.execute(f"DELETE FROM outbox WHERE run_id IN ({marks})", ids)  # noqa: S608 - placeholders only
            return len(ids)

        while (count := self._write(prune)) > 0:
            dropped += count
            if count < batch:
                break
        return dropped

    def last_error(self) -> str | None:
        rows = self._fetch("SELECT last_error FROM outbox WHERE delivered_at IS NULL "
                           "AND quarantined_at IS NULL AND last_error IS NOT NULL "
                           "ORDER BY seq LIMIT 1")
        return None if not rows else str(rows[0][0])

    # -- reads -----------------------------------------------------------------------------

    def history(self, series_id: str, metric: str, start: datetime | None = None,
                end: datetime | None = None) -> list[Point]:
        sql = "SELECT time, value, run_id FROM measurements WHERE series_id = ? AND metric = ?"
        params: list[Any] = [series_id, metric]
        if start is not None:
            sql += " AND time >= ?"
            params.append(_ts(start))
        if end is not None:
            sql += " AND time < ?"
            params.append(_ts(end))
        rows = self._fetch(sql + " ORDER BY time", params)
        return [Point(parse_time(t), float(v), r) for t, v, r in rows]

    def latest(self, metric: str | None = None) -> list[LatestValue]:
        rows = self._fetch(
            "SELECT m.series_id, m.metric, m.unit, m.value, m.time, m.run_id "
            "FROM measurements m JOIN (SELECT series_id, metric, max(time) AS time "
            "FROM measurements WHERE (? IS NULL OR metric = ?) GROUP BY series_id, metric) AS l "
            "USING (series_id, metric, time) ORDER BY m.series_id, m.metric", (metric, metric))
        return [LatestValue(s, m, u, float(v), parse_time(t), r) for s, m, u, v, t, r in rows]

    def list_series(self, **filters: str | int) -> list[SeriesInfo]:
        check_series_filters(filters)
        # Column names come from the series vocabulary (filters checked above), values are
        # parameters.
        where = "".join(f" AND {DIMENSIONS_BY_NAME[name].store_column} = ?" for name in filters)
        rows = self._fetch(
            f"SELECT {', '.join(SERIES_LABEL_COLUMNS)} FROM series WHERE 1 = 1"  # noqa: S608 - our column names
            + where + " ORDER BY series_id", list(filters.values()))
        return [SeriesInfo(*row) for row in rows]

    def failures(self, series_id: str | None = None,
                 since: datetime | None = None) -> list[FailureRecord]:
        sql = ("SELECT run_id, series_id, time, kind, message, exception_type, traceback_tail "
               "FROM failures WHERE 1 = 1")
        params: list[Any] = []
        if series_id is not None:
            sql += " AND series_id = ?"
            params.append(series_id)
        if since is not None:
            sql += " AND time >= ?"
            params.append(_ts(since))
        rows = self._fetch(sql + " ORDER BY time DESC", params)
        return [FailureRecord(r, s, parse_time(t), k, m, e, tb) for r, s, t, k, m, e, tb in rows]

    def data_version(self) -> str:
        (seq,) = self._fetch("SELECT max(seq) FROM outbox")[0]
        (version,) = self._fetch("SELECT version FROM store_state")[0]
        return f"{seq}:{version}"

    def series_activity(self) -> list[SeriesActivity]:
        return activity.series_activity(self._fetch)

    def suite_activity(self) -> list[SuiteActivity]:
        return activity.suite_activity(self._fetch)

    def series_conditions(self) -> list[SeriesConditions]:
        return activity.series_conditions(self._fetch)

    def run_count(self) -> int:
        (count,) = self._fetch("SELECT count(*) FROM runs")[0]
        return int(count)

    # -- regressions -----------------------------------------------------------------------

    def _select(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one of the shared (psycopg-style) queries of collector.adapters.store.regressions."""
        values = [_ts(v) if isinstance(v, datetime) else v for v in params]
        return self._fetch(query.replace("%s", "?"), values)

    def series_history(self, series_id: str, limit: int = 400) -> SeriesHistory:
        return regressions.series_history(self._select, series_id, limit)

    def runs(self, *, suite: str | None = None, host: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             run_id_prefix: str | None = None) -> list[StoredRun]:
        return stored.select_runs(self._select, suite=suite, host=host, since=since, until=until,
                                  run_id_prefix=run_id_prefix)

    def stored_results(self, runs: Sequence[StoredRun]) -> list[BenchmarkResult]:
        return stored.select_results(self._select, runs)

    def results_of_runs(self, runs: Sequence[StoredRun]) -> list[ResultsOfRun]:
        return stored.select_results_of_runs(self._select, runs)

    def latest_samples(self, series_id: str, names: Sequence[str]) -> dict[str, list[float]]:
        return regressions.latest_samples(self._select, series_id, names)

    def regressions(self, statuses: tuple[str, ...] | None = None,
                    series_id: str | None = None,
                    metric: str | None = None) -> list[Regression]:
        return regressions.select_regressions(self._select, statuses, series_id, metric)

    def save_regression(self, regression: Regression) -> None:
        params = regressions.regression_params(
            regression, encode_time=_ts, encode_json=_json_text,
            now=datetime.now(timezone.utc))
        def write() -> None:
            self._conn.execute(regressions.UPSERT_REGRESSION.replace("%s", "?"), params)
            self._bump()

        self._write(write)

    def add_baseline(self, baseline: Baseline) -> None:
        def write() -> None:
            self._conn.execute(regressions.INSERT_BASELINE.replace("%s", "?"),
                               (baseline.series_id, baseline.metric, _ts(baseline.since),
                                baseline.run_id, baseline.reason))
            self._bump()

        self._write(write)

    def baselines(self, series_id: str | None = None) -> list[Baseline]:
        return regressions.select_baselines(self._select, series_id)

    def save_detection_states(self, states: list[DetectionState]) -> None:
        if not states:
            return
        now = _ts(datetime.now(timezone.utc))
        params = [regressions.detection_state_params(s, now) for s in states]

        def write() -> None:
            self._conn.executemany(regressions.UPSERT_DETECTION_STATE.replace("%s", "?"),
                                   params)
            self._bump()

        self._write(write)

    def detection_states(self) -> list[DetectionState]:
        return regressions.select_detection_states(self._select)

    def _bump(self) -> None:
        """Regressions change what /metrics shows without a new run."""
        self._conn.execute("UPDATE store_state SET version = version + 1")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    # == run journal (issue 11: a killed collector loses no finished result) == BEGIN ==
    # Used by collector.usecases.cycle; the table is migrations/sqlite/0005_run_journal.sql.

    def journal_begin(self, run_id: str, owner: str, header: dict[str, Any],
                      started_at: datetime) -> None:
        """A run in progress, owned by `owner` (collector.adapters.locks.OwnerLock's token). Like
        every journal write, retried while the store is busy (a journal given up on would
        leave the run's finished results unprotected)."""
        self._write(lambda: self._conn.execute(
            "INSERT OR REPLACE INTO run_journal (run_id, owner, header, started_at) "
            "VALUES (?, ?, ?, ?)", (run_id, owner, _json_text(header), _ts(started_at))))

    def journal_entry(self, run_id: str, seq: int, position: int, kind: str,
                      document: str) -> None:
        """A benchmark of the run started (`document`: its spec) or finished (its result)."""
        self._write(lambda: self._conn.execute(
            "INSERT OR REPLACE INTO run_journal_entries (run_id, seq, position, kind, "
            "document, recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, seq, position, kind, document, _ts(datetime.now(timezone.utc)))))

    def journal_end(self, run_id: str) -> None:
        """The run is stored (or was never worth keeping): its journal goes."""
        self._write(lambda: self._conn.execute("DELETE FROM run_journal WHERE run_id = ?",
                                               (run_id,)))

    def open_journals(self) -> list[dict[str, Any]]:
        """Every journal still open: {run_id, owner, header, started_at, stored, entries},
        entries as (seq, position, kind, document, recorded_at) in order; `stored` when the
        run itself is already in the store (killed between storing and cleaning up)."""
        journals = []
        for run_id, owner, header, started in self._fetch(
                "SELECT run_id, owner, header, started_at FROM run_journal "
                "ORDER BY started_at"):
            entries = self._fetch(
                "SELECT seq, position, kind, document, recorded_at FROM run_journal_entries "
                "WHERE run_id = ? ORDER BY seq", (run_id,))
            stored = bool(self._fetch("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))
            journals.append({"run_id": run_id, "owner": owner, "header": json.loads(header),
                             "started_at": parse_time(started), "stored": stored,
                             "entries": [(s, p, k, d, parse_time(t))
                                         for s, p, k, d, t in entries]})
        return journals

    # == run journal == END ==
