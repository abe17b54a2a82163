"""No secret in any output, round two (issue 23, security 1 and part of 3).

A marker (MARK) is planted in every place a secret comes from: database URLs libpq misreads
(a byte-order mark, quotes, spaces, another scheme, an unencoded '@'), the URL file, the
environment ($PGPASSWORD, PIP_INDEX_URL with a token), the push URL, an index URL, the
alerts token file. It is then looked for in every output of the real CLI (subprocesses),
every `serve` log line, every outbox error and quarantine record of the SQLite local store,
`/metrics` and `/healthz`, a package environment's manifest, and the environment a worker
or another process of the same user can read. Real PostgreSQL (tests/fixtures_pg.py).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest

from collector.adapters.store import SQLiteStore
from collector.adapters.store.outbox import RetryPolicy, forward_pending
from collector.adapters.store.postgres import PostgresStore
from collector.domain.model import RunResult
from tests.helpers import ROOT, benchmark_yaml, make_run
from tests.helpers import run_collector as collector
from tests.integration.test_cli import write_config
from tests.integration.test_serve import Serve, bench, write
from tests.pg_server import PostgresServer, free_port

MARK = "Qx7mark"  # in every planted secret, in no output (alphanumeric: every form shows it)
ONCE = RetryPolicy(attempts=1, base_delay_s=0.0, max_delay_s=0.0)


def secret(where: str) -> str:
    """A password for one place, so each test's secrets are its own."""
    return f"{MARK}{where}{uuid.uuid4().hex[:6]}"


def assert_clean(where: str, *texts: str | None) -> None:
    for text in texts:
        if text and MARK in text:
            shown = [line for line in text.splitlines() if MARK in line]
            raise AssertionError(f"a secret shows in {where}: {shown[:5]}")


def store_dump(path: Path) -> str:
    """Every table of a SQLite store as SQL text (outbox errors, quarantine reasons, runs)."""
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


def with_nul_in_failure(run: RunResult) -> RunResult:
    """A run PostgreSQL refuses for its own data (a NUL in a text column): quarantined."""
    results = tuple(
        result if result.failure is None else result.model_copy(update={
            "failure": result.failure.model_copy(update={"message": "worker said a\x00b"})})
        for result in run.results)
    return run.model_copy(update={"results": results})


def local_store_with(path: Path, *, refused: bool = False) -> list[str]:
    """A local store holding a pending run (and, with `refused`, one PostgreSQL refuses);
    their run ids."""
    store = SQLiteStore(path)
    runs = [make_run()]
    if refused:
        runs.append(with_nul_in_failure(make_run(fail="vit")))
    for run in runs:
        store.record_run(run)
    store.close()
    return [run.run_id for run in runs]


def url_for(pg_server: PostgresServer, password: str, database: str) -> str:
    return f"postgresql://postgres:{password}@127.0.0.1:{pg_server.port}/{database}"


