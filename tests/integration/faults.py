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


def ok(conn: Connection, payload: Any) -> None:
    conn.send(("progress", {"phase": "measuring", "iterations": 1}))
    conn.send(("result", {"echo": payload, "pid": os.getpid()}))


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
    conn.send(("result", {"torch_preloaded": "torch" in sys.modules}))
