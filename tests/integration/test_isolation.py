"""Every way a worker can end, through the real process isolation."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.measure import WorkerPool
from collector.domain.model import FailureKind
from tests.integration import faults


def test_result_and_progress_come_back(pool: WorkerPool) -> None:
    seen: list[dict[str, Any]] = []
    outcome = pool.run(faults.ok, {"x": 1}, timeout_s=60, on_progress=seen.append)
    assert outcome.failure is None
    assert outcome.payload is not None
    assert outcome.payload["echo"] == {"x": 1}
    assert outcome.payload["pid"] != os.getpid()
    assert seen == [{"phase": "measuring", "iterations": 1}]


def test_each_benchmark_gets_a_fresh_process(pool: WorkerPool) -> None:
    pids = {pool.run(faults.ok, None, timeout_s=60).payload["pid"]  # type: ignore[index]
            for _ in range(3)}
    assert len(pids) == 3


def test_forkserver_workers_start_with_torch_already_imported(pool: WorkerPool) -> None:
    outcome = pool.run(faults.imports_torch, None, timeout_s=60)
    assert outcome.payload == {"torch_preloaded": True}


def test_exception_keeps_type_message_and_traceback_tail(pool: WorkerPool) -> None:
    outcome = pool.run(faults.raises, None, timeout_s=60)
    failure = outcome.failure
    assert failure is not None
    assert failure.kind is FailureKind.EXCEPTION
    assert failure.exception_type == "ValueError"
    assert failure.message == "boom from the worker"
    assert failure.traceback_tail is not None
    assert "_deep_failure" in failure.traceback_tail
    assert failure.traceback_tail.rstrip().endswith("ValueError: boom from the worker")


def test_segfault_is_a_crash_with_the_signal(pool: WorkerPool) -> None:
    outcome = pool.run(faults.segfault, None, timeout_s=60)
    assert outcome.failure is not None
    assert outcome.failure.kind is FailureKind.CRASH
    assert outcome.failure.signal == "SIGSEGV"
    assert "SIGSEGV" in outcome.failure.message


def test_nonzero_exit_without_result_is_a_crash(pool: WorkerPool) -> None:
    outcome = pool.run(faults.exits, None, timeout_s=60)
    assert outcome.failure is not None
    assert outcome.failure.kind is FailureKind.CRASH
    assert outcome.failure.exit_code == 3


def test_hang_past_the_timeout_is_killed(pool: WorkerPool) -> None:
    start = time.monotonic()
    outcome = pool.run(faults.hangs, None, timeout_s=1.5)
    assert outcome.failure is not None
    assert outcome.failure.kind is FailureKind.TIMEOUT
    assert "1.5 s" in outcome.failure.message
    assert 1.5 <= time.monotonic() - start < 15


def test_timeout_kills_the_workers_helpers_too(pool: WorkerPool, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    outcome = pool.run(faults.hangs_with_child, {"pidfile": str(pidfile)}, timeout_s=3)
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.TIMEOUT
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        # A zombie still answers kill(0) until its parent reaps it; check its state.
        stat = Path(f"/proc/{child}/stat")
        if not stat.exists() or stat.read_text().split(")")[1].split()[0] == "Z":
            return
        time.sleep(0.1)
    pytest.fail(f"helper process {child} outlived the killed worker")


def test_memory_limit_is_enforced_as_out_of_memory(pool: WorkerPool) -> None:
    outcome = pool.run(faults.allocates, None, timeout_s=60, memory_limit_bytes=800 * 2**20)
    assert outcome.failure is not None
    assert outcome.failure.kind is FailureKind.OUT_OF_MEMORY
    assert "over its memory limit of 800 MiB" in outcome.failure.message


def test_memory_error_is_out_of_memory(pool: WorkerPool) -> None:
    outcome = pool.run(faults.memory_error, None, timeout_s=60)
    assert outcome.failure is not None
    assert outcome.failure.kind is FailureKind.OUT_OF_MEMORY
    assert outcome.failure.exception_type == "MemoryError"


def test_sigkill_from_outside_is_reported_as_likely_oom_killer(pool: WorkerPool) -> None:
    outcome = pool.run(faults.killed, None, timeout_s=60)
    assert outcome.failure is not None
    assert outcome.failure.kind is FailureKind.OUT_OF_MEMORY
    assert outcome.failure.signal == "SIGKILL"
    assert "out-of-memory killer" in outcome.failure.message


def test_pool_keeps_working_after_failures(pool: WorkerPool) -> None:
    for target in (faults.segfault, faults.raises, faults.killed):
        pool.run(target, None, timeout_s=60)
    outcome = pool.run(faults.ok, "still fine", timeout_s=60)
    assert outcome.payload is not None and outcome.payload["echo"] == "still fine"


def test_spawn_isolation_works_too() -> None:
    outcome = WorkerPool("spawn").run(faults.raises, None, timeout_s=120)
    assert outcome.failure is not None
    assert outcome.failure.message == "boom from the worker"


def test_unknown_start_method_is_refused() -> None:
    with pytest.raises(ValueError, match="forkserver"):
        WorkerPool("fork")
