"""The collector's HTTP endpoint: /metrics for Prometheus, /healthz for liveness, and
/alerts, an Alertmanager webhook receiver that writes each notification to the log (so the
stack shows alerts somewhere out of the box; real routes go to e-mail, Slack, pagers).

Binds to 127.0.0.1 unless configured otherwise. Served by collector/adapters/http_server.py,
bounded against slow and stalled clients (no thread until a request head has arrived, one
deadline for head and body, slots kept for GET and HEAD: /healthz and scrapes are answered
while slow clients wait).

/metrics is OpenMetrics or the classic text format as the scraper's Accept header asks
(prometheus_client's negotiation), gzipped when its Accept-Encoding allows gzip (with a
q-value above 0); /metrics and /healthz take GET and HEAD (a HEAD gets no body), anything
else is a 405 with an Allow header. /alerts takes a bearer token when one is configured
(compared in constant time), answers a body it cannot read with 400 (413 when too large)
and logs every value it was sent escaped, one line per alert.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.exposition import choose_encoder

from collector.adapters.files import MAX_SECRET_BYTES, ReadFailure, read_bounded
from collector.adapters.http_server import (
    DEADLINE_KEY,
    MAX_CONNECTIONS,
    MAX_PENDING,
    READ_METHODS,
    TIMEOUT_S,
    BoundedWSGIServer,
    Handler,
    Throttle,
    clean,
)
from collector.domain.errors import ConfigError, ConfigProblem

log = logging.getLogger("collector.alerts")
_server_log = logging.getLogger("collector.http")

HealthCheck = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]
MAX_ALERT_BODY = 1 << 20  # Alertmanager's max_alerts: 50 stays far below
ALERTS_TOKEN_FILE_ENV = "COLLECTOR_ALERTS_TOKEN_FILE"  # noqa: S105 - a variable name, not a token
_LOGGED_CHARS = 300
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


class HttpError(Exception):
    """A request answered with this status and a one-line reason."""

    def __init__(self, status: str, reason: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


def read_token(path: str | os.PathLike[str]) -> bytes:
    """The bearer token /alerts requires: the file's content, stripped of surrounding
    whitespace. A missing, unreadable or empty file is a configuration error."""
    where = Path(path)
    try:
        token = read_bounded(where, MAX_SECRET_BYTES).strip()  # /dev/zero stops at the bound
    except ReadFailure as failure:
        raise ConfigError([ConfigProblem(str(where), None, ALERTS_TOKEN_FILE_ENV,
                                         f"cannot read the alerts token: {failure.reason}")]
                          ) from None
    if not token:
        raise ConfigError([ConfigProblem(str(where), None, ALERTS_TOKEN_FILE_ENV,
                                         "the alerts token file is empty")])
    return token


def token_from_environment(environ: dict[str, str] | None = None) -> bytes | None:
    """The token named by $COLLECTOR_ALERTS_TOKEN_FILE, or None when that is unset."""
    path = (os.environ if environ is None else environ).get(ALERTS_TOKEN_FILE_ENV)
    return read_token(path) if path else None


def _read_body(environ: dict[str, Any], limit: int, timeout_s: float) -> bytes:
    """The request body: Content-Length bytes, no more than `limit`, all before the
    request's deadline (DEADLINE_KEY; else within `timeout_s`): a client sending a byte at
    a time cannot hold a thread for longer."""
    raw = environ.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw)
    except ValueError:
        raise HttpError("411 Length Required", "a Content-Length is required") from None
    if length < 0:
        raise HttpError("400 Bad Request", "bad Content-Length")
    if length > limit:
        raise HttpError("413 Content Too Large", f"body over {limit} bytes")
    stream = environ["wsgi.input"]
    read = getattr(stream, "read1", stream.read)  # read1: what has arrived, not all `left`
    deadline = environ.get(DEADLINE_KEY) or time.monotonic() + timeout_s
    chunks: list[bytes] = []
    left = length
    while left > 0:
        if time.monotonic() > deadline:
            raise HttpError("408 Request Timeout", "body not received in time")
        try:
            chunk = read(min(left, 65536))
        except OSError:  # socket timeout, the deadline, reset
            raise HttpError("408 Request Timeout", "body not received in time") from None
        if not chunk:
            raise HttpError("400 Bad Request", "body shorter than its Content-Length")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _string_map(value: object, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise HttpError("400 Bad Request", f"{field} must be an object of strings")
    return value


def parse_alerts(body: bytes) -> list[dict[str, Any]]:
    """Alertmanager's webhook JSON (version 4): its `alerts`, each with string labels and
    annotations. Anything else is a 400."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise HttpError("400 Bad Request", "body is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("alerts"), list):
        raise HttpError("400 Bad Request", "body has no list of alerts")
    alerts: list[dict[str, Any]] = []
    for index, alert in enumerate(document["alerts"]):
        if not isinstance(alert, dict):
            raise HttpError("400 Bad Request", f"alerts[{index}] is not an object")
        alerts.append({"status": alert.get("status", "?"),
                       "labels": _string_map(alert.get("labels"), f"alerts[{index}].labels"),
                       "annotations": _string_map(alert.get("annotations"),
                                                  f"alerts[{index}].annotations")})
    return alerts


def _authorised(environ: dict[str, Any], token: bytes | None) -> bool:
    if token is None:
        return True
    scheme, _, offered = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    # latin-1: WSGI's header encoding; compare_digest is constant time in the offered value.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        offered.strip().encode("latin-1", "replace"), token)


