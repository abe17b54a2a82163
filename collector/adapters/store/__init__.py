"""History stores: the embedded SQLite store (always; it is also the outbox) and PostgreSQL
(when a database URL is configured through the environment or a file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from collector.adapters.files import MAX_SECRET_BYTES, ReadFailure, decode, read_bounded
from collector.adapters.store.migrate import SchemaPolicy
from collector.adapters.store.outbox import RetryPolicy, SyncReport, forward_pending
from collector.adapters.store.sqlite import SQLiteStore, default_local_path
from collector.domain.errors import ConfigError, ConfigProblem, PermanentStoreError
from collector.domain.history import Store

if TYPE_CHECKING:
    from collector.adapters.config import StorageSettings
    from collector.adapters.store.postgres import PostgresStore

__all__ = ["SQLiteStore", "StoreOptions", "Stores", "SyncReport", "default_local_path",
           "resolve_database_url"]


@dataclass(frozen=True)
class StoreOptions:
    """How the stores bound and keep things (from the config's storage section)."""

    connect_timeout_s: float = 10.0  # each connection attempt to PostgreSQL
    statement_timeout_s: float = 60.0  # each PostgreSQL call (server and client side)
    outbox_retention: timedelta | None = timedelta(days=14)  # delivered documents
    compress_after: str | None = "7 days"  # TimescaleDB policies set after a migration
    retain_for: str | None = None

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> StoreOptions:
        days = settings.outbox_retention_days
        return cls(connect_timeout_s=settings.connect_timeout_s,
                   statement_timeout_s=settings.statement_timeout_s,
                   outbox_retention=None if days is None else timedelta(days=days),
                   compress_after=settings.timescaledb.compress_after,
                   retain_for=settings.timescaledb.retain_for)


def resolve_database_url(url_env: str, url_file: str | None) -> str | None:
    """The PostgreSQL URL from a file (Docker/Kubernetes secrets) or an environment
    variable; None when neither is set (local store only). What a person does not see or
    means around the URL (a byte-order mark, spaces, quotes) is stripped; one that cannot
    be PostgreSQL's (another scheme, an unencoded '@' in the password) is a ConfigError
    whose text never quotes it (collector.adapters.redact)."""
    from collector.adapters.redact import database_url_problem, normalise_url, remember_url

    if url_file:
        try:
            raw = decode(read_bounded(url_file, MAX_SECRET_BYTES))
        except ReadFailure as failure:  # /dev/zero stops at the bound
            raise PermanentStoreError(
                f"cannot read the database URL file {url_file}: {failure.reason}") from None
        source, field_name = url_file, "storage.database_url_file"
    else:
        raw = os.environ.get(url_env) or ""
        source, field_name = "environment", url_env
    value = normalise_url(raw)
    if not value:
        return None
    remember_url(raw)  # scrubbed from every text this process shows, whatever quotes it
    problem = database_url_problem(value)
    if problem is not None:
        raise ConfigError([ConfigProblem(source, None, field_name,
                                         f"the database URL {problem}")])
    return value


@dataclass
class Stores:
    """The local store plus, where configured, the remote one it forwards to."""

    local: SQLiteStore
    database_url: str | None = None
    schema: SchemaPolicy | None = "migrate"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    options: StoreOptions = field(default_factory=StoreOptions)
    _remote: PostgresStore | None = None

    @classmethod
    def open(cls, local_path: str | Path | None, database_url: str | None, *,
             schema: SchemaPolicy | None = "migrate", retry: RetryPolicy | None = None,
             options: StoreOptions | None = None) -> Stores:
        local = SQLiteStore(local_path or default_local_path(), schema=schema)
        return cls(local, database_url, schema, retry or RetryPolicy(),
                   options or StoreOptions())

    def open_remote(self, schema: SchemaPolicy | None = None) -> PostgresStore:
        """A PostgreSQL store of its own (another connection, e.g. for a reader thread),
        with the same bounds."""
        from collector.adapters.store.postgres import PostgresStore

        if self.database_url is None:
            raise PermanentStoreError("no database configured (set COLLECTOR_DATABASE_URL or "
                                      "storage.database_url_file)")
        return PostgresStore(self.database_url, schema=schema,
                             connect_timeout=self.options.connect_timeout_s,
                             statement_timeout=self.options.statement_timeout_s,
                             timescale_policies=(self.options.compress_after,
                                                 self.options.retain_for))

    def remote(self) -> PostgresStore:
        """The PostgreSQL store, connected (and its schema checked) on first use."""
        if self.database_url is None:
            raise PermanentStoreError("no database configured (set COLLECTOR_DATABASE_URL or "
                                      "storage.database_url_file)")
        if self._remote is None:
            self._remote = self.open_remote(self.schema)
        return self._remote

    def primary(self) -> Store:
        """The history of record, where regressions and baselines live: PostgreSQL when
        one is configured (what Grafana reads, shared by every host), else the local
        store."""
        return self.remote() if self.database_url is not None else self.local

    def sync(self) -> SyncReport | None:
        """Forward pending runs; None when no database is configured."""
        if self.database_url is None:
            return None
        return forward_pending(self.local, self.remote, policy=self.retry,
                               retain_delivered=self.options.outbox_retention)

    def close(self) -> None:
        self.local.close()
        if self._remote is not None:
            self._remote.close()
