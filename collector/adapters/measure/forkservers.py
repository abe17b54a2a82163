"""Forkservers of our own, beside multiprocessing's singleton: started through a wrapper
script (the valgrind one of collector/adapters/measure/valgrind.py, or a package environment's
interpreter, collector/adapters/measure/isolation.py), each known by a key in SERVERS, workers
forked from them as ServerProcess, stopped with `shutdown`. multiprocessing reads its
executable when a server or worker starts: SPAWN_LOCK is held then, and `executable`
swaps it for the moment."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing import (
    context,
    forkserver,
    popen_forkserver,
    process,
    reduction,
    resource_tracker,
    spawn,
    util,
)
from typing import Any

_STOP_GRACE_S = 10.0

# Held while any worker or server is started (multiprocessing reads its executable then);
# reentrant, since starting a valgrind worker may (re)start its server.
SPAWN_LOCK = threading.RLock()


@contextlib.contextmanager
def executable(path: str) -> Iterator[None]:
    """multiprocessing's executable set to `path` for the duration (process-global)."""
    with SPAWN_LOCK:
        previous = spawn.get_executable()
        spawn.set_executable(path)
        try:
            yield
        finally:
            spawn.set_executable(previous)


class PrivateForkServer(forkserver.ForkServer):
    """multiprocessing's ForkServer, one of our own (not the module's singleton), started
    through a wrapper script: the valgrind one, or a package environment's interpreter."""

    # CPython's private state of a ForkServer (3.10-3.14), read to stop the server and to
    # notice that it died.
    _forkserver_pid: int | None
    _forkserver_alive_fd: int | None

    def __init__(self, wrapper: str, preload: Sequence[str]) -> None:
        super().__init__()
        self._wrapper = wrapper
        self.set_forkserver_preload(list(preload))

    def ensure_running(self) -> None:
        # The resource tracker is a plain interpreter: start it (if needed) first, with the
        # normal executable, so it never ends up under valgrind.
        resource_tracker.ensure_running()
        with executable(self._wrapper):
            super().ensure_running()

    @property
    def pid(self) -> int | None:
        return self._forkserver_pid

    def stop(self) -> None:
        """Close the alive pipe (the server exits by itself), wait, then kill."""
        pid = self._forkserver_pid
        alive = self._forkserver_alive_fd
        if alive is not None:
            with contextlib.suppress(OSError):
                os.close(alive)
        if pid is not None:
            _reap(pid, _STOP_GRACE_S)
        self._forkserver_pid = None
        self._forkserver_alive_fd = None


def _reap(pid: int, grace_s: float) -> int | None:
    """Wait up to grace_s for `pid` to exit, then SIGKILL it; its wait status, if reaped."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


SERVERS: dict[str, PrivateForkServer] = {}


class _ServerPopen(popen_forkserver.Popen):
    _fds: list[int]  # set by popen_forkserver.Popen.__init__

    def __init__(self, process_obj: ServerProcess, server: PrivateForkServer) -> None:
        self._server = server
        super().__init__(process_obj)

    # popen_forkserver.Popen._launch (CPython 3.10-3.14), with this Popen's own server in
    # place of the module's singleton, which the wall-time WorkerPool uses.
    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = self._server.connect_to_new_process(self._fds)
        parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds,  # type: ignore[attr-defined]  # in CPython, not in typeshed
                                       (parent_w, self.sentinel))
        with os.fdopen(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class ServerProcess(process.BaseProcess):
    """A worker forked by one of our own forkservers (SERVERS, by key)."""

    _start_method = "forkserver"

    def __init__(self, server_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server_key = server_key

    @staticmethod
    def _Popen(process_obj: ServerProcess) -> _ServerPopen:  # multiprocessing's name
        return _ServerPopen(process_obj, SERVERS[process_obj._server_key])


def shutdown(key: str, server: PrivateForkServer) -> None:
    server.stop()
    SERVERS.pop(key, None)
