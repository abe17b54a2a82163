"""The collector's HTTP endpoint: /metrics for Prometheus, /healthz for liveness, and
/alerts, an Alertmanager webhook receiver that writes each notification to the log (so the
stack shows alerts somewhere out of the box; real routes go to e-mail, Slack, pagers).

Binds to 127.0.0.1 unless configured otherwise. Served by the standard library's WSGI server,
a thread per request; the exposition text comes from the caller (collector.exporter).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("collector.alerts")

HealthCheck = Callable[[], tuple[bool, str]]
_MAX_ALERT_BODY = 1 << 20
StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scrape never blocks /healthz."""

    daemon_threads = True


def make_app(render: Callable[[], bytes],
             health: HealthCheck) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = render()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/alerts" and environ.get("REQUEST_METHOD") == "POST":
            status = _receive_alerts(environ)
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [(status + "\n").encode()]
        if path == "/healthz":
            ok, message = health()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [(message + "\n").encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics, /healthz or POST /alerts\n"]

    return app


def _receive_alerts(environ: dict[str, Any]) -> str:
    """Log an Alertmanager webhook notification: one line per alert."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "400 Bad Request"
    if not 0 < length <= _MAX_ALERT_BODY:
        return "400 Bad Request"
    try:
        body = json.loads(environ["wsgi.input"].read(length))
        alerts = body["alerts"]
    except (ValueError, KeyError, TypeError):
        return "400 Bad Request"
    for alert in alerts if isinstance(alerts, list) else []:
        labels = alert.get("labels", {}) if isinstance(alert, dict) else {}
        notes = alert.get("annotations", {}) if isinstance(alert, dict) else {}
        log.warning("alert %s: %s [%s] %s", alert.get("status", "?"),
                    labels.get("alertname", "?"), labels.get("severity", "?"),
                    notes.get("summary", ""))
    return "200 OK"


@dataclass
class MetricsServer:
    """A running endpoint; stop() shuts it down."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(render: Callable[[], bytes], health: HealthCheck, *,
                  host: str = "127.0.0.1", port: int = 9464) -> MetricsServer:
    """Serve `render()` (the exposition text) at /metrics and `health()` at /healthz."""
    server = make_server(host, port, make_app(render, health),
                         server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
