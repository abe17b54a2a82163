"""A run that cannot be delivered is quarantined (kept, visible, retriable) and never holds
back the runs behind it; a transient error quarantines nothing. Real PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.adapters.store import SQLiteStore, Stores
from collector.adapters.store.outbox import RetryPolicy, forward_pending
from collector.domain.model import RunResult
from collector.present.exposition import Exposition, ServiceCollector
from tests.helpers import make_run
from tests.helpers import run_collector as collector
from tests.pg_server import PostgresServer

FAST_RETRY = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1)


def remote_run_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r.hex for (r,) in conn.execute("SELECT run_id FROM runs")}


def edit_document(db: Path, run_id: str, field: str, new: str) -> None:
    """Set a field of a stored outbox document, as an older collector (or a value the
    model accepts but cannot read back) would have left it."""
    with sqlite3.connect(db) as conn:
        (doc,) = conn.execute("SELECT document FROM outbox WHERE run_id = ?",
                              (run_id,)).fetchone()
        edited, count = re.subn(rf'"{field}":[0-9.]+', f'"{field}":{new}', doc)
        assert count > 0
        conn.execute("UPDATE outbox SET document = ? WHERE run_id = ?", (edited, run_id))


def with_nul_in_failure(run: RunResult) -> RunResult:
    """A failed result whose message holds a NUL byte: SQLite keeps it, PostgreSQL text
    cannot."""
    first, failed = run.results
    assert failed.failure is not None
    bad = failed.model_copy(update={"failure": failed.failure.model_copy(
        update={"message": "worker said a\x00b"})})
    return run.model_copy(update={"results": (first, bad)})


def test_a_document_that_no_longer_validates_is_quarantined_and_the_rest_delivered(
        pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url, retry=FAST_RETRY)
    runs = [make_run() for _ in range(3)]
    for run in runs:
        stores.local.record_run(run)
    # An infinite timeout is written by pydantic as JSON null and does not read back.
    edit_document(db, runs[0].run_id, "timeout_s", "null")
    report = stores.sync()
    assert report is not None and report.ok, report
    assert (report.delivered, report.pending, report.quarantined) == (2, 0, 1)
    assert remote_run_ids(pg_url) == {runs[1].run_id, runs[2].run_id}
    [held] = stores.local.quarantined()
    assert held.run_id == runs[0].run_id
    assert "no longer validates" in held.reason and "timeout_s" in held.reason
    # The next sync does not trip over it again.
    again = stores.sync()
    assert again is not None and again.ok and again.delivered == 0 and again.quarantined == 1
    stores.close()


def test_a_value_postgres_refuses_is_quarantined_then_retried_after_a_fix(
        pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url, retry=FAST_RETRY)
    runs = [make_run(), make_run(), make_run()]
    for run in runs:
        stores.local.record_run(run)
    edit_document(db, runs[0].run_id, "sequence_length", "3000000000")
    waits: list[float] = []
    report = forward_pending(stores.local, stores.remote, policy=FAST_RETRY,
                             sleep=waits.append)
    assert waits == []  # permanent for that run: not retried
    assert report.ok and (report.delivered, report.quarantined) == (2, 1), report
    assert remote_run_ids(pg_url) == {runs[1].run_id, runs[2].run_id}
    [held] = stores.local.quarantined()
    assert held.run_id == runs[0].run_id
    assert "out of range" in held.reason or "no longer validates" in held.reason
    # A later run is not held back either.
    later = make_run()
    stores.local.record_run(later)
    assert forward_pending(stores.local, stores.remote).delivered == 1
    # The fix (here: the document repaired by hand), then the retry delivers it.
    edit_document(db, runs[0].run_id, "sequence_length", "8")
    assert stores.local.release_quarantined() == 1
    report = forward_pending(stores.local, stores.remote)
    assert report.ok and report.delivered == 1 and report.quarantined == 0
    assert runs[0].run_id in remote_run_ids(pg_url)
    stores.close()


def test_data_postgres_cannot_store_is_quarantined_not_retried(
        pg_url: str, tmp_path: Path) -> None:
    stores = Stores.open(tmp_path / "local.db", pg_url, retry=FAST_RETRY)
    bad = with_nul_in_failure(make_run(fail="vit"))
    good = make_run()
    stores.local.record_run(bad)
    stores.local.record_run(good)
    report = stores.sync()
    assert report is not None and report.ok, report
    assert (report.delivered, report.newly_quarantined) == (1, 1)
    assert remote_run_ids(pg_url) == {good.run_id}
    [held] = stores.local.quarantined()
    assert held.run_id == bad.run_id and "NUL" in held.reason
    stores.close()


def test_quarantined_runs_are_retried_by_another_collector_version(
        pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url)
    run = make_run()
    stores.local.record_run(run)
    stores.local.quarantine(run.run_id, "refused by an older collector")
    assert stores.local.pending_count() == 0
    report = stores.sync()  # quarantined by this version: stays aside
    assert report is not None and report.delivered == 0 and report.quarantined == 1
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE outbox SET quarantined_by = '0.0.1'")
    report = stores.sync()  # another version: tried again, and it goes through now
    assert report is not None and report.ok
    assert (report.released, report.delivered, report.quarantined) == (1, 1, 0)
    assert remote_run_ids(pg_url) == {run.run_id}
    stores.close()


def test_a_transient_error_quarantines_nothing(
        pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    stores = Stores.open(tmp_path / "local.db", pg_url, retry=FAST_RETRY)
    stores.remote()
    for _ in range(2):
        stores.local.record_run(make_run())
    pg_server.stop()
    report = stores.sync()
    assert report is not None and not report.ok and report.temporary
    assert (report.pending, report.quarantined) == (2, 0)
    assert stores.local.quarantined_count() == 0
    pg_server.start()
    report = stores.sync()
    assert report is not None and report.ok and report.delivered == 2
    stores.close()


def test_quarantine_is_exported_as_a_gauge(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "local.db")
    runs = [make_run(), make_run()]
    for run in runs:
        store.record_run(run)
    exposition = Exposition(store, ServiceCollector({}, outbox_pending=store.pending_count))

    def gauges() -> dict[str, float]:
        text = exposition.render().decode()
        return {s.name: s.value for f in text_string_to_metric_families(text)
                for s in f.samples if s.name.startswith("collector_outbox_")}

    assert gauges() == {"collector_outbox_pending_runs": 2.0,
                        "collector_outbox_quarantined_runs": 0.0}
    store.quarantine(runs[0].run_id, "refused")
    assert gauges() == {"collector_outbox_pending_runs": 1.0,
                        "collector_outbox_quarantined_runs": 1.0}
    store.close()


def test_db_status_shows_quarantined_runs_and_retry_quarantined_delivers(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url)
    bad, good = with_nul_in_failure(make_run(fail="vit")), make_run()
    stores.local.record_run(bad)
    stores.local.record_run(good)
    stores.close()
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", pg_url)
    synced = collector("db", "sync", "--local-store", str(db))
    assert synced.returncode == 4, synced.stderr
    assert "delivered 1, already present 0, pending 0, quarantined 1" in synced.stdout
    assert "1 run(s) quarantined" in synced.stderr and "Traceback" not in synced.stderr
    status = collector("db", "status", "--local-store", str(db))
    assert status.returncode == 0, status.stderr
    assert "outbox: 0 run(s) pending" in status.stdout
    assert "outbox: 1 run(s) quarantined" in status.stdout
    assert f"quarantined  run {bad.run_id}" in status.stdout and "NUL" in status.stdout
    # Still refused: the retry puts it back in line, and it is quarantined again.
    retried = collector("db", "retry-quarantined", "--local-store", str(db))
    assert retried.returncode == 4
    assert "1 quarantined run(s) back in line" in retried.stdout
    assert remote_run_ids(pg_url) == {good.run_id}


def test_run_once_says_when_runs_are_quarantined(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run-once that forwards fine still warns of runs held in quarantine (else they
    would wait unseen until someone ran `db status`)."""
    from tests.helpers import benchmark_yaml
    from tests.integration.test_cli import write_config

    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url)
    stores.local.record_run(with_nul_in_failure(make_run(fail="vit")))
    stores.close()
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", pg_url)
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--local-store", str(db),
                     "--no-confirm")
    assert proc.returncode == 0, proc.stderr
    assert "forwarded 1 run(s)" in proc.stderr
    assert "1 run(s) are quarantined in the outbox" in proc.stderr
    assert "Traceback" not in proc.stderr
