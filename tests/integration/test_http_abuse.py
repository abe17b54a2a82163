"""`serve`'s HTTP endpoint under abuse (issue 23, points 5 and 12): clients that trickle a
request a header line at a time, partial, oversized and malformed requests, every method,
Accept-Encoding edge cases, and a seeded fuzz of broken requests. Real sockets and server
threads in this process; only render() and health() are stand-ins.

Every test is bounded in time (each socket has a timeout, each test a pytest timeout) and
the fuzz in memory (the max RSS growth of this process, which holds the server). Timing
margins are generous for two shared, noisy cores; each says what it guards against and
what was measured where it matters.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from collector.adapters.http import MetricsServer, serve_metrics

BODY = b"# HELP up x\n# TYPE up gauge\nup 1.0\n" * 50
TOKEN = b"abuse-test-token"
# How long a client waits for an answer the server owes it: the request deadline plus a
# margin for a busy machine (a thread that is due but not yet scheduled).
ANSWER_MARGIN_S = 3.0


def render(accept: str = "") -> bytes:
    return BODY


def start(**options: Any) -> MetricsServer:
    return serve_metrics(render, lambda: (True, "ok"), port=0, alerts_token=TOKEN, **options)


@pytest.fixture
def servers() -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def make(**options: Any) -> MetricsServer:
        started.append(start(**options))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[MetricsServer]:
    """One server for the tests that only send whole requests (stopping one takes 0.5 s)."""
    running = start()
    yield running
    running.stop()


@dataclass
class Answer:
    status: int | None  # None: the server closed without answering
    headers: dict[str, str]
    body: bytes
    seconds: float


def parse(raw: bytes, seconds: float) -> Answer:
    if not raw:
        return Answer(None, {}, b"", seconds)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), raw[:200]
    headers = {name: value for name, colon, value in (line.partition(": ") for line in lines[1:])
               if colon}
    return Answer(int(lines[0].split()[1]), headers, body, seconds)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def exchange(server: MetricsServer, request: bytes, timeout: float = 5.0) -> Answer:
    """Send `request` whole, read the answer until the server closes."""
    started = time.monotonic()
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(request)
        raw = read_all(sock)
    return parse(raw, time.monotonic() - started)


def get(server: MetricsServer, path: str, **headers: str) -> Answer:
    lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())


# -- slow clients (issue 23, point 5) -----------------------------------------------------


class SlowClients(threading.Thread):
    """`count` connections that send a request line, then one header line every
    `interval_s` (each well inside the server's per-read timeout), never the blank line
    that ends the head. A connection the server closes is opened again at once: the attack
    of issue 23 (40 clients, a line every 5 s), at a faster pace."""

    def __init__(self, address: tuple[str, int], count: int, interval_s: float) -> None:
        super().__init__(name="slow-clients", daemon=True)
        self.address, self.count, self.interval_s = address, count, interval_s
        self.stop = threading.Event()
        self.lifetimes: list[float] = []  # how long each connection the server closed lived
        self.answers: list[bytes] = []  # what the server said as it closed them

    def _open(self) -> tuple[socket.socket, float]:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        sock.setblocking(False)
        return sock, time.monotonic()

    def run(self) -> None:
        clients = [self._open() for _ in range(self.count)]
        try:
            while not self.stop.wait(self.interval_s):
                for index, (sock, opened) in enumerate(clients):
                    try:
                        said = sock.recv(200)  # anything (a 408, a 503) or EOF: closed
                    except BlockingIOError:
                        with contextlib.suppress(OSError):
                            sock.send(b"X-Slow: 1\r\n")
                        continue
                    except OSError:
                        said = b"reset"
                    self.lifetimes.append(time.monotonic() - opened)
                    self.answers.append(said[:12])
                    sock.close()
                    clients[index] = self._open()
        finally:
            for sock, _ in clients:
                sock.close()


@dataclass
class Probes:
    """A scraper and a liveness check, alternating every `every_s`."""

    statuses: list[int | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def run(self, server: MetricsServer, seconds: float, every_s: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        paths = ("/healthz", "/metrics")
        while time.monotonic() < deadline:
            try:
                answer = get(server, paths[len(self.statuses) % 2])
                self.statuses.append(answer.status)
                self.latencies.append(answer.seconds)
            except OSError:  # refused, reset, timed out
                self.statuses.append(None)
                self.latencies.append(float("inf"))
            time.sleep(every_s)


@pytest.mark.timeout(60)
def test_slow_header_clients_do_not_take_probes_down(servers: Callable[..., MetricsServer]
                                                      ) -> None:
    """40 clients trickling their headers, more than the 32 request slots: before the fix
    they held every slot (each read within the timeout, so for minutes) and every probe got
    503. Now a head that is still arriving holds no request thread, and the server closes
    it at the deadline."""
    server = servers(timeout_s=2.0)  # max_connections: the default 32
    threads_before = threading.active_count()
    attack = SlowClients(server.address, count=40, interval_s=0.5)
    attack.start()
    try:
        time.sleep(1.0)  # every slow client connected and sending
        probes = Probes()
        threads_seen: list[int] = []

        def count_threads() -> None:
            for _ in range(100):  # 5 s, as long as the probes
                threads_seen.append(threading.active_count())
                time.sleep(0.05)

        watcher = threading.Thread(target=count_threads, daemon=True)
        watcher.start()
        probes.run(server, seconds=5.0)
        watcher.join()
    finally:
        attack.stop.set()
        attack.join(10)
    assert probes.statuses and all(s == 200 for s in probes.statuses), probes.statuses
    # Measured (2 shared cores, two busy-loop neighbours): p50 1 ms, max 21 ms. The bound is
    # 50x that max: what it catches is a probe that waits on a slow client (seconds).
    assert max(probes.latencies) < 1.0, sorted(probes.latencies)[-5:]
    # Each slow connection was cut at the 2 s deadline (plus the 0.5 s pace at which the
    # attacker looks, plus a margin for the busy machine), and all of them were.
    assert len(attack.lifetimes) >= 40, attack.lifetimes
    assert max(attack.lifetimes) < 2.0 + 0.5 + 1.5, sorted(attack.lifetimes)[-5:]
    assert set(attack.answers) <= {b"HTTP/1.0 408", b"", b"reset"}, set(attack.answers)
    # No thread per slow client: the attacker, the watcher and the probe request (one at a
    # time; allow a few still closing) are all there is beyond the server's own.
    assert max(threads_seen) - threads_before <= 2 + 3, max(threads_seen)


@pytest.mark.timeout(30)
def test_a_trickled_head_is_cut_at_the_deadline(servers: Callable[..., MetricsServer]) -> None:
    """One header line every 0.25 s keeps each read inside the 1 s socket timeout: before
    the fix the head could take 100 lines (the header limit), minutes at the issue's pace."""
    server = servers(timeout_s=1.0)
    started = time.monotonic()
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        sock.setblocking(False)
        said = b""
        while time.monotonic() - started < 1.0 + ANSWER_MARGIN_S:
            try:
                said = sock.recv(200)
                break
            except BlockingIOError:
                with contextlib.suppress(OSError):
                    sock.send(b"X-Slow: 1\r\n")
                time.sleep(0.25)
    elapsed = time.monotonic() - started
    assert said.startswith(b"HTTP/1.0 408"), said
    assert 0.9 < elapsed < 1.0 + ANSWER_MARGIN_S, elapsed  # measured: 1.0 s


@pytest.mark.timeout(30)
def test_one_deadline_covers_head_and_body(servers: Callable[..., MetricsServer]) -> None:
    """The head trickles in over 1.2 s, then the body a byte at a time: the 408 comes 2 s
    after the connection, not 2 s after the head (which would be 3.2 s)."""
    server = servers(timeout_s=2.0)
    started = time.monotonic()
    with socket.create_connection(server.address, timeout=5) as sock:
        for line in (b"POST /alerts HTTP/1.0\r\n", b"Content-Length: 100\r\n",
                     b"Authorization: Bearer " + TOKEN + b"\r\n", b"\r\n"):
            sock.sendall(line)
            time.sleep(0.3)
        sock.setblocking(False)
        said = b""
        while not said and time.monotonic() - started < 10:
            try:
                said = sock.recv(200)
            except BlockingIOError:
                with contextlib.suppress(OSError):
                    sock.send(b" ")
                time.sleep(0.1)
            except ConnectionResetError:
                break
    elapsed = time.monotonic() - started
    assert said.startswith(b"HTTP/1.0 408"), said
    # 2.0 s deadline; 3.2 s if the body had its own. Measured (busy neighbours): 2.00-2.01 s.
    assert elapsed < 2.0 + 0.9, elapsed


@pytest.mark.timeout(30)
def test_slow_bodies_leave_the_probes_their_slots(servers: Callable[..., MetricsServer]
                                                  ) -> None:
    """POSTs that send their head and then stall in the body hold request threads until
    the deadline, but never the quarter kept for GET and HEAD."""
    server = servers(max_connections=8, timeout_s=3.0)
    stalled = []
    for _ in range(10):
        sock = socket.create_connection(server.address, timeout=5)
        sock.sendall(b"POST /alerts HTTP/1.0\r\nContent-Length: 100\r\nAuthorization: Bearer "
                     + TOKEN + b"\r\n\r\n{")
        stalled.append(sock)
    try:
        time.sleep(0.5)  # every head read and dispatched (a few ms)
        told = []
        for sock in stalled:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                told.append(sock.recv(200)[:12])
        # 6 of the 8 slots take a request with a body; the other 4 POSTs are told at once.
        assert told == [b"HTTP/1.0 503"] * 4, told
        for path in ("/healthz", "/metrics", "/healthz"):
            answer = get(server, path)
            assert answer.status == 200, answer
            assert answer.seconds < 1.0  # measured: a few ms
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.timeout(30)
def test_too_many_waiting_connections_drop_the_oldest(servers: Callable[..., MetricsServer]
                                                      ) -> None:
    server = servers(max_pending=16, timeout_s=10.0)
    stalled = []
    for _ in range(40):
        sock = socket.create_connection(server.address, timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        stalled.append(sock)
    try:
        # The 24 oldest are told 503 as newer ones come; a probe is answered at once.
        for sock in stalled[:24]:
            assert sock.recv(200).startswith(b"HTTP/1.0 503")
        answer = get(server, "/healthz")
        assert answer.status == 200 and answer.seconds < 1.0, answer
        assert server.server.pending <= 16
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("start_of_request", "filler", "status"), [
    (b"GET /", b"a", 414),  # a request line that never ends
    (b"GET /metrics HTTP/1.1\r\n", b"X-Filler: aaaaaaaaaaaaaaaaaaaa\r\n", 431),  # headers
])
def test_a_flood_is_cut_off_at_the_head_limit(servers: Callable[..., MetricsServer],
                                              start_of_request: bytes, filler: bytes,
                                              status: int) -> None:
    """16 MiB without the end of a head: the server keeps at most 32 KiB of it."""
    server = servers(timeout_s=5.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    block = filler * (65536 // len(filler))
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(start_of_request)
        with contextlib.suppress(OSError):  # the server stops reading and closes
            for _ in range(256):
                sock.sendall(block)
        answer = parse(read_all(sock), 0.0)
    assert answer.status == status, answer
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 16_000  # KiB
    assert get(server, "/healthz").status == 200


# -- methods and encodings (issue 23, point 12) -------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_head_gets_the_headers_of_a_get_and_no_body(server: MetricsServer,
                                                    path: str) -> None:
    got = exchange(server, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    head = exchange(server, f"HEAD {path} HTTP/1.0\r\n\r\n".encode())
    assert head.status == got.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(got.body)) != "0"
    assert head.headers["Content-Type"] == got.headers["Content-Type"]


@pytest.mark.parametrize("method", ["PUT", "OPTIONS", "DELETE", "POST", "PATCH", "TRACE",
                                    "BREW"])
@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_other_methods_are_not_allowed(server: MetricsServer, method: str,
                                       path: str) -> None:
    answer = exchange(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0"
                              f"\r\n\r\n".encode())
    assert answer.status == 405, answer
    assert answer.headers["Allow"] == "GET, HEAD"


def test_alerts_take_post_only_and_head_gets_no_body(server: MetricsServer) -> None:
    for method in ("GET", "HEAD", "PUT", "OPTIONS"):
        answer = exchange(server, f"{method} /alerts HTTP/1.0\r\n\r\n".encode())
        assert (answer.status, answer.headers["Allow"]) == (405, "POST")
        assert (answer.body == b"") == (method == "HEAD")
    missing = exchange(server, b"HEAD /nowhere HTTP/1.0\r\n\r\n")
    assert missing.status == 404 and missing.body == b""


@pytest.mark.parametrize(("accept_encoding", "gzipped"), [
    ("gzip", True),
    ("GZIP", True),
    ("x-gzip", True),
    ("gzip;q=0.5", True),
    ("br, gzip;q=0.001", True),
    ("gzip;q=0", False),
    ("gzip; q=0.000", False),
    ("gzip;Q=0", False),
    ("deflate, gzip;q=0", False),
    ("gzip;q=abc", False),
    ("gzip;q=nan", False),
    ("identity", False),
    ("deflate, br", False),
    ("*", False),
    ("", False),
])
def test_gzip_only_when_accepted(server: MetricsServer, accept_encoding: str,
                                 gzipped: bool) -> None:
    answer = get(server, "/metrics", Accept_Encoding=accept_encoding)
    assert answer.status == 200
    assert ("Content-Encoding" in answer.headers) == gzipped, answer.headers
    assert (gzip.decompress(answer.body) if gzipped else answer.body) == BODY


# -- fuzz -----------------------------------------------------------------------------------

FUZZ_CASES = 300
FUZZ_SEED = 23  # fixed: CI sends the same requests every time
FUZZ_TIMEOUT_S = 1.0
STATUSES = {200, 400, 401, 404, 405, 408, 411, 413, 414, 431, 503, 505}
MEMORY_GROWTH_KB = 64_000  # the server holds at most 256 heads of 32 KiB (8 MiB)

VALID = [
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0"
    b"\r\nAccept-Encoding: gzip\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    + json.dumps({"alerts": [{"labels": {"a": "b"}}]}).encode().ljust(40),
]
NASTY = [b"\r", b"\n", b"\0", b"\xff", b" ", b":", b"%", b"\r\n\r\n", b"\x1b[2J", b"\t",
         b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999\r\n",
         b"Content-Length: x\r\n", b"Transfer-Encoding: chunked\r\n",
         b"Expect: 100-continue\r\n", b"X: " + b"y" * 5000 + b"\r\n", b"HTTP/9.9",
         b"/../../etc/passwd", b"?%00=%ff", b"\xc3\xa9", b"\xed\xa0\x80"]


@dataclass
class Case:
    pieces: list[bytes]  # sent with a short pause between them
    close_write: bool  # half-close after sending (else: wait for the server)


def mutated(rng: random.Random) -> bytes:
    """A valid request, broken in one to five places."""
    data = bytearray(rng.choice(VALID))
    for _ in range(rng.randrange(1, 6)):
        at = rng.randrange(len(data) + 1)
        action = rng.randrange(5)
        if action == 0:  # insert something nasty
            data[at:at] = rng.choice(NASTY)
        elif action == 1 and data:  # flip a byte
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif action == 2:  # cut the request short
            del data[at:]
        elif action == 3:  # repeat a stretch (many headers, a long line)
            data[at:at] = bytes(data[at:at + rng.randrange(1, 40)]) * rng.randrange(2, 200)
        else:  # bare LF line ends
            data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
    return bytes(data)


def fuzz_case(rng: random.Random) -> Case:
    """Random bytes (a sixth of the cases) or a broken request, sent in one to three
    pieces, half of them followed by a half-close."""
    data = rng.randbytes(rng.randrange(0, 3000)) if rng.randrange(6) == 0 else mutated(rng)
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(1, 4))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return Case([p for p in pieces if p], close_write=rng.random() < 0.5)


def send_case(server: MetricsServer, case: Case) -> tuple[Answer, Case]:
    started = time.monotonic()
    with socket.create_connection(server.address,
                                  timeout=FUZZ_TIMEOUT_S + ANSWER_MARGIN_S) as sock:
        try:
            for piece in case.pieces:
                sock.sendall(piece)
                time.sleep(0.01)
            if case.close_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # broken pipe, reset: the server answered (and closed) already
            pass
        raw = read_all(sock)
    return parse(raw, time.monotonic() - started), case


@pytest.mark.timeout(120)
def test_fuzzed_requests_get_an_answer_in_time(servers: Callable[..., MetricsServer]) -> None:
    """Every broken request is answered with a client error (or closed) within the
    deadline, never a 500; the server holds no thread or buffer afterwards, and serves."""
    server = servers(timeout_s=FUZZ_TIMEOUT_S)
    rng = random.Random(FUZZ_SEED)
    cases = [fuzz_case(rng) for _ in range(FUZZ_CASES)]
    threads_before = threading.active_count()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda case: send_case(server, case), cases))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    for answer, case in results:
        assert answer.status is None or answer.status in STATUSES, (answer, case)
        assert b"Traceback" not in answer.body, (answer, case)
        # The deadline plus the margin; measured (two busy-loop neighbours): max 1.0 s.
        assert answer.seconds < FUZZ_TIMEOUT_S + ANSWER_MARGIN_S, (answer, case)
    assert grown < MEMORY_GROWTH_KB, f"max RSS grew {grown} KiB"
    statuses = {answer.status for answer, _ in results}
    assert {200, 400, 408} <= statuses, statuses  # the fuzz reaches the interesting paths
    assert get(server, "/healthz").status == 200
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() <= threads_before
    while server.server.pending and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.server.pending == 0


def test_an_ipv6_loopback_binds_as_ipv6_and_a_failed_bind_is_one_error() -> None:
    """`serve.host: "::1"` used to fail with an AttributeError from inside server_close
    (the socket was IPv4 whatever the host, and the cleanup ran before the server existed)."""
    ipv6 = serve_metrics(render, lambda: (True, "ok"), host="::1", port=0)
    try:
        host, port = ipv6.address
        assert host == "::1"
        with socket.create_connection((host, port), timeout=5) as client:
            assert client.family == socket.AF_INET6
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"200", answer
        assert answer.rstrip().endswith(b"ok"), answer
    finally:
        ipv6.stop()
    # An address this host does not have: the bind's own OSError, nothing else.
    with pytest.raises(OSError, match="assign requested address"):
        serve_metrics(render, lambda: (True, "ok"), host="203.0.113.9", port=0)
