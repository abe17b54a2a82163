"""The TimescaleDB path on a real TimescaleDB, where one is at hand: the PostgreSQL bindir
of a tree with the extension installed in $COLLECTOR_TIMESCALEDB_BINDIR (CI cannot install
it; verified by hand with TimescaleDB 2.28.3 built from source against PostgreSQL 15).
Migrations 0003 + 0006 at start-up with their policies, real-time aggregates over all
history, 0006 over compressed chunks, the mode `db migrate` prints, and the fallback when
the library is not preloaded; and the Grafana SQL checks of test_grafana.py (every
dashboard SQL text as the read-only role, returning rows) on the same seed, before any
refresh, after the refresh policies ran and on compressed chunks.

Not collected by the suite (its name does not start with test_): CI has no TimescaleDB and
must not skip. Run it by hand, naming the file:

    COLLECTOR_TIMESCALEDB_BINDIR=/path/to/postgresql/15/bin \
        .venv/bin/python -m pytest tests/integration/timescaledb_by_hand.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collector.adapters.store.migrate import load_migrations, plan
from collector.adapters.store.postgres import PostgresStore
from tests.helpers import make_run
from tests.integration import test_grafana as grafana  # a module: its tests are not re-collected
from tests.pg_server import PostgresServer

ROOT = Path(__file__).parents[2]
BINDIR = os.environ.get("COLLECTOR_TIMESCALEDB_BINDIR")
if not BINDIR:
    raise pytest.UsageError("set COLLECTOR_TIMESCALEDB_BINDIR to the bindir of a PostgreSQL "
                            "tree with the TimescaleDB extension installed")
T = datetime.now(timezone.utc)


def start(directory: Path, *, preload: bool, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    monkeypatch.setenv("COLLECTOR_PG_BINDIR", str(BINDIR))
    server = PostgresServer(directory)
    server.start()
    if preload:
        server.stop()
        with (server.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("shared_preload_libraries = 'timescaledb'\n"
                       "timescaledb.telemetry_level = off\n")
        server.start()
    return server


@pytest.fixture
def timescale(monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    server = start(Path(tempfile.mkdtemp(prefix="ts-", dir="/tmp")), preload=True,
                   monkeypatch=monkeypatch)
    yield server
    server.close()


def rows(url: str, query: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode()).fetchall()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLLECTOR_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_start_up_migration_sets_policies_and_aggregates_show_all_history(
        timescale: PostgresServer) -> None:
    url = timescale.create_database("fresh")
    store = PostgresStore(url, timescale_policies=("7 days", None))
    assert store.mode.startswith("timescaledb")
    assert [a.version for a in plan(store).applied] == [
        m.version for m in load_migrations("postgres")]
    jobs = rows(url, "SELECT proc_name, hypertable_name, config->>'start_offset' FROM "
                     "timescaledb_information.jobs WHERE job_id >= 1000 ORDER BY 1, 2")
    assert jobs == [("policy_compression", "measurements", None),
                    ("policy_refresh_continuous_aggregate", "measurements_daily", None),
                    ("policy_refresh_continuous_aggregate", "measurements_hourly", None)]
    for days in (90, 40, 2, 0):  # history far older than any fixed window, and now
        store.record_run(make_run(when=T - timedelta(days=days)))
    raw = rows(url, "SELECT count(DISTINCT (series_id, metric, date_trunc('hour', time))) "
                    "FROM measurements")
    assert rows(url, "SELECT count(*) FROM measurements_hourly") == raw
    assert rows(url, "SELECT count(*) FROM measurements_daily") == raw
    orderby = rows(url, "SELECT attname FROM timescaledb_information.compression_settings "
                        "WHERE hypertable_name = 'measurements' AND orderby_column_index "
                        "IS NOT NULL ORDER BY orderby_column_index")
    assert orderby == [("time",), ("run_id",)]
    store.close()


def test_0006_applies_over_compressed_chunks(timescale: PostgresServer) -> None:
    url = timescale.create_database("upgrade")
    old = PostgresStore(url, migrations=[m for m in load_migrations("postgres")
                                         if m.version != 6])
    for days in (60, 30, 20):
        old.record_run(make_run(when=T - timedelta(days=days)))
    assert rows(url, "SELECT count(compress_chunk(c)) FROM show_chunks('measurements', "
                     "older_than => INTERVAL '10 days') c")[0][0] > 0
    old.close()
    new = PostgresStore(url, timescale_policies=("7 days", "365 days"))
    assert plan(new).current
    new.record_run(make_run(when=T))
    assert rows(url, "SELECT count(*) FROM measurements_hourly") == [(32,)]
    new.close()


def test_db_migrate_prints_the_mode_after_migrating(timescale: PostgresServer,
                                                    tmp_path: Path) -> None:
    url = timescale.create_database("cli")
    proc = cli(url, "db", "migrate", "--local-store", str(tmp_path / "l.db"))
    assert proc.returncode == 0, proc.stderr
    assert "(mode: timescaledb 2." in proc.stdout and "0006_timescaledb_tuning" in proc.stdout


def test_installed_but_not_preloaded_runs_as_plain_postgresql(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = start(Path(tempfile.mkdtemp(prefix="ts-", dir="/tmp")), preload=False,
                   monkeypatch=monkeypatch)
    try:
        url = server.create_database("np")
        assert rows(url, "SELECT count(*) FROM pg_available_extensions "
                         "WHERE name = 'timescaledb'") == [(1,)]
        store = PostgresStore(url)
        assert store.mode == "postgresql"
        assert [m.version for m in plan(store).unavailable] == [3, 6]
        store.close()
        proc = cli(url, "db", "status", "--local-store", str(tmp_path / "l.db"))
        assert proc.returncode == 0, proc.stderr
        assert "shared_preload_libraries" in proc.stdout and "Traceback" not in proc.stderr
    finally:
        server.close()


GRAFANA_SQL_CHECKS = (grafana.test_overview_sql_runs_as_the_reader_and_returns_rows,
                      grafana.test_trends_sql_runs_with_all_single_and_multi_values_at_every_resolution,
                      grafana.test_runs_sql_runs_and_filters_by_status)


def test_grafana_sql_before_refresh_after_the_policies_and_on_compressed_chunks(
        timescale: PostgresServer) -> None:
    """The plain-PostgreSQL suite's Grafana SQL tests, unchanged, on TimescaleDB: the
    aggregates answer from real time before any refresh, from materialised buckets after the
    refresh policies ran, and over compressed chunks."""
    # No scheduler: a policy job it launches at creation would materialise part of the seed
    # at a random moment; this test runs the policies itself (run_job), at a known point.
    url = timescale.create_database("grafana")
    with psycopg.connect(url, autocommit=True) as conn:  # 0003 creates it IF NOT EXISTS
        conn.execute("CREATE EXTENSION timescaledb")
        assert conn.execute("SELECT _timescaledb_functions.stop_background_workers()"
                            ).fetchone() == (True,)
    with grafana.seeded_reader(url) as seeded_pg:
        # chunks of the hourly aggregate's materialisation: none until a refresh
        materialised = ("SELECT count(*) FROM timescaledb_information.continuous_aggregates "
                        "a, show_chunks(format('%I.%I', a.materialization_hypertable_schema, "
                        "a.materialization_hypertable_name)::regclass) "
                        "WHERE a.view_name = 'measurements_hourly'")
        assert rows(url, materialised) == [(0,)]
        for check in GRAFANA_SQL_CHECKS:
            check(seeded_pg)
        with psycopg.connect(url, autocommit=True) as conn:  # CALL run_job: no transaction
            jobs = conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE "
                                "proc_name = 'policy_refresh_continuous_aggregate'").fetchall()
            assert len(jobs) == 2
            for (job,) in jobs:
                conn.execute(f"CALL run_job({job})".encode())
        assert rows(url, materialised)[0][0] > 0
        for check in GRAFANA_SQL_CHECKS:
            check(seeded_pg)
        compressed = rows(url, "SELECT count(compress_chunk(c, if_not_compressed => true)) "
                               "FROM show_chunks('measurements') c")[0][0]
        assert compressed > 0
        assert rows(url, "SELECT count(*) FROM timescaledb_information.chunks WHERE "
                         "hypertable_name = 'measurements' AND NOT is_compressed") == [(0,)]
        for check in GRAFANA_SQL_CHECKS:
            check(seeded_pg)
