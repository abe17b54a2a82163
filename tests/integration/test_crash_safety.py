"""A killed collector loses no finished result, and a wall clock stepped back loses no run:
real worker processes, a real SQLite store, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.adapters.locks import OwnerLock
from collector.adapters.store import SQLiteStore, Stores
from collector.usecases.bench import RunClock
from collector.usecases.cycle import run_once
from collector.usecases.journal import CRASH_MESSAGE, _header, recover_crashed_runs
from tests.helpers import FAST_MEASUREMENT, benchmark_yaml, make_run

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def journal_a_run(store: SQLiteStore, owner: str, run_id: str = "a" * 32) -> None:
    """A run as a collector journals it: bert finished, vit started and never finished."""
    done = make_run(when=T0, models=("bert", "vit"))
    bert, vit = done.results
    store.journal_begin(run_id, owner, _header("s", bert.environment, T0, "scheduled"), T0)
    store.journal_entry(run_id, 0, 0, "started", bert.spec.model_dump_json())
    store.journal_entry(run_id, 1, 0, "finished", bert.model_dump_json())
    store.journal_entry(run_id, 2, 1, "started", vit.spec.model_dump_json())


def test_a_dead_process_journal_becomes_an_aborted_run(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    journal_a_run(store, owner="0" * 32)  # no lock file: its process is gone
    (run,) = recover_crashed_runs(store)
    assert run.run_id == "a" * 32 and run.status == "aborted"
    ok, crashed = run.results
    assert ok.spec.name == "bert" and ok.status == "ok"
    assert crashed.spec.name == "vit" and crashed.status == "failed"
    assert crashed.failure is not None and crashed.failure.message == CRASH_MESSAGE
    assert rows(store.path, "SELECT status FROM runs") == [("aborted",)]
    assert store.pending_count() == 1  # forwarded like any run
    assert store.open_journals() == []
    assert recover_crashed_runs(store) == []  # never twice
    assert rows(store.path, "SELECT count(*) FROM runs") == [(1,)]
    store.close()


def test_a_live_process_journal_is_left_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    other = OwnerLock(store.path)  # another live owner (its own lock file, held)
    journal_a_run(store, owner=other.token)
    assert recover_crashed_runs(store) == []
    assert len(store.open_journals()) == 1
    other.close()  # the process "dies": now the journal is recovered
    assert [r.status for r in recover_crashed_runs(store)] == ["aborted"]
    store.close()


def test_a_journal_already_stored_is_only_closed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    journal_a_run(store, owner="1" * 32)
    store.record_run(make_run(when=T0, run_id="a" * 32))  # stored, then killed
    assert recover_crashed_runs(store) == []
    assert store.open_journals() == []
    assert rows(store.path, "SELECT count(*) FROM runs") == [(1,)]
    store.close()


def write_config(path: Path, suites: dict[str, Any]) -> Path:
    with path.open("w") as handle:
        YAML().dump({"version": 1, "suites": suites}, handle)
    return path


def test_sigkilled_run_once_loses_no_finished_benchmark(tmp_path: Path) -> None:
    slow = benchmark_yaml("bert", "slow", batch_size=2, measurement={
        **FAST_MEASUREMENT, "min_duration_s": 60, "max_duration_s": 60})
    config = write_config(tmp_path / "c.yml", {
        "long": {"benchmarks": [benchmark_yaml("bert", "quick"), slow]},
        "other": {"benchmarks": [benchmark_yaml("vit")]}})
    local = tmp_path / "l.db"
    proc = subprocess.Popen([sys.executable, "-m", "collector", "run-once", "--config",
                             str(config), "--suite", "long", "--local-store", str(local)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:  # the slow benchmark has started once quick's result is journalled
            started = rows(local, "SELECT count(*) FROM run_journal_entries "
                                  "WHERE position = 1 AND kind = 'started'")
        except sqlite3.Error:
            started = [(0,)]
        if started == [(1,)]:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    time.sleep(1)
    os.kill(proc.pid, signal.SIGKILL)  # no handler, no finally: as the OOM killer does
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    again = subprocess.run([sys.executable, "-m", "collector", "run-once", "--config",
                            str(config), "--suite", "other", "--local-store", str(local)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert "was in progress when its collector died" in again.stderr
    assert dict(rows(local, "SELECT suite, status FROM runs")) == {"long": "aborted",
                                                                   "other": "ok"}
    results = rows(local, "SELECT s.name, r.status, f.kind, f.message FROM results r "
                          "JOIN series s USING (series_id) JOIN runs USING (run_id) "
                          "LEFT JOIN failures f USING (run_id, series_id) "
                          "WHERE runs.suite = 'long' ORDER BY s.name")
    assert results == [("quick", "ok", None, None),
                       ("slow", "failed", "aborted", CRASH_MESSAGE)]
    assert rows(local, "SELECT count(*) FROM run_journal") == [(0,)]


class SteppingBack(datetime):
    """A wall clock that jumps an hour back at every reading (a bad NTP step, a VM restore)."""

    calls = 0

    @classmethod
    def now(cls, tz: Any = None) -> SteppingBack:
        cls.calls += 1
        value = T0 - timedelta(hours=cls.calls)
        return cls.fromtimestamp(value.timestamp(), tz or timezone.utc)


def test_a_wall_clock_stepped_back_loses_no_run(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.adapters.measure
    import collector.usecases.bench

    monkeypatch.setattr(collector.adapters.measure, "datetime", SteppingBack)
    monkeypatch.setattr(collector.usecases.bench, "_now", lambda: SteppingBack.now(timezone.utc))
    config = load_config(write_config(tmp_path / "c.yml", {"s": {"benchmarks": [
        benchmark_yaml("bert"), benchmark_yaml("bert", "second", batch_size=2)]}}))
    stores = Stores.open(tmp_path / "l.db", None)
    try:
        outcome = run_once(config, stores=stores, confirm=False)
    finally:
        stores.close()
    (run,) = outcome.runs
    assert outcome.store_error is None
    assert run.status == "ok" and run.finished_at >= run.started_at
    for result in run.results:
        assert result.started_at >= run.started_at
        assert result.finished_at >= result.started_at
    assert rows(tmp_path / "l.db", "SELECT status FROM runs") == [("ok",)]


def test_run_clock_is_monotonic() -> None:
    ticks = iter([10.0, 10.5, 12.0])
    walls = iter([T0, T0 - timedelta(hours=5)])
    clock = RunClock(wall=lambda: next(walls), monotonic=lambda: next(ticks))
    assert clock() == T0 + timedelta(seconds=0.5)
    assert clock() == T0 + timedelta(seconds=2)
