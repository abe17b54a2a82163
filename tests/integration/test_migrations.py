"""Migrations against the real databases: ordered, recorded, transactional, guarded."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from collector.adapters.store import SQLiteStore, regressions
from collector.adapters.store.migrate import Migration, load_migrations, plan
from collector.adapters.store.postgres import PostgresStore
from collector.domain.errors import PermanentStoreError, SchemaError
from collector.usecases.scan import scan
from tests.helpers import make_run
from tests.integration.test_regressions_store import NEW, OLD, T0


def test_postgres_fresh_database_gets_every_migration_recorded(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    state = plan(store)
    assert state.current
    assert [(a.version, a.name) for a in state.applied] == [(1, "initial"),
                                                            (2, "readonly_role"),
                                                            (4, "regressions"),
                                                            (5, "signal"),
                                                            (7, "outputs_changed"),
                                                            (8, "series_variants"),
                                                            (9, "regression_ab"),
                                                            (10, "series_architecture"),
                                                            (11, "annotation_dimensions"),
                                                            (12, "series_load"),
                                                            (13, "annotation_load"),
                                                            (14, "series_origin"),
                                                            (15, "annotation_origin")]
    # No TimescaleDB here: its migration is optional, reported, not applied.
    assert [(m.version, m.requires) for m in state.unavailable] == [(3, "timescaledb"),
                                                                   (6, "timescaledb")]
    assert store.mode == "postgresql"
    # The plain-PostgreSQL fallback of the continuous aggregates answers the same query.
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM measurements_hourly").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM measurements_daily").fetchone() == (0,)
    store.close()


def test_timescaledb_migration_is_applied_where_the_extension_is_available(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection only: pretend the extension is available and check that the runner would
    apply the optional migration (it cannot run here: no TimescaleDB package)."""
    store = PostgresStore(pg_url)
    monkeypatch.setattr(store, "available_extensions", lambda: {"timescaledb", "plpgsql"})
    state = plan(store)
    assert [m.version for m in state.pending] == [3, 6]
    assert state.unavailable == []
    sql = state.pending[0].sql
    assert "create_hypertable('measurements'" in sql
    assert "timescaledb.continuous" in sql
    tuning = state.pending[1].sql
    assert "compress_orderby = 'time DESC, run_id'" in tuning
    assert tuning.count("timescaledb.materialized_only = false") == 2
    assert tuning.count("start_offset => NULL") == 2
    store.close()


def test_migrating_twice_is_a_no_op(pg_url: str, tmp_path: Path) -> None:
    PostgresStore(pg_url).close()
    again = PostgresStore(pg_url)
    assert len(plan(again).applied) == 13
    again.close()
    SQLiteStore(tmp_path / "l.db").close()
    local = SQLiteStore(tmp_path / "l.db")
    assert [a.version for a in plan(local).applied] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    local.close()


def _older(dialect: str) -> list[Migration]:
    return load_migrations(dialect)[:1]


def test_older_schema_is_migrated_or_refused_by_policy(pg_url: str) -> None:
    PostgresStore(pg_url, migrations=_older("postgres")).close()  # a database from before
    with pytest.raises(SchemaError, match=r"older than this collector \(pending: "
                                          r"0002_readonly_role, 0004_regressions, 0005_signal, "
                                          r"0007_outputs_changed, 0008_series_variants, "
                                          r"0009_regression_ab, 0010_series_architecture, "
                                          r"0011_annotation_dimensions, 0012_series_load, "
                                          r"0013_annotation_load, 0014_series_origin, "
                                              r"0015_annotation_origin\)"):
        PostgresStore(pg_url, schema="refuse")
    store = PostgresStore(pg_url, schema="migrate")
    assert plan(store).current
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    future = Migration(99, "from_the_future", "CREATE TABLE future (x INTEGER);", "f" * 64, None)
    SQLiteStore(tmp_path / "l.db", migrations=[*load_migrations("sqlite"), future]).close()
    with pytest.raises(SchemaError, match="newer than this collector knows"):
        SQLiteStore(tmp_path / "l.db")


