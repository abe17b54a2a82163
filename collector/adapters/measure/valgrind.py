"""Parent side of measurement mode `instructions`: workers under valgrind's callgrind.

What is counted, and how. Only the measured region counts: the worker loads the model, makes
the first call and warms up without any instrumentation, then brackets exactly
`min_iterations` iterations with callgrind client requests (start instrumentation, a dump
to open the region, one dump after each iteration, stop; collector/adapters/measure/callgrind.py).
The alternatives do
worse at "this region alone, exactly":
  - `callgrind_control` (-i on/off, -z, -d) signals the process from outside, through a
    command file that callgrind polls: the region's edges land wherever the worker happens
    to be when the poll fires, so start-up, warm-up or pipe traffic bleed in, and the parent
    would have to guess when to send the next command;
  - two whole-process counts (N iterations minus 0, or N minus M) instrument everything,
    torch's import included: ~110 s per run instead of ~25 s here, and the difference of two
    large counts carries both runs' variation (imports, allocator history, start-up) into a
    small one.
Client requests are magic instruction sequences compiled inline from a 20-line C file
(valgrind_requests.c, built once per machine with `cc -shared -fPIC -O2` into the cache
directory, loaded with ctypes): no dependency beyond a C compiler and valgrind's headers.

How workers start. Importing torch under valgrind costs ~25-40 s even uninstrumented
(`--instr-atstart=no`: the code is still translated by valgrind's JIT). So instructions-mode
workers come from their own multiprocessing *forkserver that runs under valgrind*: it
imports torch and transformers once, uninstrumented, and forks one fresh worker per
benchmark. A fork under valgrind stays under valgrind (only exec'd children leave it), and
callgrind gives every process its own counters and dump files (%p), so each benchmark is
still a fresh process with exact, private counts, and the fixed cost is paid once per
WorkerPool instead of once per benchmark. The parent side (pipe, sentinel, hard timeout,
SIGKILL of the process group, memory limit, failure kinds) is the WorkerPool's own, unchanged.
The server is started by pointing multiprocessing's executable at a generated wrapper script
(`exec valgrind ... python "$@"`) for the moment it spawns; that setting is process-global,
so it is swapped under SPAWN_LOCK, which the normal path also holds while it starts workers,
and restored at once. The normal wall-time path never touches valgrind: the launcher is only
created by the first instructions-mode benchmark.

Determinism: the wrapper fixes PYTHONHASHSEED=0 and one OpenMP/MKL thread for the server and
so for every worker; the worker runs one torch thread, fixed inputs, and no garbage collector
inside the region (collector/adapters/measure/worker.py).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from multiprocessing import (
    spawn,
)
from pathlib import Path
from typing import Any

from collector.adapters.measure.callgrind import ENV_CLIENT_LIBRARY, ENV_OUT_PREFIX
from collector.adapters.measure.forkservers import (
    SERVERS,
    PrivateForkServer,
    ServerProcess,
    shutdown,
)
from collector.adapters.measure.scrub import secret_names, unset_line
from collector.domain.model import BenchmarkSpec, Failure, FailureKind

ENV_VALGRIND = "COLLECTOR_VALGRIND"  # path of the valgrind binary, where PATH has none
ENV_READY = "COLLECTOR_VALGRIND_READY"
READY_MODULE = "collector.adapters.measure.valgrind_ready"
STARTUP_TIMEOUT_S = 900.0
_STARTUP_POLL_S = 0.2
_LOG_TAIL_LINES = 25
SOURCE = Path(__file__).with_name("valgrind_requests.c")

VALGRIND_OPTIONS = (
    "--tool=callgrind",
    "--instr-atstart=no",    # nothing is instrumented until the worker asks: a fast start
    "--collect-atstart=yes",  # once instrumented, count at once (the region starts at zero)
    "--cache-sim=no",        # instructions only: no cache or branch simulation
    "--branch-sim=no",
    "--collect-jumps=no",
    "--dump-instr=no",       # small dumps: costs per function, no per-instruction
    "--dump-line=no",        # or per-line positions
    "--compress-strings=yes",
    "--compress-pos=yes",
    "--separate-threads=no",  # one total for the process
    "--quiet",
)
# Debian/Ubuntu package names; other systems name theirs in the same words.
INSTALL_VALGRIND = ("install valgrind (Debian/Ubuntu: apt-get install valgrind) or set "
                    f"{ENV_VALGRIND} to the valgrind binary")
INSTALL_COMPILER = ("install a C compiler and valgrind's headers (Debian/Ubuntu: apt-get "
                    "install gcc valgrind; Fedora: gcc valgrind-devel) or set CC")


class ValgrindUnavailable(Exception):
    """Instructions mode cannot run here (no valgrind, no C compiler, no headers)."""


def instructions_mode_problem(spec: BenchmarkSpec) -> str | None:
    """Why `spec` cannot be measured in instructions mode, or None."""
    if spec.device != "cpu":
        return (f"measurement mode 'instructions' counts CPU instructions under valgrind, which "
                f"cannot run {spec.device!r}: use device 'cpu' or measurement mode 'wall'")
    if spec.threads is not None and spec.threads != 1:
        return (f"measurement mode 'instructions' runs one torch thread (threads: "
                f"{spec.threads} was asked): valgrind runs one thread at a time and a thread "
                "pool's spin-waits would be counted as work; unset threads or set it to 1")
    return None


# ---------------------------------------------------------------------------------------------
# Finding valgrind and building the client-request library


def find_valgrind(explicit: str | None = None) -> str:
    """The valgrind binary: `explicit`, else $COLLECTOR_VALGRIND, else `valgrind` on PATH;
    checked by running `valgrind --version`."""
    wanted = explicit or os.environ.get(ENV_VALGRIND)
    path = shutil.which(wanted) if wanted else shutil.which("valgrind")
    if path is None:
        where = f"{wanted!r} is not an executable file" if wanted else "no valgrind on PATH"
        raise ValgrindUnavailable(
            f"measurement mode 'instructions' needs valgrind ({where}): {INSTALL_VALGRIND}")
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValgrindUnavailable(f"valgrind at {path} does not run ({exc}): "
                                  f"{INSTALL_VALGRIND}") from None
    if done.returncode != 0:
        raise ValgrindUnavailable(f"valgrind at {path} does not run (`--version` exited with "
                                  f"{done.returncode}): {INSTALL_VALGRIND}")
    return path


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/collector, else ~/.cache/collector."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "collector"


def build_client_library(cache: Path | None = None, *, compiler: str | None = None,
                         include_dirs: Sequence[str] = ()) -> Path:
    """The compiled client-request library, built on first use and cached under a hash of
    the source and the compile command (a rebuild only when either changes)."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") \
        or shutil.which("clang")
    if not cc:
        raise ValgrindUnavailable("measurement mode 'instructions' needs a C compiler to build "
                                  f"its valgrind client requests (none found): {INSTALL_COMPILER}")
    command = [*shlex.split(cc), "-shared", "-fPIC", "-O2", *(f"-I{d}" for d in include_dirs)]
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + "\0".join(command).encode()).hexdigest()[:16]
    folder = cache or cache_dir()
    target = folder / f"valgrind_requests-{key}.so"
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValgrindUnavailable(f"cannot create the cache directory {folder}: {exc}") from None
    partial = folder / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run([*command, "-o", str(partial), str(SOURCE)], capture_output=True,
                              text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValgrindUnavailable(f"the C compiler {cc!r} does not run ({exc}): "
                                  f"{INSTALL_COMPILER}") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise ValgrindUnavailable(
            f"building the valgrind client-request library failed ({shlex.join(command)}: "
            f"{tail}): {INSTALL_COMPILER}")
    partial.replace(target)  # atomic: two collectors building at once both succeed
    return target


def _include_dirs(valgrind: str) -> list[str]:
    """valgrind's own include directory where it is installed outside /usr."""
    prefix = Path(os.path.realpath(valgrind)).parent.parent
    include = prefix / "include"
    if include != Path("/usr/include") and (include / "valgrind" / "callgrind.h").is_file():
        return [str(include)]
    return []


# ---------------------------------------------------------------------------------------------
# A forkserver under valgrind


class ValgrindLauncher:
    """Owns one valgrind forkserver (started on first use), its wrapper script and the
    directory its dumps and logs go to."""

    def __init__(self, preload: Sequence[str], *, valgrind: str | None = None,
                 python: str | None = None,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self._preload = [*preload, READY_MODULE]
        self._valgrind = valgrind
        self._python = python or os.fsdecode(spawn.get_executable())
        self._startup_timeout_s = startup_timeout_s
        self._key = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._server: PrivateForkServer | None = None
        self._stopper: weakref.finalize[Any, Any] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def ensure_ready(self, kill: threading.Event | None = None) -> Failure | None:
        """Start the server if it is not running and wait until it has imported everything;
        None when ready, else why not (the benchmark then fails with that)."""
        with self._lock:
            if self._server is not None and self._alive(self._server):
                return None
            self._discard_server()
            try:
                wrapper, ready = self._prepare()
            except ValgrindUnavailable as exc:
                return Failure(kind=FailureKind.EXCEPTION, message=str(exc))
            server = PrivateForkServer(wrapper, self._preload)
            server.ensure_running()
            self._server = server
            SERVERS[self._key] = server
            # A pool dropped without close() (e.g. one per suite run) must not leave its
            # valgrind server running until the collector exits.
            self._stopper = weakref.finalize(self, shutdown, self._key, server)
            failure = self._wait_ready(server, ready, kill)
            if failure is not None:
                self._discard_server()
            return failure

    def process(self, target: Callable[..., None], args: tuple[Any, ...],
                name: str = "collector-valgrind-worker") -> ServerProcess:
        return ServerProcess(self._key, target=target, args=args, daemon=True, name=name)

    def release(self, pid: int | None) -> str | None:
        """Forget a finished worker: remove its dumps and log; the log's tail, if any."""
        if pid is None or self._dir is None:
            return None
        for path in self._dir.glob(f"callgrind.out.{pid}*"):
            path.unlink(missing_ok=True)
        return _log_tail(self._dir / f"valgrind.{pid}.log", remove=True)

    def close(self) -> None:
        with self._lock:
            self._discard_server()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self) -> tuple[str, Path]:
        valgrind = find_valgrind(self._valgrind)
        include = _include_dirs(valgrind)
        try:
            library = build_client_library(include_dirs=include)
        except ValgrindUnavailable as exc:
            if "cache directory" not in str(exc):
                raise
            library = build_client_library(self._run_dir(), include_dirs=include)
        folder = self._run_dir()
        ready = folder / f"ready.{uuid.uuid4().hex[:8]}"
        env = {
            "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            ENV_CLIENT_LIBRARY: str(library), ENV_OUT_PREFIX: str(folder / "callgrind.out"),
            ENV_READY: str(ready),
        }
        command = [valgrind, *VALGRIND_OPTIONS,
                   f"--callgrind-out-file={folder}/callgrind.out.%p",
                   f"--log-file={folder}/valgrind.%p.log", self._python]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        wrapper = folder / "python-under-valgrind"
        # The server and so every worker start without the collector's secrets (names only
        # here, never values; collector/adapters/measure/scrub.py).
        wrapper.write_text(
            "#!/bin/sh\n"
            "# Written by the collector: the interpreter of its valgrind forkserver.\n"
            f"{unset_line(secret_names())}"
            f"export {exports}\n"
            f'exec {shlex.join(command)} "$@"\n')
        wrapper.chmod(0o700)
        return str(wrapper), ready

    def _run_dir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="collector-valgrind-"))
            # Removed by close(), or at exit by a pool that was never closed.
            weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        return self._dir

    def _wait_ready(self, server: PrivateForkServer, ready: Path,
                    kill: threading.Event | None) -> Failure | None:
        deadline = time.monotonic() + self._startup_timeout_s
        pid = server.pid
        assert pid is not None
        while not ready.exists():
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                server._forkserver_pid = None  # reaped here
                tail = _log_tail(self._run_dir() / f"valgrind.{pid}.log")
                return Failure(kind=FailureKind.EXCEPTION, exit_code=os.waitstatus_to_exitcode(
                    status), traceback_tail=tail, message=(
                    "the valgrind forkserver exited while importing torch (status "
                    f"{os.waitstatus_to_exitcode(status)}); see its valgrind log"))
            if kill is not None and kill.is_set():
                return Failure(kind=FailureKind.ABORTED, message=(
                    "the collector is shutting down; the valgrind forkserver was still "
                    "starting"))
            if time.monotonic() >= deadline:
                return Failure(kind=FailureKind.TIMEOUT, message=(
                    f"the valgrind forkserver did not finish importing torch within "
                    f"{self._startup_timeout_s:g} s"))
            if kill is not None:
                kill.wait(_STARTUP_POLL_S)
            else:
                time.sleep(_STARTUP_POLL_S)
        return None

    @staticmethod
    def _alive(server: PrivateForkServer) -> bool:
        if server.pid is None:
            return False
        try:
            done, _ = os.waitpid(server.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if done:
            server._forkserver_pid = None  # reaped here
        return not done

    def _discard_server(self) -> None:
        if self._stopper is not None:
            self._stopper()  # stops the server and forgets it, once
            self._stopper = None
        self._server = None


def _log_tail(path: Path, *, remove: bool = False) -> str | None:
    """The last lines of a valgrind log, without its ==pid== prefixes; None if empty."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    if remove:
        path.unlink(missing_ok=True)
    lines = [line.split("== ", 1)[-1] if line.startswith("==") else line
             for line in text.splitlines()]
    lines = [line for line in lines if line.strip() and line != "Using source line as position."]
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or None
