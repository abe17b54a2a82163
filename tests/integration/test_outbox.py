"""Zero-loss forwarding with the real server: outages, kills, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from collector.adapters.store import SQLiteStore, Stores
from collector.adapters.store.outbox import RetryPolicy, forward_pending, with_retry
from collector.adapters.store.postgres import PostgresStore, redact
from collector.domain.errors import PermanentStoreError, TemporaryStoreError
from tests.helpers import make_run
from tests.pg_server import PostgresServer

ROOT = Path(__file__).parents[2]
FAST_RETRY = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1)


def remote_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        counts = {}
        for table in ("runs", "results", "measurements", "samples"):
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(table))).fetchone()
            assert row is not None
            counts[table] = int(row[0])
        return counts


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, check=False)


def test_outage_in_the_middle_of_a_sequence_loses_nothing(
        pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    stores = Stores.open(tmp_path / "local.db", pg_url, retry=FAST_RETRY)
    runs = [make_run() for _ in range(9)]
    reports = []
    for index, run in enumerate(runs):
        if index == 3:
            pg_server.stop()
        if index == 6:
            pg_server.start()
        stores.local.record_run(run)
        reports.append(stores.sync())
    # While the server was down the runs waited, with a temporary error.
    down = reports[3]
    assert down is not None and not down.ok and down.temporary
    assert down.pending == 1
    assert reports[5] is not None and reports[5].pending == 3
    # The first sync after the restart replays the backlog in order, then the new run.
    assert reports[6] is not None and reports[6].ok and reports[6].delivered == 4
    assert stores.local.pending_count() == 0
    stores.close()
    with psycopg.connect(pg_url) as conn:
        stored = {r.hex for (r,) in conn.execute("SELECT run_id FROM runs")}
    assert stored == {run.run_id for run in runs}
    local = SQLiteStore(tmp_path / "local.db")
    assert remote_counts(pg_url)["measurements"] == 9 * 2 * 4
    assert remote_counts(pg_url)["samples"] == local.run_count() * 2 * 20
    local.close()


def test_killed_between_local_commit_and_forward_loses_nothing(
        pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    proc = python(f"""
        import os, signal
        from collector.adapters.store import SQLiteStore
        from tests.helpers import make_run
        store = SQLiteStore({str(db)!r})
        for _ in range(3):
            store.record_run(make_run())
        os.kill(os.getpid(), signal.SIGKILL)  # before any forward
    """)
    assert proc.returncode == -9, proc.stderr
    stores = Stores.open(db, pg_url)
    assert stores.local.pending_count() == 3
    report = stores.sync()
    assert report is not None and report.ok and report.delivered == 3
    assert remote_counts(pg_url)["runs"] == 3
    stores.close()


def test_killed_after_remote_commit_before_marking_is_replayed_once(
        pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    proc = python(f"""
        import os, signal
        from collector.adapters.store import SQLiteStore
        from collector.adapters.store.outbox import forward_pending
        from collector.adapters.store.postgres import PostgresStore
        from tests.helpers import make_run
        local = SQLiteStore({str(db)!r})
        for _ in range(2):
            local.record_run(make_run())
        remote = PostgresStore({pg_url!r})
        forward_pending(local, lambda: remote,
                        after_remote_commit=lambda run_id: os.kill(os.getpid(), signal.SIGKILL))
    """)
    assert proc.returncode == -9, proc.stderr
    assert remote_counts(pg_url)["runs"] == 1  # the first run got there, unmarked
    stores = Stores.open(db, pg_url)
    report = stores.sync()
    assert report is not None and report.ok
    assert (report.delivered, report.already_there) == (1, 1)
    counts = remote_counts(pg_url)
    assert counts["runs"] == 2 and counts["results"] == 4 and counts["samples"] == 2 * 2 * 20
    stores.close()


def test_concurrent_writers_into_one_database(pg_url: str, tmp_path: Path) -> None:
    PostgresStore(pg_url).close()  # schema in place; the writers race on data, not DDL
    shared = make_run(host="shared")
    script = """
        import sys
        from collector.adapters.store import Stores
        from collector.domain.model import RunResult
        from tests.helpers import make_run
        stores = Stores.open(sys.argv[1], sys.argv[2])
        shared = RunResult.model_validate_json(open(sys.argv[3]).read())
        stores.local.record_run(shared)  # the same run id from every writer
        for i in range(12):
            stores.local.record_run(make_run(host=sys.argv[4]))
            report = stores.sync()
            assert report is not None and report.ok, report
        print("ok")
    """
    doc = tmp_path / "shared.json"
    doc.write_text(shared.model_dump_json())
    procs = [subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path / f"w{n}.db"), pg_url,
         str(doc), f"host-{n}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for n in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "ok", err
    counts = remote_counts(pg_url)
    assert counts["runs"] == 3 * 12 + 1
    assert counts["results"] == (3 * 12 + 1) * 2
    with psycopg.connect(pg_url) as conn:
        hosts: dict[str, int] = dict(
            conn.execute("SELECT host, count(*) FROM runs GROUP BY host").fetchall())
        series = conn.execute("SELECT count(*) FROM series").fetchone()
    assert hosts == {"host-0": 12, "host-1": 12, "host-2": 12, "shared": 1}
    assert series == (4 * 2,)  # two series per host, nothing duplicated


def test_unreachable_server_is_temporary_and_retried_with_backoff(tmp_path: Path) -> None:
    from tests.pg_server import free_port

    url = f"postgresql://postgres:pw-never-shown@127.0.0.1:{free_port()}/nothing"
    local = SQLiteStore(tmp_path / "l.db")
    local.record_run(make_run())
    waits: list[float] = []
    report = forward_pending(local, lambda: PostgresStore(url, connect_timeout=2),
                             policy=RetryPolicy(attempts=3, base_delay_s=0.5, max_delay_s=0.8),
                             sleep=waits.append)
    assert waits == [0.5, 0.8]  # exponential, capped
    assert report.temporary and report.pending == 1 and report.delivered == 0
    assert report.error is not None and "unreachable" in report.error
    assert "pw-never-shown" not in report.error
    assert redact(url) in report.error
    local.close()


def test_permanent_errors_are_not_retried_and_keep_data_pending(
        pg_url: str, tmp_path: Path) -> None:
    store = PostgresStore(pg_url)
    store.create_reader("ro_writer", "pw")
    store.close()
    local = SQLiteStore(tmp_path / "l.db")
    local.record_run(make_run())
    waits: list[float] = []
    reader_url = pg_url.replace("postgres@", "ro_writer:pw@", 1)
    report = forward_pending(local, lambda: PostgresStore(reader_url), sleep=waits.append)
    assert waits == []
    assert not report.temporary
    assert report.error is not None and "permission denied" in report.error
    assert local.pending_count() == 1
    assert local.last_error() == report.error
    local.close()


def test_with_retry_gives_up_after_its_attempts() -> None:
    calls = []

    def flaky() -> int:
        calls.append(1)
        raise TemporaryStoreError("down")

    with pytest.raises(TemporaryStoreError):
        with_retry(flaky, RetryPolicy(attempts=4, base_delay_s=0.01), sleep=lambda _s: None)
    assert len(calls) == 4

    def broken() -> int:
        calls.append(1)
        raise PermanentStoreError("no")

    calls.clear()
    with pytest.raises(PermanentStoreError):
        with_retry(broken, RetryPolicy(attempts=4), sleep=lambda _s: None)
    assert len(calls) == 1
