"""Process-lifetime file locks next to the local store (fcntl.flock: released by the kernel
when the process dies, however it dies, so a lock is never left behind by a crash).

- `ServeLock`: one `collector serve` per local store; a second would run its benchmarks at
  the same time as the first and both would measure the contention.
- `OwnerLock`: the token a process writes into the run journal; a journal whose owner's
  lock can be taken belongs to a process that is gone (PIDs are reused, and in a container
  the collector is always the same PID: a lock is the only reliable test).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path
from typing import IO

from collector.domain.errors import CollectorError


class AlreadyServing(CollectorError):
    """Another `collector serve` holds this local store."""


def _in_memory(store_path: Path) -> bool:
    return str(store_path) == ":memory:"


class ServeLock:
    """`<store>.serve.lock`, held exclusively for the life of the process."""

    def __init__(self, store_path: str | Path) -> None:
        self.path = Path(f"{store_path}.serve.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> ServeLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyServing(
                f"another `collector serve` (pid {holder}) is using the local store "
                f"{str(self.path)[:-len('.serve.lock')]}: stop it first, or give this one "
                "its own store with --local-store") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
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
        self._dir = None if _in_memory(Path(store_path)) else Path(f"{store_path}.owners")
        self._file: IO[str] | None = None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            handle = (self._dir / self.token).open("w")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
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