def test_edited_migration_is_detected(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    edited = [dataclasses.replace(m, checksum="0" * 64) if m.version == 1 else m
              for m in load_migrations("postgres")]
    with pytest.raises(SchemaError, match="applied from a different file"):
        PostgresStore(pg_url, migrations=edited)


def test_a_failing_migration_is_never_half_applied(pg_url: str) -> None:
    broken = Migration(6, "broken", "CREATE TABLE half_done (x integer);\nSELECT 1/0;",
                       "b" * 64, None)
    with pytest.raises(PermanentStoreError, match="division by zero"):
        PostgresStore(pg_url, migrations=[*load_migrations("postgres"), broken])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [1, 2, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15]


def test_concurrent_migrators_apply_each_migration_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            PostgresStore(pg_url).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version, count(*) FROM schema_migrations "
                            "GROUP BY version ORDER BY version").fetchall()
    assert rows == [(1, 1), (2, 1), (4, 1), (5, 1), (7, 1), (8, 1), (9, 1), (10, 1),
                    (11, 1), (12, 1), (13, 1), (14, 1), (15, 1)]


def test_readonly_role_can_select_and_nothing_else(pg_url: str) -> None:
    from tests.helpers import make_run

    store = PostgresStore(pg_url)
    store.record_run(make_run())
    store.create_reader("grafana_reader", "s3cret-pw")
    reader_url = pg_url.replace("postgres@", "grafana_reader:s3cret-pw@", 1)
    reader = psycopg.connect(reader_url, autocommit=True)
    assert reader.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    hourly = reader.execute("SELECT count(*) FROM measurements_hourly").fetchone()
    assert hourly is not None and hourly[0] > 0
    for statement in ("INSERT INTO runs (run_id, suite, host, started_at, finished_at, status, "
                      "collector_version) VALUES (gen_random_uuid(), 's', 'h', now(), now(), "
                      "'ok', 'x')", "DELETE FROM measurements", "DROP TABLE samples",
                      "CREATE TABLE mine (x int)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(statement)
    reader.close()
    # Writing through the store as that role is a permanent error, not a retry loop.
    with pytest.raises(PermanentStoreError, match="permission denied"):
        PostgresStore(reader_url).record_run(make_run())
    store.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_outputs_changed_kind_keeps_the_regressions_of_an_older_schema(
        dialect: str, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuilding SQLite's regressions table (and PostgreSQL's new constraint) keeps every
    stored record, its confirmation evidence included, and then admits the new kind."""
    # regression_ab adds a column after the rebuild (it is later), as on a real upgrade, and
    # the annotations views that read it come after it.
    older = [m for m in load_migrations(dialect)
             if m.name not in ("outputs_changed", "regression_ab", "annotation_dimensions",
                               "annotation_load", "annotation_origin")
             and m.requires is None]

    def open_store(migrations: list[Migration] | None = None) -> SQLiteStore | PostgresStore:
        if dialect == "sqlite":
            return SQLiteStore(tmp_path / "l.db", migrations=migrations)
        return PostgresStore(pg_url, migrations=migrations)

    # The collector of that schema wrote regressions without the later ab column.
    before_ab = tuple(c for c in regressions.REGRESSION_COLUMNS if c != "ab")
    monkeypatch.setattr(regressions, "REGRESSION_COLUMNS", before_ab)
    monkeypatch.setattr(regressions, "UPSERT_REGRESSION", regressions.upsert_regression(before_ab))
    store = open_store(older)
    for hour in range(28):
        store.record_run(make_run(when=T0 + timedelta(hours=hour), models=("bert",),
                                  latency=0.013 if hour >= 20 else 0.010,
                                  environment=NEW if hour >= 20 else OLD))
        scan(store)
    before = store.regressions()
    assert before and all(r.kind == "regression" for r in before)
    store.close()
    monkeypatch.undo()
    store = open_store()
    assert store.regressions() == before
    store.save_regression(dataclasses.replace(before[0], regression_id="changed-outputs",
                                  kind="outputs_changed"))
    assert {r.kind for r in store.regressions()} == {"regression", "outputs_changed"}
    store.close()

