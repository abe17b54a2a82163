"""What PostgreSQL's failures mean for the collector: each error read as temporary (retry
later), this run's data (quarantine it, deliver the rest), a schema that is not ours (stop,
name the column) or permanent, its text scrubbed of every secret; and who holds a lock a
migration waits for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from collector.adapters.redact import redact, scrub
from collector.adapters.store import regressions
from collector.adapters.store.rows import (
    FAILURE_COLUMNS,
    MEASUREMENT_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    SERIES_COLUMNS,
)
from collector.domain.errors import (
    PermanentStoreError,
    RejectedDataError,
    SchemaError,
    StoreError,
    TemporaryStoreError,
)

# SQLSTATE classes that mean "the server is away or not ready": worth retrying.
_TEMPORARY_STATES = {"57P01", "57P02", "57P03", "53300", "40001", "40P01"}
_PERMANENT_CONNECT = ("password authentication failed", "does not exist", "no pg_hba.conf",
                      "authentication failed", "permission denied")
# SQLSTATE class 54, "program limit exceeded": a value too large for an index row (a btree
# row holds at most 2,704 bytes), a row too wide, a document nested too deep. It is about
# this run's data, not the server, though psycopg files it under OperationalError.
_DATA_LIMIT_CLASS = "54"
# The columns the collector writes, per table. A NOT NULL column without a default that is
# not among them (added behind the collector's back) would refuse every run: a schema error
# (named at start-up), never a reason to quarantine runs.
WRITTEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": RUN_COLUMNS, "series": SERIES_COLUMNS, "results": RESULT_COLUMNS,
    "measurements": MEASUREMENT_COLUMNS, "confirmation_measurements": MEASUREMENT_COLUMNS,
    "samples": SAMPLE_COLUMNS, "failures": FAILURE_COLUMNS,
    "regressions": (*regressions.REGRESSION_COLUMNS, "updated_at"),
    "baselines": regressions.BASELINE_COLUMNS,
    "detection_state": (*regressions.DETECTION_STATE_COLUMNS, "updated_at"),
}
REQUIRED_COLUMNS = (
    "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = ANY(%s) AND is_nullable = 'NO' "
    "AND column_default IS NULL AND is_identity = 'NO' AND is_generated = 'NEVER' "
    "ORDER BY table_name, ordinal_position")
# Who holds our advisory lock (a bigint key: classid is its high half, objid its low half).
LOCK_HOLDERS = (
    "SELECT l.pid, a.usename, a.application_name, a.client_addr, a.backend_start "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.pid <> pg_backend_pid() "
    "ORDER BY l.pid")
# Who holds a lock on one of the collector's tables (what a migration waits for).
TABLE_LOCK_HOLDERS = (
    "SELECT DISTINCT l.pid, a.usename, a.application_name, a.client_addr, a.backend_start "
    "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.granted AND c.relnamespace = current_schema()::regnamespace "
    "AND l.pid <> pg_backend_pid() "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "ORDER BY l.pid")


def classify(exc: Exception, url: str) -> StoreError:  # noqa: PLR0911 - one return per kind
    """A psycopg error as a temporary or permanent store error, password-free: libpq's text
    may quote the URL (raw, or the part of it it misread as a host), so every secret of the
    URL, of the environment and remembered is scrubbed from it by value."""
    where = redact(url)
    state = getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = scrub(text, url)
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return PermanentStoreError(f"permission denied on {where}: {text}")
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
        return SchemaError(f"schema mismatch on {where}: {text}; run `collector db migrate`")
    if isinstance(exc, pg_errors.NotNullViolation) and not _written(exc):
        # A column the collector never writes: every run would fail the same way.
        return SchemaError(f"schema mismatch on {where}: {text}; that column is not the "
                           "collector's: give it a default or drop NOT NULL")
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError) or (
            state is not None and state.startswith(_DATA_LIMIT_CLASS)):
        # SQLSTATE classes 22, 23 and 54 (a value out of range, a NUL in text, a broken
        # constraint, a value too large for an index): about this data, not the server;
        # other data may go through.
        return RejectedDataError(f"{where} refused the data: {text}")
    if state in _TEMPORARY_STATES:
        return TemporaryStoreError(f"{where} temporarily unavailable: {text}")
    if isinstance(exc, pg_errors.QueryCanceled):
        return TemporaryStoreError(f"{where} did not finish a statement in time: {text}")
    if "must be preloaded" in text:
        return PermanentStoreError(
            f"{where}: {text}; add timescaledb to shared_preload_libraries and restart "
            "the server, or remove the extension to run on plain PostgreSQL")
    if isinstance(exc, psycopg.OperationalError):
        if any(marker in text for marker in _PERMANENT_CONNECT):
            return PermanentStoreError(f"cannot use {where}: {text}")
        return TemporaryStoreError(f"{where} unreachable: {text}")
    return PermanentStoreError(f"database error on {where}: {text}")


def _written(exc: Exception) -> bool:
    """Whether the column a NOT NULL violation names is one the collector writes."""
    diag = getattr(exc, "diag", None)
    table, column = getattr(diag, "table_name", None), getattr(diag, "column_name", None)
    return column is not None and column in WRITTEN_COLUMNS.get(table or "", ())


def describe_sessions(rows: Sequence[Sequence[Any]]) -> str:
    """Sessions (pid, user, application, client, since) as people read them."""
    described = []
    for pid, user, application, client, since in rows:
        parts = [f"user {user}" if user else "", f"application {application!r}"
                 if application else "", f"from {client}" if client else "",
                 f"connected since {since:%Y-%m-%d %H:%M:%S %Z}".rstrip() if since else ""]
        details = ", ".join(part for part in parts if part)
        described.append(f"pid {pid}" + (f" ({details})" if details else ""))
    return "; ".join(described)
