"""Parent side of benchmark isolation: one fresh worker process per benchmark.

Workers are forked from a multiprocessing *forkserver* that has imported torch and
transformers once (but never ran a kernel, touched CUDA or started a thread pool). Each
benchmark still gets a fresh process with its own address space, threads, allocator and CUDA
context; what it shares with its siblings is only the read-only state of those imports. This
cuts the fixed cost per benchmark from seconds (importing torch) to a fork. `spawn` (a brand
new interpreter per benchmark) is available for users who want no shared state at all.

The parent waits on the worker's pipe and its exit sentinel with a timeout (no busy loop),
enforces the hard timeout and the optional memory limit, and turns every way a worker can end
into either a result payload or a Failure.

Measurement mode `instructions` runs workers under valgrind: `run(..., under_valgrind=True)`
forks them from a second forkserver that itself runs under valgrind (collector/adapters/measure/
valgrind.py), created on the first such run; everything on this side of the pipe is the same.

Workers are untrusted: what they send is length-prefixed JSON, read from the pipe's raw
descriptor under the benchmark's deadline, bounded in size and validated before use
(collector/adapters/measure/protocol.py); a message that breaks the protocol is that benchmark's
failure. They start without the collector's secrets in their environment
(collector/adapters/measure/scrub.py).

A pool with its own interpreter (`WorkerPool(..., python=ENV_PYTHON)`, a package environment
of collector/adapters/envs.py) runs every worker in that interpreter. multiprocessing's forkserver
is one per process, so such a pool starts its OWN forkserver (the same private-server machinery
as the valgrind one), stopped by close(); in spawn mode each worker is exec'd from that
interpreter. Either way multiprocessing would hand the child this process's sys.path (its
"preparation data"), which would put the base's packages before the environment's pins:
while such a pool starts a process, the child's sys.path is the environment's own, followed
by whatever of this process's path it lacks (`_child_sys_path`).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import spawn
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from pathlib import Path
from typing import Any, cast

from collector.adapters.measure import protocol, scrub
from collector.adapters.measure.forkservers import (
    SERVERS,
    SPAWN_LOCK,
    PrivateForkServer,
    ServerProcess,
    executable,
    shutdown,
)
from collector.adapters.measure.protocol import FrameReader, ProtocolError
from collector.adapters.measure.valgrind import ValgrindLauncher
from collector.domain.model import Failure, FailureKind

# Imported once by the forkserver, then shared copy-on-write by every worker.
DEFAULT_PRELOAD = (
    "collector.adapters.measure.forkserver_init",
    "collector.adapters.measure.quiet_imports",
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.generation.utils",
    "transformers.models.auto.modeling_auto",
    "collector.adapters.measure.worker",
)
TRACEBACK_TAIL_LINES = 25
_MEMORY_POLL_S = 0.1
_EXIT_GRACE_S = 10.0
_SYS_PATH_TIMEOUT_S = 120.0

Target = Callable[[Connection, Any], None]
ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class WorkerOutcome:
    """A worker's result payload, or the reason it has none."""

    payload: dict[str, Any] | None
    failure: Failure | None
    wall_s: float


class WorkerFailure(Exception):
    """Raised by worker code to report a failure of a specific kind with a clean message."""

    def __init__(self, kind: FailureKind, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        # What the result keeps beside the message (a server's log tail), in traceback_tail.
        self.detail = detail


def _failure_kind(exc: BaseException) -> FailureKind:
    if isinstance(exc, WorkerFailure):
        return exc.kind
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return FailureKind.OUT_OF_MEMORY
    return FailureKind.EXCEPTION


def _exit_with_parent() -> None:
    """In the worker: end at once, with its process group, when the collector that started
    it is gone (SIGKILL, the OOM killer: nothing of it ran to stop the worker). Nobody would
    read the result, the measurement would load the CPU under the next collector's, and
    the forkserver lives as long as any worker does (each holds its alive pipe).
    multiprocessing's parent sentinel, a pipe only the parent holds open, reads EOF then."""
    parent = multiprocessing.parent_process()
    try:
        sentinel = parent.sentinel if parent is not None else None
    except ValueError:
        sentinel = None
    if sentinel is None:
        return

    def watch() -> None:
        try:
            while True:
                wait([sentinel])
                if not os.read(sentinel, 1):  # EOF: the parent is gone
                    break
        except (OSError, ValueError):  # no sentinel to watch after all: never kill then
            return
        if os.getpgrp() == os.getpid():  # our own group (setpgid above): helpers too
            with contextlib.suppress(OSError):
                os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="collector-parent-watch", daemon=True).start()


