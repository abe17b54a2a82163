"""Faults of the stores and their locks, second round: a full disk, a store reached through a
symbolic link, `run-once` beside a `serve`, a column added behind the collector's back, a
collector killed mid-run (its workers and forkserver must not outlive it), a reader that
holds the migration lock or makes TEMP tables, and role names PostgreSQL would refuse or
cut. Real processes, a real file system, real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from ruamel.yaml import YAML

from collector.adapters.locks import AlreadyServing, OwnerLock, ServeLock
from collector.adapters.store import SQLiteStore, Stores
from collector.adapters.store.migrate import Migration, load_migrations, migrate
from collector.adapters.store.outbox import RetryPolicy, forward_pending
from collector.adapters.store.postgres import PostgresStore
from collector.adapters.store.roles import create_login
from collector.domain.errors import SchemaError, StoreError, TemporaryStoreError
from tests.helpers import FAST_MEASUREMENT, ROOT, TINY_MODELS, benchmark_yaml, make_run
from tests.helpers import run_collector as collector

PASSWORD = "Rd-9f2-round-two"  # noqa: S105 - a throwaway test role's password
MIGRATION_LOCK_KEY = 0x636F6C6C
FAST_RETRY = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1)
# How soon after its collector is SIGKILLed a worker and its forkserver must be gone. They
# notice at once (a pipe reads EOF); the bound leaves room for a loaded 2-core machine.
ORPHAN_BOUND_S = 5.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def role_url(pg_url: str, name: str) -> str:
    return pg_url.replace("postgres@", f"{name}:{PASSWORD}@", 1)


def write_config(path: Path, suites: dict[str, Any]) -> Path:
    with path.open("w") as handle:
        YAML().dump({"version": 1, "suites": suites}, handle)
    return path


# -- a full file system ------------------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own: a real full file system. Mounting needs root and mount(8),
    as the suite's bootstrap does; where it cannot mount, the test fails with the reason
    (never skipped: this is the only test of a full disk)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mount_bin, umount_bin = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount_bin is None or umount_bin is None:
        pytest.fail("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run([mount_bin, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run([umount_bin, "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Write until the file system says ENOSPC (unbuffered: nothing left to flush)."""
    with (directory / "filler").open("wb", buffering=0) as handle, \
            contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
    with pytest.raises(OSError, match="No space left"), \
            (directory / "probe").open("wb", buffering=0) as probe:
        probe.write(b"x" * 8192)


@pytest.mark.parametrize("store_open_elsewhere", [True, False])
def test_run_once_on_a_full_file_system_exits_4_without_a_traceback(
        small_filesystem: Path, tmp_path: Path, store_open_elsewhere: bool) -> None:
    """Open elsewhere (a serve, a dashboard's reader), the store keeps its WAL files and
    SQLite opens it fine: the first write that fails is the run's owner lock file. Closed,
    SQLite may fail first. Either way: exit 4 and one line that says why."""
    store = small_filesystem / "collector.db"
    keeper = SQLiteStore(store)  # a store with its schema, as any earlier run leaves it
    if not store_open_elsewhere:
        keeper.close()
    fill(small_filesystem)
    config = write_config(tmp_path / "c.yml", {"s": {"benchmarks": [benchmark_yaml("bert")]}})
    try:
        proc = collector("run-once", "--config", str(config), "--local-store", str(store),
                         "--no-progress", timeout=300)
    finally:
        if store_open_elsewhere:
            with contextlib.suppress(StoreError):
                keeper.close()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 4, proc.stderr
    assert "no space left" in proc.stderr.lower() or "disk is full" in proc.stderr, (
        proc.stderr)
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line
    if store_open_elsewhere:
        assert "lock file" in proc.stderr, proc.stderr


# -- locks through symbolic links, and run-once beside serve ------------------------------------


def test_the_serve_lock_holds_through_a_symlinked_directory_and_file(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "linked-dir").symlink_to(real)
    SQLiteStore(real / "collector.db").close()
    (tmp_path / "alias.db").symlink_to(real / "collector.db")
    held = ServeLock(real / "collector.db").acquire()
    try:
        for other in (tmp_path / "linked-dir" / "collector.db", tmp_path / "alias.db"):
            with pytest.raises(AlreadyServing, match=f"pid {os.getpid()}"):
                ServeLock(other).acquire()
    finally:
        held.release()
    again = ServeLock(tmp_path / "alias.db").acquire()  # free once released
    again.release()


def test_a_journal_owner_is_seen_alive_through_a_symlink(tmp_path: Path) -> None:
    """Else a second process reaching the store by another name would take a live run's
    journal for a dead one's and store it as aborted."""
    real = tmp_path / "real.db"
    SQLiteStore(real).close()
    (tmp_path / "alias.db").symlink_to(real)
    owner = OwnerLock(real)
    other = OwnerLock(tmp_path / "alias.db")
    assert other.alive(owner.token)
    owner.close()
    assert not other.alive(owner.token)
    other.close()


