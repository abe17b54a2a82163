"""Every PostgreSQL call from the store is bounded in time: a slow statement by the
server's statement_timeout, a server that stops answering altogether (SIGSTOP: its kernel
still accepts and acknowledges, nothing replies) by the client's own deadline."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collector.adapters.store import StoreOptions, Stores
from collector.adapters.store.outbox import RetryPolicy
from collector.adapters.store.postgres import PostgresStore
from collector.domain.errors import StoreError, TemporaryStoreError
from tests.helpers import make_run
from tests.pg_server import PostgresServer, postgres_available


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of this test's own, so freezing it freezes nobody else's tests."""
    reason = postgres_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    with PostgresServer(tmp_path / "pg") as server:
        yield server


def call_with_deadline(action: object, seconds: float) -> tuple[BaseException | None, float]:
    """Run action in a thread; (the error it raised, seconds it took). Fails the test if it
    is still running after `seconds` (a hang)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            action()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as exc:  # collected for the assertions
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the store call still hangs after {seconds} s"
    return outcome[0], time.monotonic() - started


def test_a_server_that_stops_answering_fails_store_calls_within_the_bound(
        private_server: PostgresServer) -> None:
    url = private_server.create_database("frozen")
    store = PostgresStore(url, connect_timeout=2, statement_timeout=1)
    store.record_run(make_run())
    pids = server_pids(private_server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        error, took = call_with_deadline(store.run_count, 30)
        assert isinstance(error, TemporaryStoreError), error
        assert "did not answer within" in str(error)
        assert took < 1 + 5 + 2 + 3  # statement + client margin + connect, and slack
        # The next call (a new connection to the frozen server) is bounded too.
        error, took = call_with_deadline(lambda: store.record_run(make_run()), 30)
        assert isinstance(error, StoreError), error
        assert took < 15
        # Opening a store (connect, schema check) on the frozen server is bounded too.
        error, took = call_with_deadline(
            lambda: PostgresStore(url, connect_timeout=2, statement_timeout=1), 60)
        assert isinstance(error, StoreError), error
        assert took < 15
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # The server is back: the store reconnects by itself.
    assert store.run_count() == 1
    store.close()


def test_sync_against_a_frozen_server_returns_a_temporary_error(
        private_server: PostgresServer, tmp_path: Path) -> None:
    url = private_server.create_database("frozen_sync")
    stores = Stores.open(tmp_path / "local.db", url,
                         retry=RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1),
                         options=StoreOptions(connect_timeout_s=2, statement_timeout_s=1))
    stores.remote()
    stores.local.record_run(make_run())
    pids = server_pids(private_server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        holder: list[object] = []
        error, took = call_with_deadline(lambda: holder.append(stores.sync()), 60)
        assert error is None
        [report] = holder
        assert not report.ok and report.temporary and report.pending == 1  # type: ignore[attr-defined]
        assert report.quarantined == 0  # type: ignore[attr-defined]
        assert took < 30
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    report = stores.sync()
    assert report is not None and report.ok and report.delivered == 1
    stores.close()


def test_a_statement_blocked_on_the_server_is_cancelled_by_statement_timeout(
        pg_url: str) -> None:
    store = PostgresStore(pg_url, statement_timeout=1)
    with psycopg.connect(pg_url) as locker:
        locker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        error, took = call_with_deadline(store.run_count, 30)
    assert isinstance(error, TemporaryStoreError), error
    assert "did not finish a statement in time" in str(error)
    assert took < 5
    assert store.run_count() == 0  # the connection is still good
    store.close()


def test_tcp_bounds_are_set_unless_the_url_says_otherwise(pg_url: str) -> None:
    store = PostgresStore(pg_url + "?keepalives_idle=7")
    params = store._connection().info.get_parameters()
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "7"
    assert params["tcp_user_timeout"] == "30000"
    row = store._connection().execute("SHOW statement_timeout").fetchone()
    assert row == ("1min",)
    store.close()
