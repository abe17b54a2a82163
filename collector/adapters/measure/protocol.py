"""The worker → parent wire protocol: length-prefixed JSON, never pickle.

A worker runs model code (remote code, where a model opts in), so everything it sends is
untrusted input to the collector. A message is one JSON object `{"kind": ..., "body": ...}`
framed by a 4-byte big-endian length. The parent reads the pipe's raw file descriptor
itself, only when `select`/`poll` says it is readable, so the benchmark's deadline holds
while a message arrives (a worker that stalls half-way is a timeout, not a hang); it refuses
a frame longer than its bound before reading it; and it validates every message against the
schemas below before anything else sees it. Unpickling would run whatever a `__reduce__`
asks for, in the collector, with its database credentials.

Size bound (MAX_MESSAGE_BYTES, 64 MiB). The largest legitimate message is a result: one
float per timed iteration and per generated token, about 20 bytes each in JSON. A 20-s
measurement window (the default max_duration_s) of a 0.1-ms model is 200 000 samples, about
4 MB; 64 MiB leaves more than ten times that, while the parent's peak for one message (its
bytes plus the decoded objects, about three times the size) stays near 200 MB, so a runaway
or hostile worker cannot exhaust the collector's memory.

Framing is ours rather than multiprocessing's `send_bytes` (whose header format is an
implementation detail of CPython); both ends are in this module.
"""

from __future__ import annotations

import json
import os
import struct
from multiprocessing.connection import Connection
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from collector.domain.model import (
    Failure,
    FailureKind,
    Frozen,
    MeasurementInfo,
    NoiseProbe,
    Task,
)

MAX_MESSAGE_BYTES = 64 * 2**20
HEADER = struct.Struct("!I")
_READ_CHUNK = 1 << 20  # more than a pipe holds (64 KiB on Linux): one read empties it
# Longest failure message / traceback tail kept from a worker's error report; a worker's own
# reports are far shorter (one exception message, 25 traceback lines).
_MAX_TEXT = 20_000
_KINDS = ("progress", "result", "error")
# The failure kinds a worker may report itself; timeouts, crashes and aborts are decided by
# the parent alone (an "aborted" failure would, for instance, mark the whole run aborted).
WORKER_FAILURE_KINDS = frozenset({FailureKind.EXCEPTION, FailureKind.OUT_OF_MEMORY,
                                  FailureKind.MODEL_UNAVAILABLE,
                                  FailureKind.BACKEND_UNAVAILABLE,
                                  FailureKind.SERVER_UNAVAILABLE, FailureKind.CLIENT_BOUND,
                                  FailureKind.REQUESTS_FAILED})


class ProtocolError(Exception):
    """A worker's message broke the protocol; the text says how (never the payload)."""


# ---------------------------------------------------------------------------------------------
# Worker side


def send(conn: Connection, kind: Literal["progress", "result", "error"],
         body: dict[str, Any]) -> None:
    """Send one message on the worker's end of the pipe (blocking until it is written)."""
    data = json.dumps({"kind": kind, "body": body}, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the worker's {kind} message is {len(data)} bytes, over the "
                         f"protocol's limit of {MAX_MESSAGE_BYTES} bytes")
    view = memoryview(HEADER.pack(len(data)) + data)
    fd = conn.fileno()
    while view:
        view = view[os.write(fd, view):]


# ---------------------------------------------------------------------------------------------
# Parent side: framing


class FrameReader:
    """Reassembles frames from a pipe's raw descriptor; call read() only when it is readable
    (it then never blocks)."""

    def __init__(self, fd: int, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._fd = fd
        self._max = max_bytes
        self._buffer = bytearray()

    def read(self) -> list[bytes]:
        """The frames completed by what the pipe holds now. EOFError when the worker's end is
        closed; ProtocolError for a frame over the size bound (announced by its header, so
        it is refused before its bytes are read)."""
        chunk = os.read(self._fd, _READ_CHUNK)
        if not chunk:
            raise EOFError
        self._buffer += chunk
        frames = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > self._max:
                raise ProtocolError(f"the worker sent a message of {size} bytes, over the "
                                    f"limit of {self._max} bytes")
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[HEADER.size:end]))
            del self._buffer[:end]
        return frames

    def partial(self) -> str | None:
        """What is left of an unfinished message, in words; None when there is none."""
        if not self._buffer:
            return None
        if len(self._buffer) < HEADER.size:
            return f"{len(self._buffer)} bytes of a message header"
        (size,) = HEADER.unpack_from(self._buffer)
        return f"{len(self._buffer) - HEADER.size} of the {size} bytes of a message"


