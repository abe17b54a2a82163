"""Counting CPU instructions of one region of code under callgrind (worker side, no torch).

The worker runs under `valgrind --tool=callgrind --instr-atstart=no` (collector/adapters/measure/
valgrind.py starts it). Nothing is counted until the worker asks: `start()` turns
instrumentation on, `dump()` writes the counts since the last dump to a file and clears them
(so a region is the span between two dumps; `open_region()`), `stop()` turns
instrumentation off again. Those are
callgrind *client requests*: magic instruction sequences compiled from
collector/adapters/measure/valgrind_requests.c and called through ctypes, so the counted region is
exactly the code between two requests, in this thread, with nothing else mixed in (see the
module docstring of collector/adapters/measure/valgrind.py for why not callgrind_control or two
whole-process counts).

`parse_totals` reads a dump's event totals (`events: Ir` ... `totals: 123`).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Set by the valgrind wrapper script for the forkserver and so for every worker under it.
ENV_CLIENT_LIBRARY = "COLLECTOR_VALGRIND_CLIENT"
ENV_OUT_PREFIX = "COLLECTOR_CALLGRIND_OUT"
INSTRUCTIONS_EVENT = "Ir"
_HEAD_TAIL_BYTES = 4096


class CallgrindError(Exception):
    """The instruction counter is unusable (not under valgrind, no dump, unreadable dump)."""


def parse_totals(text: str) -> dict[str, int]:
    """Event name -> total count of one callgrind dump.

    A dump names its events once (`events: Ir Dr ...`) and ends with `totals:` (the sum of
    every cost line); `summary:` (the tool's global counter, in the header) is the fallback
    where a dump has no totals line. Files written with --combine-dumps=yes hold several
    parts; the collector never writes those, and they are refused rather than misread.
    """
    events: list[str] | None = None
    totals: list[str] | None = None
    summary: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("events:"):
            if events is not None:
                raise CallgrindError("dump has more than one 'events:' line (combined dumps?)")
            events = line.split(":", 1)[1].split()
        elif line.startswith("totals:"):
            if totals is not None:
                raise CallgrindError("dump has more than one 'totals:' line (combined dumps?)")
            totals = line.split(":", 1)[1].split()
        elif line.startswith("summary:"):
            summary = line.split(":", 1)[1].split()
    if not events:
        raise CallgrindError("not a callgrind dump: no 'events:' line")
    values = totals if totals is not None else summary
    if values is None:
        raise CallgrindError("callgrind dump has neither a 'totals:' nor a 'summary:' line")
    if len(values) > len(events):
        raise CallgrindError(f"dump lists {len(events)} event(s) but {len(values)} total(s)")
    try:
        counts = [int(v) for v in values]
    except ValueError:
        raise CallgrindError(f"non-integer totals in callgrind dump: {' '.join(values)}") from None
    # Trailing zero counts may be left out of a cost line.
    counts += [0] * (len(events) - len(counts))
    return dict(zip(events, counts, strict=True))


def _head_and_tail(path: Path, block: int = _HEAD_TAIL_BYTES) -> str:
    """The header and the end of a dump, where `events:`/`summary:` and `totals:` are.

    A dump is hundreds of kB of per-function costs; reading all of it would allocate (and
    free) that much Python memory, which changes what the next counted iterations cost: the
    allocators' state is part of what is measured (a full read made the next iteration of
    bert-tiny 1.2M instructions, ~20%, dearer)."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= 2 * block:
            return f.read().decode(errors="replace")
        head = f.read(block)
        f.seek(size - block)
        tail = f.read()
    # Cut at line ends so no partial line is taken for a whole one.
    head = head[:head.rfind(b"\n") + 1]
    tail = tail[tail.find(b"\n") + 1:]
    return (head + tail).decode(errors="replace")


class InstructionCounter:
    """Client requests of the running callgrind, and the dumps they write for this process."""

    def __init__(self, library: str, out_prefix: str) -> None:
        try:
            self._lib = ctypes.CDLL(library)
        except OSError as exc:
            raise CallgrindError(f"cannot load the client-request library {library}: {exc}"
                                 ) from None
        self._lib.collector_dump_stats_at.argtypes = [ctypes.c_char_p]
        for name in ("collector_start_instrumentation", "collector_stop_instrumentation",
                     "collector_zero_stats", "collector_dump_stats_at"):
            getattr(self._lib, name).restype = None
        self._out = Path(out_prefix)

    @classmethod
    def from_environment(cls) -> InstructionCounter:
        library = os.environ.get(ENV_CLIENT_LIBRARY)
        out_prefix = os.environ.get(ENV_OUT_PREFIX)
        if not library or not out_prefix:
            raise CallgrindError(
                "instructions mode needs a worker started by the collector's valgrind launcher "
                f"({ENV_CLIENT_LIBRARY} and {ENV_OUT_PREFIX} are not set)")
        counter = cls(library, out_prefix)
        if not counter.running_on_valgrind():
            raise CallgrindError("instructions mode: this worker is not running under valgrind")
        return counter

    def running_on_valgrind(self) -> bool:
        return bool(self._lib.collector_running_on_valgrind())

    def start(self) -> None:
        """Instrumentation on; then one zero and one dump, uncounted, so that the first
        counted call of each request is not the one that pays for ctypes' set-up of it."""
        self._lib.collector_start_instrumentation()
        self.zero()
        self.dump("warm-up")
        self.read_dumps()

    def stop(self) -> None:
        self._lib.collector_stop_instrumentation()

    def zero(self) -> None:
        self._lib.collector_zero_stats()

    def dump(self, reason: str = "collector") -> None:
        """Write a dump of the counts since the last zero or dump, then zero them. Only the
        request: reading the file is Python work that must not be counted (`read_dumps`)."""
        self._lib.collector_dump_stats_at(reason.encode())

    def read_dumps(self) -> list[int]:
        """Instructions of each dump this process wrote since the last call, in order; the
        files are removed."""
        prefix = f"{self._out.name}.{os.getpid()}."
        # callgrind writes <prefix>.<pid>.<n>, n counting this process's dumps from 1.
        numbered = sorted((int(p.name[len(prefix):]), p)
                          for p in self._out.parent.glob(prefix + "*")
                          if p.name[len(prefix):].isdigit())
        counts: list[int] = []
        for _, path in numbered:
            try:
                totals = parse_totals(_head_and_tail(path))
            finally:
                path.unlink(missing_ok=True)
            if INSTRUCTIONS_EVENT not in totals:
                raise CallgrindError(f"callgrind dump {path} has no {INSTRUCTIONS_EVENT} event")
            counts.append(totals[INSTRUCTIONS_EVENT])
        return counts

    def count(self, fn: Callable[[], Any], repeats: int = 1, warmup: int = 1) -> float:
        """Instructions per call of `fn`, over `repeats` calls after `warmup` uncounted ones
        (first calls of a new code path cost more; instrumentation must be on)."""
        self.read_dumps()  # nothing stale may be mistaken for this count
        for _ in range(warmup):
            fn()
        self.open_region()
        for _ in range(repeats):
            fn()
        self.dump("count")
        counts = self.read_dumps()
        if len(counts) != 2:
            raise CallgrindError(f"expected two callgrind dumps, found {len(counts)}")
        return counts[1] / repeats

    def open_region(self) -> None:
        """Start counting from zero here. A dump, not `zero()`: after CALLGRIND_ZERO_STATS
        the next dump still held ~2.6% more than the same iteration after a dump (bert-tiny),
        while dump-to-dump counts agree with each other; callers drop this dump."""
        self.dump("region start")
