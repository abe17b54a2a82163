"""The throwaway PostgreSQL server and its fixtures (tests/pg_server.py, tests/fixtures_pg.py)
against a real server: connect, stop, restart on the same port, fresh databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from tests.pg_server import PostgresServer, postgres_available


def test_a_fresh_database_answers_select_1(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop_refuses_connections_and_start_brings_the_data_back_on_the_same_port(
        pg_server: PostgresServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE kept (value int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    port = pg_server.port

    pg_server.stop()
    assert not pg_server.is_running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url, connect_timeout=2)

    pg_server.start()
    assert pg_server.port == port
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [(42,)]


def test_kill_loses_no_committed_data(pg_server: PostgresServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 7 AS value")
    pg_server.kill()
    assert not pg_server.is_running
    pg_server.start()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [(7,)]
    # Leave it stopped: the next test checks that the fixture starts it again.
    pg_server.kill()


def test_a_stopped_server_is_running_again_for_the_next_test(
        pg_server: PostgresServer) -> None:
    assert pg_server.is_running
    with psycopg.connect(pg_server.admin_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_fresh_databases_are_independent(pg_server: PostgresServer) -> None:
    first, second = (f"indep_{uuid.uuid4().hex[:12]}" for _ in range(2))
    first_url, second_url = pg_server.create_database(first), pg_server.create_database(second)
    try:
        with psycopg.connect(first_url) as conn:
            conn.execute("CREATE TABLE only_here (value int)")
        with psycopg.connect(second_url) as conn:
            tables = conn.execute("SELECT tablename FROM pg_tables "
                                  "WHERE schemaname = 'public'").fetchall()
            assert tables == []
    finally:
        pg_server.drop_database(first)
        pg_server.drop_database(second)


def test_it_listens_on_loopback_only(pg_server: PostgresServer, pg_url: str) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_close_removes_the_server_and_its_directory(pg_server: PostgresServer,
                                                     tmp_path: Path) -> None:
    # pg_server is requested only for its skip-or-fail when PostgreSQL is missing.
    with PostgresServer(tmp_path / "own") as server:
        directory = server.directory
        assert server.is_running
    assert not directory.exists()


def test_missing_binaries_give_a_reason(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("COLLECTOR_PG_BINDIR", str(tmp_path))
    reason = postgres_available()
    assert reason is not None and str(tmp_path) in reason