# ---------------------------------------------------------------------------------------------
# Parent side: schemas


class Progress(Frozen):
    """What a worker may say while it runs (collector/adapters/measure/worker.py, measure.py)."""

    phase: Annotated[str, Field(max_length=200)]
    iterations: Annotated[int, Field(ge=0)] | None = None
    elapsed_s: float | None = None
    rel_ci: float | None = None
    instrumented: bool | None = None


class WorkerError(Frozen):
    """A Python exception in the worker, reported by isolation._child_main."""

    kind: FailureKind
    type: Annotated[str, Field(min_length=1, max_length=200)]
    message: Annotated[str, Field(min_length=1)]
    traceback_tail: str | None = None

    def failure(self, exit_code: int | None) -> Failure:
        if self.kind not in WORKER_FAILURE_KINDS:
            raise ProtocolError(f"the worker reported a failure of kind {self.kind.value!r}, "
                                "which only the parent decides")
        message = self.message if len(self.message) <= _MAX_TEXT else (
            self.message[:_MAX_TEXT] + " [truncated]")
        tail = self.traceback_tail
        if tail is not None and len(tail) > _MAX_TEXT:
            tail = "[truncated] " + tail[-_MAX_TEXT:]
        return Failure(kind=self.kind, message=message, exception_type=self.type,
                       traceback_tail=tail, exit_code=exit_code)


_Short = Annotated[str, Field(min_length=1, max_length=200)]


class WorkerEnvironment(Frozen):
    """The part of Environment only the worker knows (live module versions, GPU)."""

    torch_version: str | None = None
    transformers_version: str | None = None
    torch_threads: int | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    gpu_name: str | None = None
    gpu_driver: str | None = None
    gpu_count: int | None = None
    int8_matmul: _Short | None = None
    server: _Short | None = None
    # Installed versions of the packages the parent asked to record (run_benchmark's
    # `packages`): a small map of short names to short versions.
    packages: Annotated[dict[_Short, _Short], Field(max_length=500)] = Field(
        default_factory=dict)


class WorkerResult(Frozen):
    """A benchmark's result body as collector/adapters/measure/worker.py sends it."""

    resolved_task: Task
    metrics: dict[str, float]
    samples: dict[str, list[float]]
    measurement: MeasurementInfo
    noise: NoiseProbe
    environment: WorkerEnvironment = WorkerEnvironment()


def decode(frame: bytes) -> tuple[str, dict[str, Any]]:
    """A frame as (kind, body): kind one of progress/result/error, body a JSON object;
    a progress body is validated here (its keys as sent), the others by their readers."""
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError) as exc:  # ValueError covers bad UTF-8 and JSON
        head = frame[:2]
        hint = " (a pickle: the worker must use collector.adapters.measure.protocol.send)" \
            if head[:1] == b"\x80" else ""
        raise ProtocolError(f"the worker sent a message that is not JSON{hint}: "
                            f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(message, dict) or set(message) != {"kind", "body"}:
        raise ProtocolError("the worker sent a message that is not an object with exactly "
                            "'kind' and 'body'")
    kind, body = message["kind"], message["body"]
    if kind not in _KINDS:
        raise ProtocolError(f"the worker sent a message of unknown kind {str(kind)[:50]!r}")
    if not isinstance(body, dict):
        raise ProtocolError(f"the worker sent a {kind} message whose body is not an object")
    if kind == "progress":
        try:
            body = Progress.model_validate(body).model_dump(exclude_unset=True)
        except ValidationError as exc:
            raise ProtocolError(f"the worker sent a malformed progress message: "
                                f"{describe(exc)}") from None
    return kind, body


def error_failure(body: dict[str, Any], exit_code: int | None) -> Failure:
    """The Failure a worker's error message reports; ProtocolError if it is malformed."""
    try:
        return WorkerError.model_validate(body).failure(exit_code)
    except ValidationError as exc:
        raise ProtocolError(f"the worker sent a malformed error message: "
                            f"{describe(exc)}") from None


def describe(exc: ValidationError, limit: int = 3) -> str:
    """A validation error in one line: the first few fields and what is wrong with them,
    never their values (which may be large, or anything)."""
    errors = exc.errors(include_input=False, include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
             for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def protocol_failure(message: str) -> Failure:
    """How a broken protocol is recorded: a crash of the worker, with what it did wrong."""
    return Failure(kind=FailureKind.CRASH, message=f"worker broke the result protocol: "
                                                   f"{message}")
