"""A WSGI server that slow and stalled clients cannot take down (collector/adapters/http.py
serves the collector's endpoint with it):

- a connection costs no thread until its request head (request line and headers, at most
  `MAX_HEAD` bytes) has arrived whole: one head-reader thread reads every such connection
  without blocking, at most `max_pending` of them (past that the oldest is answered 503);
- the whole request, head and body, must arrive within `timeout_s` of the connection
  (a 408 otherwise), however slowly it trickles in (`DEADLINE_KEY` in the WSGI environ);
  every socket read or write of a request thread also times out after `timeout_s`;
- at most `max_connections` requests run at once, a quarter of them kept for GET and HEAD:
  a request that can read a body never takes the last ones, so probes and scrapes are
  answered while slow clients wait. Past the bound, a 503.

Built on prometheus_client's ThreadingWSGIServer (wsgiref underneath): the standard
library's servers give a thread to every connection from its first byte, which is what a
slow-header client exhausts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from prometheus_client.exposition import ThreadingWSGIServer

_server_log = logging.getLogger("collector.http")

MAX_CONNECTIONS = 32  # requests handled at once (one thread each)
MAX_PENDING = 256  # connections whose request head is still arriving (no thread each)
MAX_HEAD = 32 * 1024  # request line and headers: a scrape's are a few hundred bytes
TIMEOUT_S = 10.0
DEADLINE_KEY = "collector.deadline"  # the WSGI environ's monotonic deadline of the request
READ_METHODS = ("GET", "HEAD")  # what the slots kept for probes and scrapes serve
_LOGGED_CHARS = 300


def clean(value: object, limit: int = _LOGGED_CHARS) -> str:
    """`value` as one safe log field: control characters, line and paragraph separators
    escaped (no forged log lines, no terminal escapes), at most `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit + 1])
    return out[:limit] + "…" if len(out) > limit else out


def _canned(status: str, text: str, *headers: str) -> bytes:
    """A whole HTTP/1.0 response, sent by the head reader without a request thread."""
    body = f"{status}: {text}\n".encode()
    head = "".join(f"{header}\r\n" for header in (
        f"HTTP/1.0 {status}", "Content-Type: text/plain; charset=utf-8", "Connection: close",
        f"Content-Length: {len(body)}", *headers))
    return head.encode() + b"\r\n" + body


_BUSY = _canned("503 Service Unavailable", "too many connections", "Retry-After: 1")
_TOO_SLOW = _canned("408 Request Timeout", "request not received in time")
_LINE_TOO_LONG = _canned("414 URI Too Long", "request line too long")
_HEAD_TOO_LARGE = _canned("431 Request Header Fields Too Large", "request head too large")


def _head_end(head: bytearray, start: int) -> int:
    """Where the request head ends (just past its blank line; http.client ends headers at
    a bare LF too) when it has arrived, searching from `start`; -1 before."""
    ends = [at + len(mark) for mark in (b"\n\r\n", b"\n\n")
            if (at := head.find(mark, start)) >= 0]
    return min(ends, default=-1)


@dataclass(eq=False)
class _Pending:
    """A connection whose request head is still arriving."""

    sock: socket.socket
    address: Any
    deadline: float  # monotonic: the whole request, head and body, arrives before it
    head: bytearray = field(default_factory=bytearray)


class _Replay(io.RawIOBase):
    """A request's bytes: first those the head reader took off the socket (the head, maybe
    the start of the body), then the socket's, each read within `timeout_s` and none after
    the request's deadline."""

    def __init__(self, head: bytes, sock: socket.socket, deadline: float,
                 timeout_s: float) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._sock = sock
        self._deadline = deadline
        self._timeout_s = timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(target), len(self._head))
            target[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(min(self._timeout_s, left))
        try:
            return self._sock.recv_into(target)
        finally:
            self._sock.settimeout(self._timeout_s)


class Handler(WSGIRequestHandler):
    """Quiet (scrapes every few seconds would flood the log), with a socket timeout on
    every read and write (StreamRequestHandler applies `timeout` in setup()). It reads the
    request from what the head reader already took off the socket, then from the socket,
    never past the request's deadline, which the app finds in the environ (DEADLINE_KEY)."""

    timeout = TIMEOUT_S
    # A request line without a version is answered as HTTP/1.0, never as HTTP/0.9 (a body
    # without a status line or headers), errors about a bad version included.
    default_request_version = "HTTP/1.0"

    def __init__(self, request: socket.socket, client_address: Any, server: Any, *,
                 head: bytes = b"", deadline: float | None = None) -> None:
        self._head = head
        self._deadline = time.monotonic() + TIMEOUT_S if deadline is None else deadline
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # makefile()'s reader: replaced by one that replays the head
        self.rfile = io.BufferedReader(_Replay(self._head, self.connection, self._deadline,
                                               self.timeout or TIMEOUT_S))

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[DEADLINE_KEY] = self._deadline
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing per request."""


def _body_slots(max_connections: int) -> int:
    """Of `max_connections`, how many a request that may read a body can take: all but a
    quarter (at least one kept for GET and HEAD, unless there is only one)."""
    return max(1, max_connections - max(1, max_connections // 4))


def _family(host: str, port: int) -> socket.AddressFamily:
    """The address family the host names (IPv6 for `::1` or `::`, IPv4 for `127.0.0.1`),
    as the first address getaddrinfo gives, so an IPv6 address binds as one."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError):
        return socket.AF_INET  # the bind then fails with the host's own error


class BoundedWSGIServer(ThreadingWSGIServer):
    """prometheus_client's thread-per-request WSGI server, bounded against slow clients.

    The accept loop hands each connection to one head-reader thread, which reads request
    heads from all of them without blocking (a selector), so a client that sends its
    headers a line at a time holds a socket and a buffer of at most `max_head` bytes, never
    a thread. A connection whose head is not whole by its deadline (`request_timeout_s`
    after it was accepted) is answered 408 and closed; past `max_pending` such connections
    the oldest is answered 503. A complete head gets a request thread, at most
    `max_connections` at once, and a request that may read a body (any method but GET and
    HEAD) never takes the last quarter of them: past those bounds, a 503."""

    max_connections = MAX_CONNECTIONS
    max_pending = MAX_PENDING
    max_head = MAX_HEAD
    request_timeout_s = TIMEOUT_S
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: past the bound, refused fast, not dropped

    def __init__(self, server_address: tuple[str, int],
                 handler_class: type[Handler] = Handler) -> None:
        # Everything server_close needs exists before the bind, which may fail (and close).
        self.address_family = _family(server_address[0], server_address[1])
        self._handler_class = handler_class
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._body_slots = threading.BoundedSemaphore(_body_slots(self.max_connections))
        self._accepted: deque[_Pending] = deque()  # from the accept loop to the head reader
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing = False
        self._drop_logged = Throttle()
        self.refused = 0  # answered 503: every slot busy, or the oldest of too many waiting
        self.timed_out = 0  # answered 408: the head did not arrive by the deadline
        self.pending = 0  # connections whose head is still arriving, as last counted
        self._reader = threading.Thread(target=self._read_heads, name="metrics-http-heads",
                                        daemon=True)
        super().__init__(server_address, handler_class)
        self._reader.start()

    # -- the accept loop's side ---------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to the head reader (the accept loop never waits on a client)."""
        request.setblocking(False)
        self._accepted.append(_Pending(request, client_address,
                                       time.monotonic() + self.request_timeout_s))
        self._wake()

    def _wake(self) -> None:
        # OSError: full (a wake-up is pending already) or closed (the server stops).
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._closing = True
        self._wake()
        if self._reader.is_alive():
            self._reader.join(timeout=5)
        self._wake_w.close()
        if not self._reader.is_alive():
            self._wake_r.close()

    # -- the head reader ----------------------------------------------------------------

    def _read_heads(self) -> None:
        # Oldest first; every connection has the same timeout, so this is deadline order too.
        pending: dict[_Pending, None] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._closing:
                    timeout = (max(0.0, next(iter(pending)).deadline - time.monotonic())
                               if pending else None)
                    for key, _ in selector.select(timeout):
                        if key.fileobj is self._wake_r:
                            self._drain_wake()
                        elif key.data in pending:
                            self._receive(key.data, pending, selector)
                    self._take_accepted(pending, selector)
                    now = time.monotonic()
                    while pending and (oldest := next(iter(pending))).deadline <= now:
                        self.timed_out += 1
                        self._drop(oldest, pending, selector, _TOO_SLOW, "did not send its "
                                   "request within the request timeout")
                    self.pending = len(pending)
            except Exception:  # a bug: say so (/healthz stops answering, so it is seen)
                _server_log.exception("the HTTP server's head reader failed")
            finally:
                for conn in [*pending, *self._accepted]:
                    self.shutdown_request(conn.sock)
                self.pending = 0

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: drained
            while self._wake_r.recv(4096):
                pass

    def _take_accepted(self, pending: dict[_Pending, None],
                       selector: selectors.BaseSelector) -> None:
        while self._accepted:
            conn = self._accepted.popleft()
            if pending and len(pending) >= self.max_pending:  # the oldest has had the longest
                self.refused += 1
                self._drop(next(iter(pending)), pending, selector, _BUSY,
                           "was the oldest of too many connections still sending a request")
            try:
                selector.register(conn.sock, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                self.shutdown_request(conn.sock)
                continue
            pending[conn] = None
            self._receive(conn, pending, selector)  # a quick client's head is there already

    def _forget(self, conn: _Pending, pending: dict[_Pending, None],
                selector: selectors.BaseSelector) -> None:
        pending.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn.sock)

    def _drop(self, conn: _Pending, pending: dict[_Pending, None],
              selector: selectors.BaseSelector, answer: bytes, why: str) -> None:
        """Answer (best effort: the socket never blocks this thread) and close."""
        self._forget(conn, pending, selector)
        if self._drop_logged():  # slow or stalled clients show in the log, not a flood of it
            where = ":".join(map(str, conn.address[:2]))
            _server_log.warning("closed a connection from %s that %s (%d so far; at most one "
                                "such line a minute)", clean(where, 60), why,
                                self.timed_out + self.refused)
        self._answer(conn.sock, answer)

    def _answer(self, sock: socket.socket, answer: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(answer)
        self.shutdown_request(sock)

    def _receive(self, conn: _Pending, pending: dict[_Pending, None],
                 selector: selectors.BaseSelector) -> None:
        try:
            data = conn.sock.recv(self.max_head - len(conn.head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset
            data = b""
        if not data:  # the client gave up
            self._forget(conn, pending, selector)
            self.shutdown_request(conn.sock)
            return
        start = max(0, len(conn.head) - 2)
        conn.head += data
        if _head_end(conn.head, start) < 0:
            if len(conn.head) >= self.max_head:
                self._forget(conn, pending, selector)
                self._answer(conn.sock, _HEAD_TOO_LARGE if b"\n" in conn.head
                             else _LINE_TOO_LONG)
            return
        self._forget(conn, pending, selector)
        self._dispatch(conn)

    def _dispatch(self, conn: _Pending) -> None:
        """A request thread for a complete head, if a slot is free; a 503 otherwise."""
        method = bytes(conn.head[:64]).lstrip().split(b" ", 1)[0]
        wanted = ([self._slots] if method.decode("latin-1") in READ_METHODS
                  else [self._body_slots, self._slots])
        taken: list[threading.BoundedSemaphore] = []
        for slots in wanted:
            if not slots.acquire(blocking=False):
                break
            taken.append(slots)
        else:
            try:
                threading.Thread(target=self._handle, args=(conn, taken),
                                 name="metrics-http-request", daemon=True).start()
                return
            except RuntimeError:  # no thread to be had
                _server_log.warning("cannot start a request thread", exc_info=True)
        for slots in taken:
            slots.release()
        self.refused += 1
        self._answer(conn.sock, _BUSY)

    # -- a request thread ---------------------------------------------------------------

    def _handle(self, conn: _Pending, slots: list[threading.BoundedSemaphore]) -> None:
        try:
            self._handler_class(conn.sock, conn.address, self, head=bytes(conn.head),
                                deadline=conn.deadline)
        except Exception:
            self.handle_error(conn.sock, conn.address)
        finally:
            self.shutdown_request(conn.sock)
            for taken in slots:
                taken.release()

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002 - socketserver's signature
        """No traceback on stderr: a client that went away is not our error."""
        _server_log.debug("request from %s failed", clean(client_address), exc_info=True)


class Throttle:
    """True at most once per `interval_s`: a log line for refused requests that a client
    retrying in a loop cannot turn into a flood."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._last = -float("inf")
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval_s:
                return False
            self._last = now
            return True
