"""`collector serve` under faults: a second serve on the same store, placeholder passwords,
a PostgreSQL that accepts connections and never answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.config import Config, load_config
from collector.adapters.store import StoreOptions, Stores
from collector.usecases.service import Service
from tests.helpers import benchmark_yaml
from tests.integration.test_serve import Serve, bench, write

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_serve_on_the_same_store_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}})
    first = Serve(config)
    try:
        second = subprocess.run([sys.executable, "-m", "collector", "serve", "--config",
                                 str(config), "--port", "0"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=False)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "another `collector serve`" in lines[0], second.stderr
        assert f"pid {first.proc.pid}" in lines[0]
        assert "Traceback" not in second.stderr
    finally:
        assert first.stop() == 0
    # Once the first is gone (even killed: the kernel drops the lock), serve starts again.
    again = Serve(config)
    again.proc.kill()
    again.proc.wait()
    third = Serve(config)
    assert third.stop() == 0


@pytest.mark.parametrize(("variable", "url"), [
    ("PGPASSWORD", "postgresql://collector@127.0.0.1:1/collector"),
    (None, "postgresql://collector:change-me-database-password@127.0.0.1:1/collector"),
])
def test_serve_refuses_the_placeholder_password(tmp_path: Path, variable: str | None,
                                                url: str) -> None:
    import os

    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}})
    env = {**os.environ, "COLLECTOR_DATABASE_URL": url}
    if variable:
        env[variable] = "change-me-database-password"
    proc = subprocess.run([sys.executable, "-m", "collector", "serve", "--config", str(config),
                           "--port", "0", "--local-store", str(tmp_path / "l.db")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "placeholder" in proc.stderr and "Traceback" not in proc.stderr
    assert "change-me-database-password" not in proc.stderr


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that completes every handshake (the kernel's backlog) and never answers:
    a PostgreSQL that accepts connections and then stops answering."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _with_a_silent_database(tmp_path: Path, black_hole: int,
                            serve: dict[str, Any]) -> tuple[Config, Stores]:
    """An hourly suite of the tiny bert with these serve settings, and stores whose
    PostgreSQL is a port that accepts connections and never answers."""
    path = tmp_path / "c.yml"
    with path.open("w") as handle:
        YAML().dump({"version": 1, "serve": serve,
                     "suites": {"s": {"schedule": {"interval_s": 3600},
                                      "benchmarks": [benchmark_yaml("bert")]}}}, handle)
    stores = Stores(Stores.open(tmp_path / "l.db", None).local,
                    f"postgresql://u@127.0.0.1:{black_hole}/db",
                    options=StoreOptions(connect_timeout_s=60, statement_timeout_s=60))
    return load_config(path), stores


def test_a_database_that_never_answers_freezes_nothing(tmp_path: Path,
                                                       black_hole: int) -> None:
    config, stores = _with_a_silent_database(tmp_path, black_hole,
                                             {"grace_s": 1, "outbox_retry_s": 1})
    service = Service(config, stores, port=0, sync_stuck_s=1.0)
    service.start()
    try:
        base = "http://{}:{}".format(*service.address)
        deadline = time.monotonic() + 20
        status, text = _get(f"{base}/healthz")
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.3)
            status, text = _get(f"{base}/healthz")
        assert status == 503, text
        assert "database sync running for" in text
        started = time.monotonic()
        assert _get(f"{base}/metrics")[0] == 200  # scrapes do not wait on the database
        assert time.monotonic() - started < 3
        started = time.monotonic()
        service.request_stop()
        assert service.stopped.wait(15), "stop waited on the database"
        assert time.monotonic() - started < 15
    finally:
        service.request_stop()
        service.stopped.wait(15)
        stores.close()


def test_a_suite_runs_while_the_database_never_answers(tmp_path: Path,
                                                       black_hole: int) -> None:
    config, stores = _with_a_silent_database(tmp_path, black_hole,
                                             {"grace_s": 1, "run_at_start": True})
    service = Service(config, stores, port=0)
    done = threading.Event()
    original = service.exposition.render

    def render(accept: str = "") -> bytes:
        body = original(accept)
        if stores.local.run_count():
            done.set()
        return body

    service.exposition.render = render  # type: ignore[method-assign]  # observe the suite
    service.start()
    try:
        assert done.wait(120), "the suite waited on the database"
        assert stores.local.pending_count() == 1  # kept for PostgreSQL
    finally:
        service.request_stop()
        assert service.stopped.wait(20)
        stores.close()


@pytest.mark.parametrize("action", ["migrate", "sync", "retry-quarantined", "create-reader"])
def test_db_actions_that_write_refuse_the_placeholder_password(tmp_path: Path,
                                                              action: str) -> None:
    """The first `db migrate` writes the database's password into a volume for good
    (deploy/README.md): no action that writes runs with the placeholder; `status` reads."""
    import os

    env = {**os.environ, "PGPASSWORD": "change-me-database-password",
           "COLLECTOR_DATABASE_URL": "postgresql://collector@127.0.0.1:1/collector"}
    args = ["db", action, "--local-store", str(tmp_path / "l.db")]
    if action == "create-reader":
        args.append("grafana")
    proc = subprocess.run([sys.executable, "-m", "collector", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "placeholder" in proc.stderr and "Traceback" not in proc.stderr
    assert "change-me-database-password" not in proc.stderr
    status = subprocess.run([sys.executable, "-m", "collector", "db", "status",
                             "--local-store", str(tmp_path / "l.db")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert "placeholder" not in status.stderr  # it reads: it says what it finds
    assert "change-me-database-password" not in status.stdout + status.stderr