def with_password(url: str, password: str) -> str:
    """A test database's URL (trust authentication: any password is let in) with one."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


# -- URLs as people paste them: read as meant, never shown ----------------------------------

PASTED = {
    "bom": lambda url: f"\ufeff{url}",
    "quotes": lambda url: f'"{url}"',
    "spaces": lambda url: f"  {url} \n",
    "bom, quotes and spaces": lambda url: f"\ufeff '{url}'\n",
}


@pytest.mark.parametrize(("form", "source"), [
    ("bom", "environment"), ("quotes", "environment"), ("spaces", "environment"),
    ("bom, quotes and spaces", "file")])
def test_a_pasted_url_is_read_as_meant_and_never_shown(
        form: str, source: str, pg_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pasted = PASTED[form](with_password(pg_url, secret("db")))
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    if source == "file":
        url_file = tmp_path / "db_url"
        url_file.write_text(pasted, encoding="utf-8")
        config.write_text(config.read_text().replace(
            "suites:", f"storage:\n  database_url_file: {url_file}\nsuites:", 1))
    else:
        monkeypatch.setenv("COLLECTOR_DATABASE_URL", pasted)
    local = tmp_path / "l.db"
    delivered, refused = local_store_with(local, refused=True)
    common = ("--config", str(config), "--local-store", str(local))
    migrate = collector("db", "migrate", *common, timeout=120)
    sync = collector("db", "sync", *common, timeout=120)
    status = collector("db", "status", *common, timeout=120)
    for name, proc in (("db migrate", migrate), ("db sync", sync), ("db status", status)):
        assert_clean(name, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
    assert migrate.returncode == 0, migrate.stderr
    assert sync.returncode == 4, sync.stderr  # one run quarantined
    assert "delivered 1" in sync.stdout and "quarantined 1" in sync.stdout
    assert status.returncode == 0, status.stderr
    assert "postgres:***@127.0.0.1" in status.stdout
    with psycopg.connect(pg_url) as conn:  # the URL as meant reached the database
        assert {r.hex for (r,) in conn.execute("SELECT run_id FROM runs")} == {delivered}
    dump = store_dump(local)
    assert "NUL" in dump and refused in dump  # the quarantine record, with its reason
    assert_clean("the local store", dump)


# -- URLs that cannot be PostgreSQL's: refused, exit 2, never echoed ------------------------

def unparseable(pg_server: PostgresServer) -> dict[str, str]:
    port = pg_server.port
    return {
        "mysql": f"mysql://collector:{secret('my')}@127.0.0.1:{port}/collector",
        "sqlalchemy": f"postgresql+psycopg2://postgres:{secret('sa')}@127.0.0.1:{port}/x",
        "unencoded @": f"postgresql://postgres:{secret('a')}@{secret('b')}@127.0.0.1:{port}/x",
        "not a URL": f"{secret('word')} is not a connection string",
    }


@pytest.mark.parametrize("case", ["mysql", "sqlalchemy", "unencoded @", "not a URL"])
def test_a_url_that_cannot_be_postgresql_is_refused_without_echo(
        case: str, pg_server: PostgresServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", unparseable(pg_server)[case])
    local = tmp_path / "l.db"
    local_store_with(local)
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")],
                          schedule={"interval_s": 3600})
    common = ("--config", str(config), "--local-store", str(local))
    for command in (("db", "status"), ("db", "migrate"), ("db", "sync"), ("run-once",),
                    ("serve", "--port", "0")):
        proc = collector(*command, *common, timeout=120)
        assert_clean(" ".join(command), proc.stdout, proc.stderr)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "COLLECTOR_DATABASE_URL" in proc.stderr and "the database URL" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert_clean("the local store", store_dump(local))


@pytest.mark.parametrize("case", ["bom", "mysql", "unencoded @", "slash in password"])
def test_no_misread_url_reaches_the_outbox_error(case: str, tmp_path: Path) -> None:
    """The Python API (no CLI in front): PostgresStore strips, refuses or scrubs."""
    port = free_port()  # nothing listens: the store cannot connect
    url = {
        "bom": f"\ufeffpostgresql://postgres:{secret('b')}@127.0.0.1:{port}/x",
        "mysql": f"mysql://postgres:{secret('m')}@127.0.0.1:{port}/x",
        "unencoded @": f"postgresql://postgres:{secret('a')}@{secret('b')}@127.0.0.1:{port}/x",
        "slash in password": f"postgresql://postgres:{secret('s')}/{secret('t')}@127.0.0.1:"
                             f"{port}/x",
    }[case]
    local = SQLiteStore(tmp_path / "l.db")
    local.record_run(make_run())
    report = forward_pending(local, lambda: PostgresStore(url, connect_timeout=2),
                             policy=ONCE, sleep=lambda _s: None)
    assert report.pending == 1 and report.error is not None
    assert_clean("the sync report", report.error)
    assert_clean("the outbox error", local.last_error())
    local.close()
    assert_clean("the local store", store_dump(tmp_path / "l.db"))


# -- serve: log lines, /metrics, /healthz, the outbox, /proc/<pid>/environ ------------------

_READER = ("import sys\n"
           "try:\n"
           "    data = open(sys.argv[1], 'rb').read()\n"
           "except PermissionError:\n"
           "    print('denied')\n"
           "else:\n"
           "    print('read' if data else 'empty')\n")


def skip_outside_ci(reason: str) -> None:
    """As the suite's service fixtures do: CI must run it, so there a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this check: {reason}")
    pytest.skip(reason)


