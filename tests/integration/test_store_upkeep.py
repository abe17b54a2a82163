"""Outbox retention, `db status` on a fresh data directory, migrations through the CLI's
path, and TimescaleDB that is installed but not preloaded. Real SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from collector.adapters.config import StorageSettings
from collector.adapters.store import StoreOptions, Stores
from collector.adapters.store.migrate import Migration, load_migrations, migrate, plan
from collector.adapters.store.postgres import PostgresStore
from collector.domain.errors import PermanentStoreError
from tests.helpers import make_run
from tests.helpers import run_collector as collector


def backdate_delivery(db: Path, run_id: str, days: float) -> None:
    when = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(
        timespec="microseconds")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE outbox SET delivered_at = ? WHERE run_id = ?", (when, run_id))


def local_rows(db: Path, run_id: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?",  # noqa: S608 - our table names
                                    (run_id,)).fetchone()[0]
                for table in ("outbox", "samples", "runs", "measurements")}


def test_delivered_documents_are_pruned_after_the_retention(pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url, options=StoreOptions(outbox_retention=timedelta(days=14)))
    old, recent, waiting = make_run(), make_run(), make_run()
    for run in (old, recent):
        stores.local.record_run(run)
    report = stores.sync()
    assert report is not None and report.ok and report.pruned == 0
    backdate_delivery(db, old.run_id, days=15)
    backdate_delivery(db, recent.run_id, days=13)
    stores.local.record_run(waiting)
    report = stores.sync()
    assert report is not None and report.ok and report.delivered == 1 and report.pruned == 1
    gone = local_rows(db, old.run_id)
    assert gone["outbox"] == 0 and gone["samples"] == 0
    assert gone["runs"] == 1 and gone["measurements"] > 0  # the history itself stays
    kept = local_rows(db, recent.run_id)
    assert kept["outbox"] == 1 and kept["samples"] > 0
    assert local_rows(db, waiting.run_id)["outbox"] == 1
    stores.close()


def test_retention_is_configurable_and_can_be_off(tmp_path: Path) -> None:
    assert StoreOptions.from_settings(StorageSettings()).outbox_retention == timedelta(days=14)
    assert StoreOptions.from_settings(StorageSettings(outbox_retention_days=3)) \
        .outbox_retention == timedelta(days=3)
    off = StoreOptions.from_settings(StorageSettings(outbox_retention_days=None))
    assert off.outbox_retention is None


def test_db_status_on_a_fresh_data_directory(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "collector.db"
    proc = collector("db", "status", "--local-store", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pending   0001_initial" in proc.stdout
    assert "outbox: empty" in proc.stdout


def test_a_failing_migration_through_the_cli_path_is_a_store_error(pg_url: str) -> None:
    store = PostgresStore(pg_url, schema=None)
    broken = Migration(99, "broken", "SELECT no_such_function();", "c" * 64, None)
    with pytest.raises(PermanentStoreError, match="no_such_function"):
        migrate(store, [*load_migrations("postgres"), broken])
    store.close()


class _TimescaleInstalled(PostgresStore):
    """pg_available_extensions as on a server with the TimescaleDB package installed (it
    cannot be installed here); everything else is the real server."""

    def _listed_extensions(self) -> set[str]:
        return super()._listed_extensions() | {"timescaledb"}


def test_timescaledb_installed_but_not_preloaded_counts_as_absent(pg_url: str) -> None:
    store = _TimescaleInstalled(pg_url)  # migrates: 0003 must not be tried
    state = plan(store)
    assert state.current
    assert [m.version for m in state.unavailable] == [3, 6]
    assert any("shared_preload_libraries" in note for note in store.notes)
    store.close()
    # With the library preloaded, its loader defines timescaledb.disable_load: available.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{dbname}" SET timescaledb.disable_load = off')
    preloaded = _TimescaleInstalled(pg_url, schema=None)
    assert "timescaledb" in preloaded.available_extensions()
    assert [m.version for m in plan(preloaded).pending] == [3, 6]
    assert preloaded.notes == []
    preloaded.close()