def _negotiate(accept: str) -> tuple[str, str]:
    """(the Accept header to render for, its Content-Type) by prometheus_client's
    choose_encoder. An OpenMetrics version that is not a number makes it raise: such a
    scraper gets the classic text format, not a 500."""
    try:
        return accept, choose_encoder(accept)[1]
    except (TypeError, ValueError):
        return "", choose_encoder("")[1]


Render = Callable[[str], bytes]


def gzip_wanted(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip: `gzip` (or `x-gzip`) listed with a
    q-value above 0 (RFC 9110 12.5.3: q=0 means "not acceptable"). prometheus_client's
    gzip_accepted ignores q-values, so it would gzip for `gzip;q=0`; a q-value that is not
    a number counts as 0, and `*` is not taken as gzip (identity is always acceptable)."""
    for item in accept_encoding.split(","):
        coding, *parameters = item.split(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if math.isfinite(quality) and quality > 0:
            return True
    return False


def make_app(render: Render, health: HealthCheck, *,
             alerts_token: bytes | None = None, max_body: int = MAX_ALERT_BODY,
             timeout_s: float = TIMEOUT_S) -> Callable[..., Iterable[bytes]]:
    refusal_logged = Throttle()

    def route(environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path in ("/metrics", "/healthz") and method not in READ_METHODS:
            raise HttpError("405 Method Not Allowed", "GET or HEAD only",
                            [("Allow", ", ".join(READ_METHODS))])
        if path == "/metrics":
            accept, content_type = _negotiate(str(environ.get("HTTP_ACCEPT", "")))
            body = render(accept)
            headers = [("Content-Type", content_type)]
            if gzip_wanted(str(environ.get("HTTP_ACCEPT_ENCODING", ""))):
                body = gzip.compress(body, compresslevel=6)
                headers.append(("Content-Encoding", "gzip"))
            return "200 OK", headers, body
        if path == "/alerts":
            if method != "POST":
                raise HttpError("405 Method Not Allowed", "POST only", [("Allow", "POST")])
            if not _authorised(environ, alerts_token):
                if refusal_logged():  # a wrong token in alertmanager.yml shows up here
                    _server_log.warning(
                        "refused POST /alerts from %s: %s bearer token (at most one such "
                        "line a minute)", clean(environ.get("REMOTE_ADDR", "?"), 60),
                        "wrong" if environ.get("HTTP_AUTHORIZATION") else "no")
                raise HttpError("401 Unauthorized", "a valid bearer token is required",
                                [("WWW-Authenticate", 'Bearer realm="collector"')])
            alerts = parse_alerts(_read_body(environ, max_body, timeout_s))
            for alert in alerts:
                labels, notes = alert["labels"], alert["annotations"]
                log.warning("alert %s: %s [%s] %s", clean(alert["status"], 20),
                            clean(labels.get("alertname", "?"), 200),
                            clean(labels.get("severity", "?"), 40),
                            clean(notes.get("summary", "")))
            return "200 OK", _TEXT, b"200 OK\n"
        if path == "/healthz":
            ok, message = health()
            return ("200 OK" if ok else "503 Service Unavailable"), _TEXT, (
                clean(message, 2000) + "\n").encode()
        raise HttpError("404 Not Found", "not found: try /metrics, /healthz or POST /alerts")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, headers, body = route(environ)
        except HttpError as exc:
            status, headers = exc.status, _TEXT + exc.headers
            body = f"{exc.status}: {exc.reason}\n".encode()
        except Exception as exc:  # one line in the log, a plain 500 out
            _server_log.error("%s %s failed: %s: %s", clean(environ.get("REQUEST_METHOD"), 10),
                              clean(environ.get("PATH_INFO"), 100), type(exc).__name__,
                              clean(str(exc)))
            status, headers, body = "500 Internal Server Error", _TEXT, b"internal error\n"
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        # A HEAD gets the headers a GET would, Content-Length included, and no body.
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return app


@dataclass
class MetricsServer:
    """A running endpoint; stop() shuts it down."""

    server: BoundedWSGIServer
    thread: threading.Thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(render: Render, health: HealthCheck, *,
                  host: str = "127.0.0.1", port: int = 9464,
                  alerts_token: bytes | None = None,
                  max_connections: int = MAX_CONNECTIONS, max_pending: int = MAX_PENDING,
                  timeout_s: float = TIMEOUT_S, max_body: int = MAX_ALERT_BODY) -> MetricsServer:
    """Serve `render(accept)` (the exposition in the format choose_encoder picks for that
    Accept header, e.g. Exposition.render) at /metrics, `health()` at /healthz and the
    alert receiver at /alerts (requiring `alerts_token` as a bearer token when given).
    Every request, head and body, must arrive within `timeout_s` of its connection."""
    server_class: type[BoundedWSGIServer] = type(
        "Server", (BoundedWSGIServer,), {"max_connections": max_connections,
                                         "max_pending": max_pending,
                                         "request_timeout_s": timeout_s})
    handler_class: type[Handler] = type("Handler", (Handler,), {"timeout": timeout_s})
    server = server_class((host, port), handler_class)  # what wsgiref's make_server does
    server.set_app(make_app(render, health, alerts_token=alerts_token, max_body=max_body,
                            timeout_s=timeout_s))
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
