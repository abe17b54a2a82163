"""No database password reaches stderr, the log or the outbox's last_error, in any form of
connection string libpq accepts: real libpq, a real port with nothing listening, the real
CLI in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.adapters.store import SQLiteStore
from collector.adapters.store.outbox import RetryPolicy, forward_pending
from collector.adapters.store.postgres import PostgresStore
from tests.helpers import make_run
from tests.helpers import run_collector as collector
from tests.pg_server import free_port

SECRET = "Zq9-secret"  # noqa: S105 - a made-up password the tests look for
ONCE = RetryPolicy(attempts=1, base_delay_s=0.0, max_delay_s=0.0)


def forms(port: int) -> list[str]:
    return [
        f"postgresql://collector:{SECRET}@127.0.0.1:{port}/collector",
        f"postgresql://collector:{SECRET}#x@127.0.0.1:{port}/collector",
        f"postgresql://collector:{SECRET}/x@127.0.0.1:{port}/collector",
        f"postgresql://collector@127.0.0.1:{port}/collector?password={SECRET}",
        f"host=127.0.0.1 port={port} user=collector password={SECRET} dbname=collector",
        f"host=127.0.0.1 port={port} password='{SECRET} x' dbname=collector",
    ]


@pytest.mark.parametrize("index", range(6))
def test_no_secret_in_the_outbox_error(index: int, tmp_path: Path) -> None:
    url = forms(free_port())[index]
    local = SQLiteStore(tmp_path / "l.db")
    local.record_run(make_run())
    report = forward_pending(local, lambda: PostgresStore(url, connect_timeout=2),
                             policy=ONCE, sleep=lambda _s: None)
    assert report.pending == 1 and report.error is not None
    assert SECRET not in report.error
    stored = local.last_error()
    assert stored is not None and SECRET not in stored
    local.close()


@pytest.mark.parametrize("index", range(6))
def test_no_secret_on_stderr_of_db_commands(index: int, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = forms(free_port())[index]
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", url)
    local = tmp_path / "l.db"
    store = SQLiteStore(local)
    store.record_run(make_run())
    store.close()
    for command in (["db", "sync"], ["db", "status"]):
        proc = collector(*command, "--local-store", str(local), timeout=120)
        assert proc.returncode != 0, command
        assert SECRET not in proc.stdout + proc.stderr, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert os.environ["COLLECTOR_DATABASE_URL"] == url
