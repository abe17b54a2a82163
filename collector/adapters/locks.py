"""Process-lifetime file locks next to the local store (fcntl.flock: released by the kernel
when the process dies, however it dies, so a lock is never left behind by a crash).

- `ServeLock`: one `collector serve` per local store; a second would run its benchmarks at
  the same time as the first and both would measure the contention.
- `OwnerLock`: the token a process writes into the run journal; a journal whose owner's
  lock can be taken belongs to a process that is gone (PIDs are reused, and in a container
  the collector is always the same PID: a lock is the only reliable test).

Both sit next to the store's real path (symbolic links resolved): two names for one store
share one lock. A lock file that cannot be written (a full disk, a read-only directory) is
a StoreError, like any other failure of the local store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from pathlib import Path
from typing import IO

from collector.domain.errors import CollectorError, PermanentStoreError


class AlreadyServing(CollectorError):
    """Another `collector serve` holds this local store."""


def _in_memory(store_path: Path) -> bool:
    return str(store_path) == ":memory:"


def real_path(store_path: str | Path) -> Path:
    """The store's path with symbolic links resolved (what every lock is keyed by)."""
    path = Path(store_path)
    return path if _in_memory(path) else path.resolve()


def _unwritable(path: Path, exc: OSError) -> PermanentStoreError:
    return PermanentStoreError(f"cannot write the lock file {path} next to the local store: "
                               f"{exc.strerror or exc}")


def _lock_soon(handle: IO[str]) -> None:
    """An exclusive flock, tried a few times over 0.2 s: `serving_pid`'s probe holds a
    shared one for an instant, and must not pass for a serve."""
    for _ in range(4):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.05)
        else:
            return
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def serving_pid(store_path: str | Path) -> str | None:
    """The pid of the `collector serve` that holds this store, or None when none does
    (a probe: a shared lock taken and dropped at once, or not at all)."""
    if _in_memory(Path(store_path)):
        return None
    try:
        with Path(f"{real_path(store_path)}.serve.lock").open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read(4096).strip()[:64] or "unknown"
    except OSError:  # no lock file (never served), or one we cannot read
        return None
    return None


class ServeLock:
    """`<store>.serve.lock`, held exclusively for the life of the process."""

    def __init__(self, store_path: str | Path) -> None:
        self.path = Path(f"{real_path(store_path)}.serve.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> ServeLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+")
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        try:
            _lock_soon(handle)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(4096).strip()[:64] or "unknown"  # a pid: read 4 KiB at most
            handle.close()
            raise AlreadyServing(
                f"another `collector serve` (pid {holder}) is using the local store "
                f"{str(self.path)[:-len('.serve.lock')]}: stop it first, or give this one "
                "its own store with --local-store") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as exc:
            with contextlib.suppress(OSError):  # closing flushes again, and fails again
                handle.close()
            raise _unwritable(self.path, exc) from None
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


class OwnerLock:
    """A token of this process, with a lock file `<store>.owners/<token>` held for its life."""

    def __init__(self, store_path: str | Path) -> None:
        self.token = uuid.uuid4().hex
        self.pid = os.getpid()
        self._dir = None if _in_memory(Path(store_path)) else Path(
            f"{real_path(store_path)}.owners")
        self._file: IO[str] | None = None
        if self._dir is not None:
            path = self._dir / self.token
            handle: IO[str] | None = None
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                handle = path.open("w")
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                handle.write(f"{os.getpid()}\n")
                handle.flush()
            except OSError as exc:
                with contextlib.suppress(OSError):  # closing flushes again, and fails again
                    if handle is not None:
                        handle.close()
                with contextlib.suppress(OSError):
                    path.unlink()
                raise _unwritable(path, exc) from None
            self._file = handle

    def alive(self, token: str) -> bool:
        """Whether the process that wrote `token` still runs (ours always does)."""
        if token == self.token:
            return True
        if self._dir is None or not token.isalnum():
            return False
        try:
            handle = (self._dir / token).open("r")
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    def forget(self, token: str) -> None:
        """Remove a dead owner's lock file (after its journal was recovered)."""
        if self._dir is not None and token != self.token and token.isalnum():
            with contextlib.suppress(OSError):
                (self._dir / token).unlink()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if self._dir is not None:
                with contextlib.suppress(OSError):
                    (self._dir / self.token).unlink()