def user_code_prefix() -> list[str] | None:
    """How to start a process as model code in a worker runs under a collector that is not
    root: the same user, without the capabilities that read any process's /proc files
    (CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_PERFMON). As root: setpriv dropping them (None when
    it cannot); otherwise nothing to add."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set", "-sys_ptrace,-sys_admin,-perfmon"]
    done = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True,
                          timeout=60, check=False)
    return prefix if done.returncode == 0 else None  # an older setpriv without perfmon


def read_environ(prefix: list[str], pid: int) -> str:
    """'read' or 'denied': what a process started with `prefix` gets from
    /proc/<pid>/environ."""
    done = subprocess.run([*prefix, sys.executable, "-c", _READER, f"/proc/{pid}/environ"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Serving(Serve):
    """Serve (tests/integration/test_serve.py) started with a prefix: both it and the
    process that reads its /proc files hold the same capabilities, as a collector that is
    not root and its workers do (the kernel also refuses a reader with fewer
    capabilities than its target, dumpable or not)."""

    def __init__(self, config: Path, prefix: list[str], *extra: str) -> None:
        self.port = free_port()
        self.log = config.with_suffix(".log")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "collector", "serve", "--config", str(config),
             "--port", str(self.port), *extra], cwd=ROOT, stdout=self.log.open("w"),
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.2)


def test_serve_logs_scrapes_and_environment_show_no_secret(
        pg_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        skip_outside_ci("/proc and prctl are Linux's")
    # The database refuses the connection (no such database) on every retry; the URL is
    # pasted with a byte-order mark and quotes, the secrets also sit in the environment.
    missing = f"no_such_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("COLLECTOR_DATABASE_URL",
                       f"\ufeff'{url_for(pg_server, secret('db'), missing)}'")
    monkeypatch.setenv("PGPASSWORD", secret("pg"))
    monkeypatch.setenv("PIP_INDEX_URL", f"https://{secret('tok')}@index.invalid/simple")
    token = tmp_path / "alerts_token"
    token.write_text(secret("alerts") + "\n")
    monkeypatch.setenv("COLLECTOR_ALERTS_TOKEN_FILE", str(token))
    local = tmp_path / "l.db"
    local_store_with(local)
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}},
                   outbox_retry_s=1)
    prefix = user_code_prefix()
    # A process of the same user and capabilities that stays dumpable: the reader's control.
    dumpable = subprocess.Popen([*(prefix or []), sys.executable, "-c",
                                 "import time; time.sleep(120)"])
    serve = Serving(config, prefix or [], "--local-store", str(local))
    try:
        deadline = time.monotonic() + 90
        while serve.log.read_text().count("wait in the outbox") < 2:  # two retries at least
            assert time.monotonic() < deadline, serve.log.read_text()
            assert serve.proc.poll() is None, serve.log.read_text()
            time.sleep(0.2)
        assert "does not exist" in serve.log.read_text()
        assert_clean("/metrics", serve.metrics())
        with urllib.request.urlopen(f"{serve.url}/healthz", timeout=10) as response:
            assert_clean("/healthz", response.read().decode())
        if prefix is not None:
            control = read_environ(prefix, dumpable.pid)
            collector_environ = read_environ(prefix, serve.proc.pid)
    finally:
        dumpable.kill()
        dumpable.wait()
        code = serve.stop()
    assert code == 0, serve.log.read_text()
    assert_clean("the serve log", serve.log.read_text())
    dump = store_dump(local)
    assert "does not exist" in dump  # the outbox error is kept with the run it holds up
    assert_clean("the local store", dump)
    if prefix is None:
        skip_outside_ci("running as root without a setpriv that drops CAP_SYS_PTRACE, "
                        "CAP_SYS_ADMIN and CAP_PERFMON: the /proc/<pid>/environ check "
                        "cannot run")
    assert control == "read"  # the same user reads a dumpable process's environment
    assert collector_environ == "denied"  # serve is not dumpable: model code cannot read it


# -- run-once: the push URL, the database URL, the environment --------------------------------

@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A Pushgateway stand-in that accepts every push: its address, and (method, path,
    Authorization header) of each request."""
    seen: list[tuple[str, str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        do_POST = do_PUT

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_run_once_pushes_with_credentials_and_shows_none(
        gateway: tuple[str, list[tuple[str, str, str | None]]], pg_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    address, seen = gateway
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", f' "{with_password(pg_url, secret("db"))}" ')
    monkeypatch.setenv("PGPASSWORD", secret("pg"))
    monkeypatch.setenv("PIP_INDEX_URL", f"https://{secret('tok')}@index.invalid/simple")
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    local = tmp_path / "l.db"
    results = tmp_path / "results.json"
    push_password = secret("push")
    pushed = collector("run-once", "--config", str(config), "--local-store", str(local),
                       "--no-confirm", "--output", str(results),
                       "--push", f"http://pusher:{push_password}@{address}/")
    assert_clean("run-once --push", pushed.stdout, pushed.stderr)
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed suite t to http://***@{address}/" in pushed.stderr
    assert "forwarded 1 run(s) to postgresql://postgres:***@" in pushed.stderr
    [(method, path, authorization)] = seen  # the credentials went as basic auth
    assert method == "PUT" and path.startswith("/metrics/job/collector/")
    assert authorization == "Basic " + base64.b64encode(
        f"pusher:{push_password}".encode()).decode()
    assert_clean("the results file", results.read_text())
    # A token alone, and a gateway that is down: a warning that shows no secret either.
    down = f"127.0.0.1:{free_port()}"
    warned = collector("run-once", "--config", str(config), "--local-store", str(local),
                       "--no-confirm", "--push", f"http://{secret('tok')}@{down}/")
    assert_clean("run-once --push (down)", warned.stdout, warned.stderr)
    assert warned.returncode == 0, warned.stderr
    assert f"warning: could not push suite t to http://***@{down}/" in warned.stderr
    assert_clean("the local store", store_dump(local))


# -- an index URL with a token: not in a worker, a manifest or a build error ------------------

_WORKER_SCRIPT = """
import json
from collector.adapters.measure import WorkerPool
from tests.integration import faults
with WorkerPool("forkserver", preload=("collector.adapters.measure.forkserver_init",)) as pool:
    out = pool.run(faults.reads_environment, None, timeout_s=300)
print(json.dumps({"payload": out.payload, "failure": out.failure and out.failure.message}))
"""


def test_a_token_index_url_never_reaches_a_worker() -> None:
    env = {**os.environ, "PIP_INDEX_URL": f"https://{secret('tok')}@index.invalid/simple",
           "PIP_EXTRA_INDEX_URL": f"https://{secret('extra')}@extra.invalid/simple"}
    done = subprocess.run([sys.executable, "-c", _WORKER_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["failure"] is None, answer["failure"]
    for place in ("environ", "proc_self", "proc_parent"):
        seen = answer["payload"][place]
        assert "PIP_INDEX_URL" not in seen and "PIP_EXTRA_INDEX_URL" not in seen, (place, seen)
        assert "PATH" in seen  # ordinary variables are kept


def test_an_index_token_stays_out_of_the_manifest_and_build_errors(tmp_path: Path) -> None:
    from collector.adapters.envs import EnvironmentBuildError, EnvironmentCache
    from collector.adapters.package_index import available_versions
    from collector.domain.errors import CollectorError
    from collector.domain.packages import parse_pins
    from tests import toy_packages

    index = toy_packages.build_toy_index(tmp_path / "index")
    token_url = f"https://{secret('idx')}@index.invalid/simple"
    # --no-index (from the toy index) wins: pip never asks the URL, but it is an argument.
    pip_args = ["--index-url", token_url, *toy_packages.pip_args(index)]
    cache = EnvironmentCache(tmp_path / "envs", pip_args=pip_args)
    built = cache.ensure(parse_pins(["slowpoke==1.0.0"]))
    manifest = (built.path / "manifest.json").read_text()
    assert "https://***@index.invalid/simple" in manifest
    assert_clean("the manifest", manifest)
    with pytest.raises(EnvironmentBuildError) as caught:
        cache.ensure(parse_pins(["slowpoke==9.9"]))
    assert_clean("a build error", str(caught.value))
    # bisect's version listing, against an index that is not there
    dead = f"http://{secret('bis')}@127.0.0.1:{free_port()}/simple"
    with pytest.raises(CollectorError) as listed:  # not listed, or no list at all
        available_versions("slowpoke", "1.0.0", "1.4.0",
                           pip_args=["--index-url", dead, "--retries", "0", "--timeout", "2"])
    assert_clean("a version list error", str(listed.value))


# -- the pieces, each alone -----------------------------------------------------------------

def test_the_environment_and_urls_give_their_secrets() -> None:
    from collector.adapters.measure.scrub import is_secret
    from collector.adapters.redact import (
        environment_secrets,
        redact,
        redact_url,
        scrub,
        split_credentials,
        url_secrets,
    )

    token = secret("tok")
    assert is_secret("PIP_INDEX_URL", f"https://{token}@index.example/simple")
    assert token in url_secrets(f"https://{token}@index.example/simple")
    assert url_secrets("postgresql://collector@db/x") == []  # a user name, not a token
    assert redact_url(f"https://{token}@index.example/simple") == \
        "https://***@index.example/simple"
    assert redact_url(f"http://u:{token}@h:9091/") == "http://***@h:9091/"
    assert split_credentials("h:9091/x?y=1") == ("http://h:9091/x?y=1", None, None)
    assert split_credentials(f"http://u:p%40{token}@h/") == ("http://h/", "u", f"p@{token}")
    assert split_credentials(f"http://{token}@h/") == ("http://h/", token, "")
    env = {"PGPASSWORD": token, "PIP_EXTRA_INDEX_URL": f"https://a:{token}x@h/s",
           "COLLECTOR_ALERTS_TOKEN_FILE": "/run/secrets/token", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    assert set(environment_secrets(env)) == {token, f"{token}x"}
    url = f"\ufeff'postgresql://u:{token}@h/db'"
    assert redact(url) == "postgresql://u:***@h/db"
    # The raw string (BOM, quotes: libpq quotes it so), escaped and percent-encoded forms.
    said = f'missing "=" after "{url}" in connection info string'
    assert scrub(said, url) == \
        'missing "=" after "postgresql://u:***@h/db" in connection info string'
    odd = f"{token}@é x"  # a password with characters every encoding changes
    odd_url = f"postgresql://u:{quote(odd, safe='')}@h/db"
    for text in (repr(odd_url), f"password {odd!r}", json.dumps({"p": odd}),
                 f"url {quote(odd, safe='')}", f"form {quote_plus(odd)}"):
        assert MARK not in scrub(text, odd_url), text
    # libpq cuts an unencoded '@' password at its first '@': the rest shows as the host.
    first, rest = secret("a"), secret("b")
    assert MARK not in scrub(f'could not translate host name "{rest}@h" to address',
                             f"postgresql://u:{first}@{rest}@h/db")