def test_run_once_warns_when_a_serve_measures_on_the_same_store(tmp_path: Path) -> None:
    store = tmp_path / "collector.db"
    (tmp_path / "via").symlink_to(tmp_path)
    config = write_config(tmp_path / "c.yml", {"s": {"benchmarks": [benchmark_yaml("bert")]}})
    serving = ServeLock(store).acquire()  # what `collector serve` holds while it runs
    try:
        proc = collector("run-once", "--config", str(config), "--local-store",
                         str(tmp_path / "via" / "collector.db"), "--no-progress",
                         "--no-confirm", timeout=300)
    finally:
        serving.release()
    assert proc.returncode == 0, proc.stderr
    assert f"a `collector serve` (pid {os.getpid()})" in proc.stderr, proc.stderr
    quiet = collector("run-once", "--config", str(config), "--local-store", str(store),
                      "--no-progress", "--no-confirm", timeout=300)
    assert quiet.returncode == 0 and "collector serve" not in quiet.stderr, quiet.stderr


# -- a NOT NULL column added behind the collector's back -----------------------------------------


def test_a_foreign_not_null_column_is_named_at_start_and_quarantines_nothing(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE runs ADD COLUMN tenant text NOT NULL")
    with pytest.raises(SchemaError, match=r"runs\.tenant"):
        PostgresStore(pg_url)
    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url, retry=FAST_RETRY)
    for _ in range(2):
        stores.local.record_run(make_run())
    report = stores.sync()
    assert report is not None and not report.ok and not report.temporary
    assert (report.pending, report.quarantined) == (2, 0), report
    assert report.error is not None and "runs.tenant" in report.error
    stores.close()
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", pg_url)
    synced = collector("db", "sync", "--local-store", str(db))
    assert synced.returncode == 4 and "runs.tenant" in synced.stderr, synced.stderr
    assert "Traceback" not in synced.stderr


def test_a_not_null_column_added_while_open_stops_the_sync_instead_of_quarantining(
        pg_url: str, tmp_path: Path) -> None:
    remote = PostgresStore(pg_url)  # checked at start: fine then
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE series ADD COLUMN owner_team text NOT NULL")
    local = SQLiteStore(tmp_path / "local.db")
    runs = [make_run(), make_run()]
    for run in runs:
        local.record_run(run)
    report = forward_pending(local, lambda: remote, policy=FAST_RETRY, sleep=lambda _s: None)
    assert not report.ok and (report.pending, report.quarantined) == (2, 0), report
    assert report.error is not None and "owner_team" in report.error
    assert local.quarantined() == []
    remote.close()
    local.close()


# -- a collector killed mid-run leaves no worker or forkserver behind ----------------------------


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def forkserver_processes(pid: int) -> list[psutil.Process]:
    """The descendants of `pid` that are a forkserver or a worker forked from one."""
    found = []
    for process in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "forkserver" in " ".join(process.cmdline()):
                found.append(process)
    return found


def test_workers_and_forkserver_end_soon_after_their_collector_is_sigkilled(
        tmp_path: Path) -> None:
    # Every forward call sleeps 30 s first: a worker that writes nothing to its parent for
    # that long (a big model loading, a slow step) and so cannot notice its death by EPIPE.
    slow = benchmark_yaml("bert", "slow", model={**TINY_MODELS["bert"], "delay_ms": 30_000},
                          measurement={**FAST_MEASUREMENT, "min_duration_s": 120,
                                       "max_duration_s": 120})
    config = write_config(tmp_path / "c.yml", {"long": {"benchmarks": [slow]}})
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "collector", "run-once", "--config",
                                 str(config), "--local-store", str(tmp_path / "l.db"),
                                 "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=err)
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if len(forkserver_processes(proc.pid)) >= 2:  # the server and a worker
                break
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        time.sleep(2)  # the worker is measuring now (for two minutes, if left alone)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(forkserver_processes(proc.pid)) >= 2, [p.cmdline() for p in descendants]
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=30)
        while time.monotonic() - killed < 60 and any(alive(p) for p in descendants):
            time.sleep(0.05)
        lasted = time.monotonic() - killed
        survivors = [p.pid for p in descendants if alive(p)]
        margin = (f"{len(descendants)} descendants of the killed collector gone "
                  f"{lasted:.2f} s after SIGKILL (bound {ORPHAN_BOUND_S} s)")
        print(margin)  # noqa: T201 - the measured margin, shown with pytest -s
        assert not survivors and lasted < ORPHAN_BOUND_S, (survivors, lasted)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for process in descendants:
            with contextlib.suppress(psutil.Error):
                process.kill()


# -- what a reader can do, and `db migrate` behind a lock ---------------------------------------