def _child_main(conn: Connection, target: Target, payload: Any) -> None:
    """Runs in the worker: own process group (so a timeout kills its helpers too), deaf to
    SIGTERM/SIGINT/SIGHUP (a service manager or a closed terminal signalling the whole group
    must not cut a measurement short: the parent decides, within its grace period, and kills
    with SIGKILL), then the target; any exception is sent back with its traceback tail."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _exit_with_parent()
    scrub.scrub()  # what the wrapper could not unset (collector/adapters/measure/scrub.py)
    try:
        target(conn, payload)
    except BaseException as exc:
        # A WorkerFailure is a diagnosis already (a missing runtime, an impossible task):
        # its message says it all, and our own frames would only be noise in the results.
        tail = exc.detail if isinstance(exc, WorkerFailure) else "\n".join(
            "".join(traceback.format_exception(exc)).splitlines()[-TRACEBACK_TAIL_LINES:])
        with contextlib.suppress(Exception):
            protocol.send(conn, "error", {
                "kind": _failure_kind(exc).value,
                "type": type(exc).__name__,
                "message": str(exc) or type(exc).__name__,
                "traceback_tail": tail,
            })
    finally:
        conn.close()


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    except psutil.Error:
        return 0
    return int(total)


class WorkerPool:
    """Starts one isolated worker per benchmark. Use as a context manager or call close()."""

    def __init__(self, start_method: str = "forkserver",
                 preload: Sequence[str] = DEFAULT_PRELOAD, *,
                 python: str | None = None,
                 valgrind: str | None = None,
                 max_message_bytes: int = protocol.MAX_MESSAGE_BYTES) -> None:
        """`python`: the interpreter workers run in (a package environment's; default this
        one); with forkserver, the pool then has its own forkserver running it.
        `valgrind`: the binary for instructions mode (default: $COLLECTOR_VALGRIND, else
        `valgrind` on PATH); looked up only when an instructions-mode benchmark runs.
        `max_message_bytes`: the largest message a worker may send (see protocol.py)."""
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method must be 'forkserver' or 'spawn', got {start_method!r}")
        self.start_method = start_method
        self._ctx = cast("ForkServerContext | SpawnContext",
                         multiprocessing.get_context(start_method))
        self._preload = tuple(preload)
        self._max_message_bytes = max_message_bytes
        with SPAWN_LOCK:  # never a wrapper that another thread has swapped in
            current = os.fsdecode(spawn.get_executable())
        # This interpreter named explicitly is no other interpreter: the shared forkserver.
        self._own_python = python is not None and (
            Path(python).absolute() != Path(current).absolute())
        self._python = python if python is not None and self._own_python else current
        if start_method == "forkserver" and not self._own_python:
            self._ctx.set_forkserver_preload(list(preload))
        self._sys_path: tuple[str, ...] | None = None  # the own interpreter's, once asked
        self._server_key: str | None = None  # the own forkserver's key in SERVERS
        self._server_stopper: weakref.finalize[Any, Any] | None = None
        self._wrapper: tuple[Path, str] | None = None  # the scrubbing wrapper and its text
        self._valgrind_binary = valgrind
        self._valgrind: ValgrindLauncher | None = None
        self._valgrind_lock = threading.Lock()

    @property
    def python(self) -> str:
        """The interpreter this pool's workers run in."""
        return self._python

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the valgrind forkserver if instructions mode started one, and the pool's own
        forkserver if it has its own interpreter (the shared forkserver exits with this
        process)."""
        with self._valgrind_lock:
            launcher, self._valgrind = self._valgrind, None
        if launcher is not None:
            launcher.close()
        with SPAWN_LOCK:
            stopper, self._server_stopper = self._server_stopper, None
            self._server_key = None
        if stopper is not None:
            stopper()  # stops the pool's own server and forgets it, once
        with SPAWN_LOCK:
            wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            shutil.rmtree(wrapper[0].parent, ignore_errors=True)

    def _launcher(self) -> ValgrindLauncher:
        with self._valgrind_lock:
            if self._valgrind is None:
                self._valgrind = ValgrindLauncher(self._preload, valgrind=self._valgrind_binary,
                                                  python=self._python)
            return self._valgrind

    def _clean_interpreter(self) -> str:
        """The interpreter workers (spawn) or their forkserver start from: a wrapper that
        unsets the secrets of the environment as it is now (called under SPAWN_LOCK)."""
        text = scrub.wrapper_script(self._python, scrub.secret_names())
        if self._wrapper is None:
            folder = Path(tempfile.mkdtemp(prefix="collector-workers-"))
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            self._wrapper = (folder / "python-without-secrets", "")
        path, written = self._wrapper
        if text != written:
            partial = path.with_name(path.name + ".new")
            partial.write_text(text)
            partial.chmod(0o700)
            partial.replace(path)  # never a half-written script for a concurrent exec
            self._wrapper = (path, text)
        return str(path)

    def _own_server(self) -> str:
        """The key of this pool's own forkserver (created on first use, started by the
        first worker through the scrubbing wrapper; called under SPAWN_LOCK)."""
        with SPAWN_LOCK:
            if self._server_key is None:
                key = f"pool-{uuid.uuid4().hex}"
                # The wrapper's path never changes (its text may): the server re-execs it.
                server = PrivateForkServer(self._clean_interpreter(), self._preload)
                SERVERS[key] = server
                self._server_stopper = weakref.finalize(self, shutdown, key, server)
                self._server_key = key
            return self._server_key

    def _child_path(self) -> tuple[str, ...] | None:
        """The own interpreter's sys.path (asked once), or None for this interpreter."""
        if not self._own_python:
            return None
        if self._sys_path is None:
            self._sys_path = _interpreter_sys_path(self._python)
        return self._sys_path

    def run(self, target: Target, payload: Any, *, timeout_s: float,
            memory_limit_bytes: int | None = None,
            on_progress: ProgressCallback | None = None,
            kill: threading.Event | None = None,
            under_valgrind: bool = False) -> WorkerOutcome:
        """Run `target(conn, payload)` in a fresh worker process; under valgrind's callgrind
        when `under_valgrind` (its forkserver's start-up is not part of `timeout_s`)."""
        launcher: ValgrindLauncher | None = None
        started = time.monotonic()
        try:
            child_path = self._child_path()
        except _InterpreterUnavailable as exc:
            return WorkerOutcome(None, Failure(kind=FailureKind.ENVIRONMENT_UNAVAILABLE,
                                               message=str(exc)), time.monotonic() - started)
        if under_valgrind:
            launcher = self._launcher()
            with _child_sys_path(child_path):
                failure = launcher.ensure_ready(kill)
            if failure is not None:
                return WorkerOutcome(None, failure, 0.0)
        started = time.monotonic()
        reader, writer = self._ctx.Pipe(duplex=False)
        args = (writer, target, payload)
        proc: multiprocessing.process.BaseProcess
        if launcher is not None:
            proc = launcher.process(_child_main, args)
        elif self._own_python and self.start_method == "forkserver":
            proc = ServerProcess(self._own_server(), target=_child_main, args=args,
                                   daemon=True, name="collector-worker")
        else:
            proc = self._ctx.Process(target=_child_main, args=args, daemon=True,
                                     name="collector-worker")
        try:
            with SPAWN_LOCK, _child_sys_path(child_path):
                if launcher is not None:  # its forkserver's wrapper unsets the secrets
                    proc.start()
                else:  # where an interpreter is exec'd (forkserver, spawn), it has none
                    with executable(self._clean_interpreter()):
                        proc.start()
        except (OSError, EOFError) as exc:  # the forkserver died or refused the connection
            reader.close()
            writer.close()
            return WorkerOutcome(None, Failure(kind=FailureKind.CRASH, message=(
                f"could not start a worker: {type(exc).__name__}: {exc}")),
                time.monotonic() - started)
        writer.close()
        outcome = self._wait(proc, reader, started, timeout_s=timeout_s,
                             memory_limit_bytes=memory_limit_bytes, on_progress=on_progress,
                             kill=kill)
        if launcher is not None:
            log = launcher.release(proc.pid)
            failure = outcome.failure
            if failure is not None and failure.traceback_tail is None and log:
                outcome = WorkerOutcome(None, failure.model_copy(
                    update={"traceback_tail": "valgrind log:\n" + log}), outcome.wall_s)
        return outcome

    def _wait(self, proc: multiprocessing.process.BaseProcess,
              reader: Connection, started: float, *, timeout_s: float,
              memory_limit_bytes: int | None, on_progress: ProgressCallback | None,
              kill: threading.Event | None) -> WorkerOutcome:
        deadline = started + timeout_s
        frames = FrameReader(reader.fileno(), self._max_message_bytes)
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        broken: str | None = None  # how the worker broke the protocol
        killed_for: Failure | None = None
        closed = False
        try:
            while result is None and error is None and broken is None:
                remaining = deadline - time.monotonic()
                killed_for = _reason_to_kill(proc, remaining, timeout_s, kill,
                                             memory_limit_bytes)
                if killed_for is not None:
                    break
                polling = memory_limit_bytes or kill is not None
                step = min(remaining, _MEMORY_POLL_S) if polling else remaining
                # The raw descriptor, never Connection.recv: a read only when data is there,
                # so a message that stops half-way cannot hold the parent past the deadline.
                ready = wait([reader.fileno(), proc.sentinel], timeout=step)
                if reader.fileno() in ready:
                    try:
                        final = _receive(frames, on_progress)
                    except (EOFError, OSError):
                        # Pipe closed without a result: the exit code tells why.
                        closed = True
                        proc.join(_EXIT_GRACE_S)
                        break
                    except ProtocolError as exc:
                        broken = str(exc)
                        break
                    if final is not None:
                        kind, body = final
                        result, error = (body, None) if kind == "result" else (None, body)
                elif proc.sentinel in ready:
                    break
        finally:
            if killed_for is not None or broken is not None or (
                    result is None and error is None and proc.is_alive()):
                self._kill(proc)
            proc.join(_EXIT_GRACE_S)
            if proc.is_alive():
                self._kill(proc)
                proc.join()
            reader.close()
        wall = time.monotonic() - started
        if result is not None:
            return WorkerOutcome(result, None, wall)
        return WorkerOutcome(None, _failure(proc.exitcode, error=error, broken=broken,
                                            killed_for=killed_for, partial=frames.partial(),
                                            closed=closed), wall)

    @staticmethod
    def _kill(proc: multiprocessing.process.BaseProcess) -> None:
        if proc.pid is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(Exception):
                proc.kill()


