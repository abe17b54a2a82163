"""pytest fixtures for a real PostgreSQL server; enable with
`pytest_plugins = ["tests.fixtures_pg"]` in tests/conftest.py.

- `pg_server` (session): one started `PostgresServer` for the whole run, removed at the end.
  Tests may stop or kill it; the next test that uses it finds it running again.
- `pg_url` (function): the URL of a fresh, empty database, dropped after the test.
- `store` (function, parametrized): each history store in turn, for contract tests: the
  embedded SQLite store, then a `PostgresStore` on a fresh database.

Without PostgreSQL binaries the tests that use them are skipped, except under CI (the `CI`
environment variable is non-empty), where they fail: CI must never skip service tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.domain.history import Store
from tests.pg_server import PostgresServer, postgres_available


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    reason = postgres_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    with PostgresServer(tmp_path_factory.getbasetemp() / "postgres") as server:
        yield server


@pytest.fixture(autouse=True)
def _pg_server_running(request: pytest.FixtureRequest) -> None:
    """Before each test that uses `pg_server` (directly or through `pg_url`): start it again
    if an earlier test stopped or killed it."""
    if "pg_server" in request.fixturenames:
        server: PostgresServer = request.getfixturevalue("pg_server")
        server.start()  # a no-op when it is running


@pytest.fixture
def pg_url(pg_server: PostgresServer, _pg_server_running: None) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield pg_server.create_database(name)
    pg_server.start()  # the test may have stopped it
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    from collector.adapters.store import SQLiteStore
    from collector.adapters.store.postgres import PostgresStore

    opened: Store
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "local.db")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_url"))
    yield opened
    opened.close()
