"""A server started for a serving benchmark: in its own process group on a loopback port the
collector chose, waited for with a readiness probe and a timeout, stopped and reaped after.

- The command is an argument list (never a shell) with placeholders filled in by the caller.
- The child runs in a new session (its own process group), so stopping it stops everything it
  started (uvicorn workers, compile workers); and with PR_SET_PDEATHSIG it gets SIGKILL if the
  worker that started it dies first (a worker killed at its timeout leaves no server behind).
- Its stdout and stderr go to a log file; `log_tail` gives the end of it (bounded, secrets
  scrubbed) for a failure's record.
- Readiness: GET `ready_path` answering 2xx, polled every READY_POLL_S; the wait ends early
  when the process exits, and fails after `ready_timeout_s`.

No torch here: this module only manages a process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from collector.adapters.redact import scrub

READY_POLL_S = 0.2
STOP_GRACE_S = 10.0
LOG_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1


class ServerUnavailable(Exception):
    """The server exited, or did not become ready in time; the message says which, with the
    end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ServerProcess:
    """One started server. Use as a context manager: it is stopped and reaped on exit."""

    def __init__(self, command: list[str], *, log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.command = command
        self.log_path = log_path
        log = log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True,
                preexec_fn=_die_with_parent)  # noqa: PLW1509 - only prctl, no locks taken
        except OSError as exc:
            raise ServerUnavailable(f"could not start the server ({command[0]!r}): "
                                    f"{exc.strerror or exc}") from None
        finally:
            log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, url: str, timeout_s: float) -> float:
        """Seconds until `url` answered 2xx; ServerUnavailable if the process exits first or
        the time runs out."""
        start = time.monotonic()
        deadline = start + timeout_s
        last = "no answer yet"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerUnavailable(
                    f"the server exited with {_exit_text(code)} before it was ready "
                    f"(waited {time.monotonic() - start:.1f} s)")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our URL
                    if 200 <= answer.status < 300:
                        return time.monotonic() - start
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise ServerUnavailable(f"the server was not ready after {timeout_s:g} s "
                                        f"(GET {url}: {last})")
            time.sleep(READY_POLL_S)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM to the process group, SIGKILL after STOP_GRACE_S; reaped. Its exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE_S)
        # Whatever is left of the group (the leader may be gone, its children not).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        """The end of the server's log, secrets scrubbed ('' when it wrote nothing)."""
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(size - limit, 0))
                data = log.read(limit)
        except OSError:
            return ""
        return scrub(data.decode("utf-8", "replace")).strip()

    def cpu_seconds(self) -> float:
        """CPU time of the server's process tree so far (its own and its children's)."""
        return process_tree_cpu_seconds(self.proc.pid)


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of a process and its descendants (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