class _InterpreterUnavailable(Exception):
    """A pool's own interpreter does not run."""


def _interpreter_sys_path(python: str) -> tuple[str, ...]:
    """`python`'s own sys.path (without the script directory)."""
    command = [python, "-c", "import json, sys; print(json.dumps(sys.path))"]
    # Without the secrets: the environment's .pth files (its packages') run at start-up.
    clean = {k: v for k, v in os.environ.items() if not scrub.is_secret(k, v)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=clean,
                              timeout=_SYS_PATH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _InterpreterUnavailable(
            f"the worker interpreter {python} does not run: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise _InterpreterUnavailable(
            f"the worker interpreter {python} does not run (exit status "
            f"{done.returncode}: {tail})")
    return tuple(p for p in json.loads(done.stdout) if p)


_CHILD_PATH = threading.local()  # the sys.path children started by this thread get


def _prepared(original: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    def prepared(name: str) -> dict[str, Any]:
        data = original(name)
        path: tuple[str, ...] | None = getattr(_CHILD_PATH, "value", None)
        if path is not None and "sys_path" in data:
            data["sys_path"] = [*path, *(p for p in data["sys_path"] if p not in path)]
        return data

    prepared.collector_child_path = True  # type: ignore[attr-defined]  # marks the hook
    return prepared


@contextlib.contextmanager
def _child_sys_path(path: tuple[str, ...] | None) -> Iterator[None]:
    """Children (and forkservers) this thread starts meanwhile get `path` first in their
    sys.path instead of this process's. multiprocessing reads the path through
    spawn.get_preparation_data in the starting thread; the hook installed there once
    changes nothing for a thread that set no path."""
    if path is None:
        yield
        return
    with SPAWN_LOCK:
        if not getattr(spawn.get_preparation_data, "collector_child_path", False):
            spawn.get_preparation_data = _prepared(  # type: ignore[assignment]  # our hook wraps the function it replaces, same signature
                spawn.get_preparation_data)
    previous = getattr(_CHILD_PATH, "value", None)
    _CHILD_PATH.value = path
    try:
        yield
    finally:
        _CHILD_PATH.value = previous


def _failure(exitcode: int | None, *, error: dict[str, Any] | None, broken: str | None,
             killed_for: Failure | None, partial: str | None, closed: bool) -> Failure:
    """Why a worker ended without a result, from what the wait loop saw."""
    if broken is None and error is not None:
        try:
            return protocol.error_failure(error, exitcode)
        except ProtocolError as exc:
            broken = str(exc)
    if broken is not None:
        return protocol.protocol_failure(broken)
    if killed_for is not None:
        if partial is not None and killed_for.kind is FailureKind.TIMEOUT:
            return killed_for.model_copy(update={"message": (
                f"{killed_for.message} (it had sent {partial} and stalled)")})
        return killed_for
    if closed and partial is not None and exitcode == 0:
        return protocol.protocol_failure(f"the worker exited after sending only {partial}")
    return _exit_failure(exitcode)


def _receive(frames: FrameReader, on_progress: ProgressCallback | None,
             ) -> tuple[str, dict[str, Any]] | None:
    """Read what the pipe holds, hand progress on; the first result or error message, if
    one came. EOFError when the pipe is closed, ProtocolError for a bad message."""
    for frame in frames.read():
        kind, body = protocol.decode(frame)
        if kind != "progress":
            return kind, body
        if on_progress is not None:
            on_progress(body)
    return None


def _reason_to_kill(proc: multiprocessing.process.BaseProcess, remaining: float,
                    timeout_s: float, kill: threading.Event | None,
                    memory_limit_bytes: int | None) -> Failure | None:
    """Why the parent must kill the worker now, if it must: timeout, shutdown, memory."""
    if remaining <= 0:
        return Failure(kind=FailureKind.TIMEOUT, message=(
            f"benchmark did not finish within its timeout of {timeout_s:g} s; worker killed"))
    if kill is not None and kill.is_set():
        return Failure(kind=FailureKind.ABORTED, message=(
            "the collector is shutting down and the grace period is over; worker killed"))
    if memory_limit_bytes and proc.pid is not None:
        rss = _tree_rss(proc.pid)
        if rss > memory_limit_bytes:
            return Failure(kind=FailureKind.OUT_OF_MEMORY, message=(
                f"worker used {rss / 2**20:.0f} MiB, over its memory limit of "
                f"{memory_limit_bytes / 2**20:.0f} MiB; worker killed"))
    return None


def _exit_failure(exitcode: int | None) -> Failure:
    if exitcode is not None and exitcode < 0:
        signum = -exitcode
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        if signum == signal.SIGKILL:
            return Failure(kind=FailureKind.OUT_OF_MEMORY, signal=name, exit_code=exitcode,
                           message="worker was killed by SIGKILL without a result; most likely "
                                   "the kernel's out-of-memory killer")
        return Failure(kind=FailureKind.CRASH, signal=name, exit_code=exitcode,
                       message=f"worker crashed: killed by {name}")
    return Failure(kind=FailureKind.CRASH, exit_code=exitcode,
                   message=f"worker exited with status {exitcode} without a result")