@pytest.fixture
def migrated(pg_url: str) -> str:
    PostgresStore(pg_url).close()
    return pg_url


def test_a_reader_can_neither_take_advisory_locks_nor_create_temp_tables(
        migrated: str, tmp_path: Path) -> None:
    name = unique("reader")
    with psycopg.connect(migrated, autocommit=True) as conn:
        create_login(conn, name, PASSWORD)
    with psycopg.connect(role_url(migrated, name), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # still reads
        for statement, params in (("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)),
                                  ("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)),
                                  ("SELECT pg_advisory_xact_lock_shared(1, 2)", ()),
                                  ("CREATE TEMP TABLE scratch (x int)", ())):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, params)
    # The owner still migrates (its lock), and a writer still delivers runs.
    store = PostgresStore(migrated)
    assert migrate(store) == []
    store.close()
    writer = unique("writer")
    with psycopg.connect(migrated, autocommit=True) as conn:
        create_login(conn, writer, PASSWORD, kind="writer")
    local = SQLiteStore(tmp_path / "l.db")
    local.record_run(make_run())
    report = forward_pending(local, lambda: PostgresStore(role_url(migrated, writer),
                                                          schema="refuse"),
                             policy=RetryPolicy(attempts=1), sleep=lambda _s: None)
    assert report.ok and report.delivered == 1, report.error
    local.close()


def test_db_migrate_gives_up_on_a_held_lock_naming_the_holder(
        migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = psycopg.connect(migrated + "?application_name=sneaky-session", autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        (pid,) = holder.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        monkeypatch.setenv("COLLECTOR_DATABASE_URL", migrated)
        began = time.monotonic()
        proc = collector("db", "migrate", "--lock-timeout", "2", "--local-store",
                         str(tmp_path / "l.db"), timeout=60)
        took = time.monotonic() - began
    finally:
        holder.close()
    assert proc.returncode == 4, proc.stderr
    assert f"pid {pid}" in proc.stderr and "sneaky-session" in proc.stderr, proc.stderr
    assert "waiting up to 2 s" in proc.stderr  # said at once, not after the wait
    assert "Traceback" not in proc.stderr
    assert took < 30, took
    after = collector("db", "migrate", "--local-store", str(tmp_path / "l.db"),
                      timeout=60)  # released: it goes through
    assert after.returncode == 0, after.stderr


def test_a_migration_blocked_by_a_table_lock_gives_up_naming_the_session(
        migrated: str) -> None:
    reader = psycopg.connect(migrated + "?application_name=long-report")
    try:
        reader.execute("SELECT count(*) FROM runs").fetchone()  # its transaction stays open
        (pid,) = reader.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        store = PostgresStore(migrated)
        store.migration_lock_timeout_s = 1.0
        alter = Migration(99, "alter_runs", "ALTER TABLE runs ADD COLUMN extra integer;",
                          "e" * 64, None)
        began = time.monotonic()
        with pytest.raises(TemporaryStoreError) as raised:
            migrate(store, [*load_migrations("postgres"), alter])
        assert time.monotonic() - began < 20
        assert f"pid {pid}" in str(raised.value) and "long-report" in str(raised.value)
        assert 99 not in [a.version for a in store.applied_migrations()]
        store.close()
    finally:
        reader.close()


# -- role names PostgreSQL would refuse or cut ------------------------------------------------


@pytest.mark.parametrize(("name", "reason"), [
    ("", "cannot be empty"),
    ("public", "reserved"),
    ("none", "reserved"),
    ("pg_monitor2", "reserved"),
    ("collector_readonly", "group role"),
    ("r" * 64, "at most 63 bytes"),
    ("é" * 32, "at most 63 bytes"),  # 64 bytes in UTF-8
])
def test_create_reader_refuses_names_postgres_would_refuse_or_cut(
        migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
        reason: str) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", migrated)
    monkeypatch.setenv("COLLECTOR_READER_PASSWORD", PASSWORD)
    proc = collector("db", "create-reader", name, "--local-store", str(tmp_path / "l.db"))
    assert proc.returncode == 2, proc.stderr
    assert reason in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    if reason == "at most 63 bytes":  # and no role under the name the server cuts it to
        cut = name.encode()[:63].decode(errors="ignore")
        with psycopg.connect(migrated) as conn:
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s",
                                (cut,)).fetchone() == (0,)


def test_create_reader_takes_a_63_byte_name_whole(
        migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("r")[:10] + "x" * 53
    assert len(name.encode()) == 63
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", migrated)
    monkeypatch.setenv("COLLECTOR_READER_PASSWORD", PASSWORD)
    proc = collector("db", "create-reader", name, "--local-store", str(tmp_path / "l.db"))
    assert proc.returncode == 0, proc.stderr
    assert f"role {name} can now log in" in proc.stdout
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT rolname FROM pg_roles WHERE rolname = %s",
                            (name,)).fetchone() == (name,)
