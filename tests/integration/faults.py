"""Worker targets that fail in each way a real benchmark can. Module-level so that worker
processes can import them by reference."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from collector.adapters.measure.protocol import send


def ok(conn: Connection, payload: Any) -> None:
    send(conn, "progress", {"phase": "measuring", "iterations": 1})
    send(conn, "result", {"echo": payload, "pid": os.getpid()})


def _deep_failure(depth: int) -> None:
    if depth == 0:
        raise ValueError("boom from the worker")
    _deep_failure(depth - 1)


def raises(conn: Connection, payload: Any) -> None:
    _deep_failure(3)


def segfault(conn: Connection, payload: Any) -> None:
    ctypes.string_at(0)


def hangs(conn: Connection, payload: Any) -> None:
    time.sleep(3600)


def hangs_with_child(conn: Connection, payload: Any) -> None:
    """A helper process (like Inductor's compile workers) that must die with the worker."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open(payload["pidfile"], "w") as handle:  # noqa: PTH123 - plain file write
        handle.write(str(child.pid))
    time.sleep(3600)


def allocates(conn: Connection, payload: Any) -> None:
    chunks = []
    while True:
        chunks.append(bytearray(32 * 2**20))  # zero-filled: the pages are touched
        time.sleep(0.01)


def memory_error(conn: Connection, payload: Any) -> None:
    raise MemoryError


def killed(conn: Connection, payload: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exits(conn: Connection, payload: Any) -> None:
    os._exit(3)


def imports_torch(conn: Connection, payload: Any) -> None:
    send(conn, "result", {"torch_preloaded": "torch" in sys.modules})


# ---------------------------------------------------------------------------------------------
# Hostile workers: what model code could send the parent instead of a result.


class _CreatesFile:
    """Unpickling this calls open(path, "w"): code of the worker's choosing, in the parent."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def sends_malicious_pickle(conn: Connection, payload: Any) -> None:
    conn.send(("result", _CreatesFile(payload["path"])))  # the old, pickled protocol


def sends_raw(conn: Connection, payload: Any) -> None:
    """Write payload['data'] to the pipe as it is, then sleep payload['sleep_s'] (a stall)."""
    view = memoryview(payload["data"])
    while view:
        view = view[os.write(conn.fileno(), view):]
    time.sleep(payload.get("sleep_s", 0))


def sends_result(conn: Connection, payload: Any) -> None:
    send(conn, "result", payload)


def reads_environment(conn: Connection, payload: Any) -> None:
    """The variable names this worker can see: in os.environ, in its own exec-time
    environment and in that of its parent (the forkserver, where there is one)."""

    def names(path: str) -> list[str]:
        with open(path, "rb") as handle:  # noqa: PTH123 - plain file read
            entries = handle.read().split(b"\0")
        return sorted(e.split(b"=", 1)[0].decode() for e in entries if e)

    send(conn, "result", {"environ": sorted(os.environ), "proc_self": names("/proc/self/environ"),
                          "proc_parent": names(f"/proc/{os.getppid()}/environ")})


def per_benchmark(conn: Connection, payload: Any) -> None:
    """A benchmark target for run_once: benchmark 'bad' sends an empty result body, any other
    a valid one."""
    if payload["spec"]["name"] == "bad":
        send(conn, "result", {})
        return
    send(conn, "result", {
        "resolved_task": "text-classification",
        "metrics": {"latency_p50_seconds": 0.01},
        "samples": {"latency_seconds": [0.01, 0.011, 0.009]},
        "measurement": {"iterations": 3, "warmup_iterations": 0, "duration_s": 0.03,
                        "target_rel_ci": 0.01, "achieved_rel_ci": None, "converged": True,
                        "stop_reason": "converged"},
        "noise": {"wall_s": 0.03, "self_cpu_s": 0.03, "other_cpu_s": 0.0,
                  "other_cpu_fraction": 0.0},
        "environment": {"torch_threads": 1},
    })
