"""`run-once` storing and forwarding, and the `db` commands, through the real CLI."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tests.helpers import benchmark_yaml
from tests.helpers import run_collector as collector
from tests.integration.test_cli import write_config
from tests.pg_server import PostgresServer

PASSWORD = "Sup3r-Secret-pw"  # noqa: S105 - a throwaway test role's password


@pytest.fixture
def secret_url(pg_url: str) -> str:
    """The test database, reached as a role with a password, like a real deployment."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                     "'collector') THEN CREATE ROLE collector LOGIN SUPERUSER; END IF; END $$")
        conn.execute(f"ALTER ROLE collector PASSWORD '{PASSWORD}'")
    return pg_url.replace("postgres@", f"collector:{PASSWORD}@", 1)


def test_run_once_stores_locally_and_forwards(secret_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", secret_url)
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "stored in" in proc.stderr
    assert "forwarded 1 run(s) to postgresql://collector:***@" in proc.stderr
    assert "(mode: postgresql)" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    with psycopg.connect(secret_url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        metrics = {m for (m,) in conn.execute("SELECT DISTINCT metric FROM measurements")}
        samples = conn.execute("SELECT count(*) FROM samples").fetchone()
    assert {"latency_p50_seconds", "load_time_seconds", "peak_rss_bytes"} <= metrics
    assert samples is not None and samples[0] >= 3
    status = collector("db", "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "outbox: 0 run(s) pending" in status.stdout
    assert "mode: postgresql" in status.stdout
    assert "optional  0003_timescaledb (needs the timescaledb extension" in status.stdout
    assert ":***@" in status.stdout and PASSWORD not in status.stdout


def test_database_down_during_run_once_then_db_sync(
        pg_server: PostgresServer, secret_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", secret_url)
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    assert collector("db", "migrate", "--config", str(config)).returncode == 0
    pg_server.stop()
    proc = collector("run-once", "--config", str(config))
    assert proc.returncode == 0, proc.stderr  # the run succeeded and is kept locally
    assert "1 run(s) wait in the outbox" in proc.stderr
    assert PASSWORD not in proc.stderr
    failed_sync = collector("db", "sync", "--config", str(config))
    assert failed_sync.returncode == 4
    assert "1 run(s) still pending" in failed_sync.stderr
    pg_server.start()
    synced = collector("db", "sync", "--config", str(config))
    assert synced.returncode == 0, synced.stderr
    assert "delivered 1, already present 0, pending 0" in synced.stdout
    with psycopg.connect(secret_url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_database_url_from_a_file(secret_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "db_url"
    secret.write_text(secret_url + "\n")
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    text = config.read_text().replace("suites:", f"storage:\n  database_url_file: {secret}\n"
                                                 "suites:", 1)
    config.write_text(text)
    migrated = collector("db", "migrate", "--config", str(config))
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001_initial, 0002_readonly_role, 0004_regressions" in migrated.stdout
    assert PASSWORD not in migrated.stdout


def test_create_reader_takes_its_password_from_the_environment(
        secret_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", secret_url)
    missing = collector("db", "create-reader", "grafana")
    assert missing.returncode == 4
    assert "COLLECTOR_READER_PASSWORD" in missing.stderr
    monkeypatch.setenv("COLLECTOR_READER_PASSWORD", "dash-pw-123")
    made = collector("db", "create-reader", "grafana")
    assert made.returncode == 0, made.stderr
    assert "dash-pw-123" not in made.stdout + made.stderr
    reader = secret_url.replace(f"collector:{PASSWORD}@", "grafana:dash-pw-123@", 1)
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_local_store_that_cannot_be_written_exits_4(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--local-store",
                     str(blocker / "collector.db"))
    assert proc.returncode == 4
    assert "cannot open the local store" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sync_without_a_database_is_a_clear_error() -> None:
    assert "COLLECTOR_DATABASE_URL" not in os.environ
    proc = collector("db", "sync")
    assert proc.returncode == 4
    assert "no database configured" in proc.stderr
