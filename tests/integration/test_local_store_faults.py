"""The local store's contract under real SQLite faults: a full database (SQLite's own
max_page_count makes SQLITE_FULL for real), a writer holding the lock, reads on a store
without its schema. Every failure is a StoreError; nothing is half-written; a busy store
delays a write instead of losing it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from collector.errors import PermanentStoreError, StoreError
from collector.store import SQLiteStore
from collector.store import sqlite as sqlite_module
from collector.store.retry import RetryPolicy
from tests.helpers import make_run

TABLES = ("runs", "series", "results", "measurements", "samples", "failures", "outbox")


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - our table names
                for t in TABLES}


def test_a_full_disk_is_a_clear_error_with_nothing_half_written(tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    store = SQLiteStore(db)
    store.record_run(make_run())
    before = counts(db)
    (pages,) = store._conn.execute("PRAGMA page_count").fetchone()
    store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk is full
    big = make_run(samples=5000)
    with pytest.raises(PermanentStoreError, match="is full") as caught:
        store.record_run(big)
    assert "cannot rollback" not in str(caught.value)
    assert counts(db) == before  # not one row of the run
    # Space again: the store works, and the same run is stored whole.
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.record_run(big) is True
    after = counts(db)
    assert after["runs"] == before["runs"] + 1
    assert after["samples"] == before["samples"] + 2 * 5000
    assert store.pending_count() == 2
    store.close()


def test_a_full_disk_when_marking_delivered_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "local.db")
    run = make_run()
    store.record_run(run)
    store._conn.execute("PRAGMA query_only = ON")  # any write now fails inside SQLite
    with pytest.raises(StoreError):
        store.mark_delivered(run.run_id)
    store._conn.execute("PRAGMA query_only = OFF")
    assert store.pending_count() == 1
    store.close()


def test_a_store_busy_past_its_timeout_is_retried_not_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "local.db"
    SQLiteStore(db).close()
    # The same shape as a writer holding the lock past the 30 s busy timeout, scaled down.
    monkeypatch.setattr(sqlite_module, "_BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(sqlite_module, "BUSY_RETRY",
                        RetryPolicy(attempts=6, base_delay_s=0.2, max_delay_s=0.5),
                        raising=False)
    store = SQLiteStore(db)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.5, holder.execute, args=("COMMIT",))
    release.start()
    run = make_run()
    started = time.monotonic()
    try:
        assert store.record_run(run) is True
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 1.0  # it waited for the lock, then wrote
    assert store.pending_count() == 1 and store.run_count() == 1
    store.close()


def test_reads_and_outbox_calls_raise_store_errors(tmp_path: Path) -> None:
    fresh = SQLiteStore(tmp_path / "fresh.db", schema=None)  # no tables yet
    assert fresh.has_outbox() is False
    for call in (fresh.pending_count, fresh.run_count, fresh.latest, fresh.quarantined,
                 lambda: fresh.mark_delivered("x"), lambda: fresh.history("s", "m")):
        with pytest.raises(StoreError):
            call()
    fresh.close()
