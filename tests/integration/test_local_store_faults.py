"""The local store's contract under real SQLite faults: a full database (SQLite's own
max_page_count makes SQLITE_FULL for real), a writer holding the lock, reads on a store
without its schema. Every failure is a StoreError; nothing is half-written; a busy store
delays a write instead of losing it."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.adapters.store import SQLiteStore
from collector.adapters.store import sqlite as sqlite_module
from collector.adapters.store.retry import RetryPolicy
from collector.domain.errors import PermanentStoreError, StoreError
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


def _busy_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> SQLiteStore:
    """A store whose busy timeout is short: the same shape as a writer holding the lock
    past the 30 s busy timeout, scaled down."""
    SQLiteStore(db).close()
    monkeypatch.setattr(sqlite_module, "_BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(sqlite_module, "BUSY_RETRY",
                        RetryPolicy(attempts=6, base_delay_s=0.2, max_delay_s=0.5),
                        raising=False)
    return SQLiteStore(db)


@contextlib.contextmanager
def _lock_held(db: Path, seconds: float) -> Iterator[None]:
    """Another connection holds the write lock for `seconds` from now."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, holder.execute, args=("COMMIT",))
    release.start()
    try:
        yield
    finally:
        release.join()
        holder.close()


def test_a_store_busy_past_its_timeout_is_retried_not_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "local.db"
    store = _busy_store(db, monkeypatch)
    run = make_run()
    started = time.monotonic()
    with _lock_held(db, 1.5):
        assert store.record_run(run) is True
    assert time.monotonic() - started >= 1.0  # it waited for the lock, then wrote
    assert store.pending_count() == 1 and store.run_count() == 1
    store.close()


def test_run_journal_writes_wait_for_a_busy_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal write that gave up would leave the run's finished results unprotected
    against a crash (collector.usecases.cycle.Journal stops journalling after an error)."""
    db = tmp_path / "local.db"
    store = _busy_store(db, monkeypatch)
    when = datetime.now(timezone.utc)
    with _lock_held(db, 1.0):
        store.journal_begin("r1", "owner", {"suite": "s"}, when)
    with _lock_held(db, 1.0):
        store.journal_entry("r1", 0, 0, "started", "{}")
    with _lock_held(db, 1.0):
        [journal] = store.open_journals()
    assert journal["run_id"] == "r1" and len(journal["entries"]) == 1
    with _lock_held(db, 1.0):
        store.journal_end("r1")
    assert store.open_journals() == []
    store.close()


def test_reads_and_outbox_calls_raise_store_errors(tmp_path: Path) -> None:
    fresh = SQLiteStore(tmp_path / "fresh.db", schema=None)  # no tables yet
    assert fresh.has_outbox() is False
    for call in (fresh.pending_count, fresh.run_count, fresh.latest, fresh.quarantined,
                 lambda: fresh.mark_delivered("x"), lambda: fresh.history("s", "m")):
        with pytest.raises(StoreError):
            call()
    fresh.close()
