"""`db create-reader` / `db create-writer` on a real PostgreSQL: never turns an existing
powerful role into something else, sends the password hashed, and a writer can write rows
and do nothing else."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from collector.adapters.store import SQLiteStore
from collector.adapters.store.outbox import RetryPolicy, forward_pending
from collector.adapters.store.postgres import PostgresStore
from collector.adapters.store.roles import RoleRefused, create_login
from tests.helpers import make_run
from tests.helpers import run_collector as collector

PASSWORD = "Rd-9f2-clear-text"  # noqa: S105 - a throwaway test role's password


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def role_url(pg_url: str, name: str, password: str = PASSWORD) -> str:
    return pg_url.replace("postgres@", f"{name}:{password}@", 1)


def authid(pg_url: str, name: str) -> tuple[Any, ...] | None:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT rolsuper, rolcreatedb, rolpassword FROM pg_authid "
                            "WHERE rolname = %s", (name,)).fetchone()


@pytest.fixture
def migrated(pg_url: str) -> str:
    PostgresStore(pg_url).close()
    return pg_url


def test_the_connecting_superuser_is_refused_and_left_unchanged(migrated: str) -> None:
    before = authid(migrated, "postgres")
    with psycopg.connect(migrated, autocommit=True) as conn, \
            pytest.raises(RoleRefused, match="role postgres exists and is a superuser"):
        create_login(conn, "postgres", PASSWORD)
    assert authid(migrated, "postgres") == before


@pytest.mark.parametrize("setup", [
    "CREATE ROLE {} LOGIN CREATEDB",
    "CREATE ROLE {} LOGIN CREATEROLE",
    "CREATE ROLE {} LOGIN BYPASSRLS",
    "CREATE ROLE {} LOGIN; CREATE TABLE owned_by_it (x int); ALTER TABLE owned_by_it OWNER TO {}",
    "CREATE ROLE {} LOGIN; GRANT pg_write_all_data TO {}",
])
def test_existing_roles_that_are_more_than_readers_are_refused(migrated: str,
                                                                setup: str) -> None:
    name = unique("powerful")
    with psycopg.connect(migrated, autocommit=True) as conn:
        for statement in setup.split("; "):
            conn.execute(sql.SQL(statement).format(*[sql.Identifier(name)] * statement.count(
                "{}")))
        before = authid(migrated, name)
        with pytest.raises(RoleRefused, match=f"role {name} exists"):
            create_login(conn, name, PASSWORD)
        with pytest.raises(RoleRefused):
            create_login(conn, name, PASSWORD, kind="writer")
    assert authid(migrated, name) == before


class Recording(psycopg.Connection[Any]):
    """A real connection that remembers every statement text it sent."""

    sent: list[str]

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self.sent.append(query.as_string(self) if hasattr(query, "as_string") else str(query))
        return super().execute(query, params, **kwargs)


def test_a_new_reader_gets_a_scram_hash_never_the_clear_password(migrated: str) -> None:
    name = unique("reader")
    with Recording.connect(migrated, autocommit=True) as conn:
        conn.sent = []
        create_login(conn, name, PASSWORD)
        create_login(conn, name, PASSWORD + "-2")  # updating a plain reader is fine
        assert conn.sent and not any(PASSWORD in text for text in conn.sent)
    row = authid(migrated, name)
    assert row is not None and row[2].startswith("SCRAM-SHA-256$")
    with psycopg.connect(role_url(migrated, name, PASSWORD + "-2")) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM runs")


def test_a_writer_writes_rows_and_nothing_else(migrated: str, tmp_path: Path) -> None:
    name = unique("writer")
    with psycopg.connect(migrated, autocommit=True) as conn:
        create_login(conn, name, PASSWORD, kind="writer")
    url = role_url(migrated, name)
    local = SQLiteStore(tmp_path / "l.db")
    local.record_run(make_run())
    report = forward_pending(local, lambda: PostgresStore(url, schema="refuse"),
                             policy=RetryPolicy(attempts=1), sleep=lambda _s: None)
    assert report.ok and report.delivered == 1, report.error
    local.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        for ddl in ("CREATE TABLE sneaky (x int)", "DROP TABLE runs",
                    "ALTER TABLE runs ADD COLUMN x int", "CREATE ROLE other"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(ddl)


def test_cli_refuses_the_main_role_in_one_line(migrated: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", migrated)
    monkeypatch.setenv("COLLECTOR_READER_PASSWORD", PASSWORD)
    proc = collector("db", "create-reader", "postgres")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "superuser" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    monkeypatch.setenv("COLLECTOR_WRITER_PASSWORD", "change-me-writer")
    placeholder = collector("db", "create-writer", unique("app"))
    assert placeholder.returncode == 2 and "placeholder" in placeholder.stderr
    monkeypatch.setenv("COLLECTOR_WRITER_PASSWORD", PASSWORD)
    made = collector("db", "create-writer", unique("app"))
    assert made.returncode == 0, made.stderr
    assert "member of collector_writer" in made.stdout
