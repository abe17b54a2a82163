"""Throwaway, real Prometheus, Pushgateway and Alertmanager servers for tests.

Each server runs as a child process in its own new directory under `base_dir` (config, data
and `server.log` all live there; `close()` removes it), listens only on 127.0.0.1 on a free
port it picks itself (kept across `stop()`/`start()`), and is ready when `start()` returns
(its `/-/ready` answers 200). Nothing is persisted anywhere else: the Debian packages' system
daemons, their /etc configs and /var/lib data are never used.

The binaries come from $PATH (or from $COLLECTOR_PROM_BINDIR when set); the Debian packages
prometheus, prometheus-pushgateway and prometheus-alertmanager install them
(`scripts/bootstrap.sh --services`). Config files are written as JSON, which is valid YAML.
HTTP uses only the standard library, always against http://127.0.0.1:<port>.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

from tests.pg_server import free_port

if TYPE_CHECKING:
    from typing import Self

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
HTTP_TIMEOUT_S = 10
POLL_INTERVAL_S = 0.25
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:9/unused"  # the discard port: nothing listens


# -- binaries -----------------------------------------------------------------------------

# What each binary is called: Debian prefixes the daemons with "prometheus-".
_BINARIES: dict[str, tuple[str, ...]] = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "pushgateway": ("prometheus-pushgateway", "pushgateway"),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}


def _which(binary: str) -> str | None:
    search_path = os.environ.get("COLLECTOR_PROM_BINDIR") or None  # None: $PATH
    for name in _BINARIES[binary]:
        found = shutil.which(name, path=search_path)
        if found is not None:
            return found
    return None


def prometheus_available() -> str | None:
    """None when all five binaries (prometheus, promtool, pushgateway, alertmanager, amtool)
    are here, else the reason they are not."""
    missing = [" or ".join(_BINARIES[binary]) for binary in _BINARIES if _which(binary) is None]
    if not missing:
        return None
    where = os.environ.get("COLLECTOR_PROM_BINDIR") or "$PATH"
    return (f"Prometheus binaries missing from {where}: {', '.join(missing)} (Debian packages "
            "prometheus, prometheus-pushgateway, prometheus-alertmanager; "
            "scripts/bootstrap.sh --services installs them)")


def binary_path(binary: str) -> str:
    found = _which(binary)
    if found is None:
        raise RuntimeError(prometheus_available())
    return found


def promtool_path() -> str:
    """The promtool binary; RuntimeError with the reason when it is missing."""
    return binary_path("promtool")


def amtool_path() -> str:
    """The amtool binary; RuntimeError with the reason when it is missing."""
    return binary_path("amtool")


# -- HTTP ---------------------------------------------------------------------------------

# No proxies: an http_proxy in the environment must not catch requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(method: str, url: str, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None,
                 timeout: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    """(status, body) of one request; HTTP error statuses are returned, not raised."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"only loopback test servers are contacted, not {url}")
    request = urllib.request.Request(url, data=body, method=method,
                                     headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _get_json(url: str) -> Any:
    """GET a Prometheus-style JSON API answer ({"status": "success", "data": ...}) and return
    its data; RuntimeError with the server's error otherwise."""
    status, body = http_request("GET", url)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
        error = (f"{answer.get('errorType')}: {answer.get('error')}"
                 if isinstance(answer, dict) and "error" in answer
                 else body.decode(errors="replace").strip())
        raise RuntimeError(f"GET {url} failed (HTTP {status}): {error}")
    return answer["data"]


# -- the servers --------------------------------------------------------------------------

class _Server:
    """One server process in its own directory; subclasses say which binary and flags."""

    name = "server"  # for directory names and messages
    binary = ""  # a key of _BINARIES

    def __init__(self, base_dir: Path) -> None:
        self.executable = binary_path(self.binary)
        base_dir = Path(base_dir).absolute()
        base_dir.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=base_dir))
        self.log_path = self.directory / "server.log"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    def _arguments(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """127.0.0.1:<port>, as a scrape target or webhook host."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running and self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return "(no server log yet)"
        return f"{self.name} log tail:\n" + "\n".join(tail)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start and wait until /-/ready answers 200; a no-op when already running.
        RuntimeError with the log tail when it exits or is not ready in time."""
        if self.is_running:
            return
        for attempt in range(3):
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [self.executable, *self._arguments()], cwd=self.directory,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                self._wait_until_ready()
                self._started_once = True
                return
            except RuntimeError:
                self.stop()
                # free_port() only says the port was free a moment ago: if someone took it
                # meanwhile, retry on another one (only before the first successful start:
                # after that the port is part of what callers were told).
                if (attempt < 2 and not self._started_once
                        and "address already in use" in self.log_tail(5)):
                    self.port = free_port()
                    continue
                raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer yet"
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.name} ({self.executable}) exited with "
                                   f"{self._process.returncode} before it was ready\n"
                                   f"{self.log_tail()}")
            try:
                status, body = http_request("GET", f"{self.url}/-/ready", timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}: {body.decode(errors='replace').strip()}"
            except OSError as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} on {self.address} was not ready within "
                                   f"{START_TIMEOUT_S}s ({last})\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; a no-op when stopped."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop if running and remove the server's directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} in {self.directory}>"


class _ScrapeJobRequired(TypedDict):
    job_name: str
    targets: list[str]  # host:port, e.g. pushgateway.address


class ScrapeJob(_ScrapeJobRequired, total=False):
    """One scrape job: a static list of targets. Leaving out scrape_interval means the
    global 1s."""

    honor_labels: bool
    metrics_path: str
    scrape_interval: str  # a Prometheus duration: "1s", "500ms"


class PrometheusServer(_Server):
    """Prometheus with `global: {scrape_interval: 1s, evaluation_interval: 1s}`, the given
    static scrape jobs, rule files (paths) and `extra_config` (top-level config sections,
    e.g. `{"alerting": {"alertmanagers": [{"static_configs": [{"targets": [am.address]}]}]}}`).
    TSDB in its directory; lifecycle API on, so `reload()` applies a new config.

    Prometheus hands new targets to its scrapers at most every 5 s, so the first samples of a
    job show up about 5-6 s after `start()` or `reload()`: use `wait_for()`, not sleeps."""

    name = "prometheus"
    binary = "prometheus"

    def __init__(self, base_dir: Path, scrape_jobs: Sequence[ScrapeJob] = (),
                 rule_files: Sequence[str | Path] = (),
                 extra_config: Mapping[str, Any] | None = None) -> None:
        super().__init__(base_dir)
        self.config_path = self.directory / "prometheus.yml"
        self.scrape_jobs: list[ScrapeJob] = list(scrape_jobs)
        self.rule_files = [Path(path).absolute() for path in rule_files]
        self.extra_config = dict(extra_config or {})
        self._write_config()

    def _write_config(self) -> None:
        scrape_configs = []
        for job in self.scrape_jobs:
            scrape: dict[str, Any] = {"job_name": job["job_name"],
                                      "static_configs": [{"targets": list(job["targets"])}]}
            for key in ("honor_labels", "metrics_path", "scrape_interval"):
                if key in job:
                    scrape[key] = job[key]
            scrape_configs.append(scrape)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(path) for path in self.rule_files],
                  "scrape_configs": scrape_configs, **self.extra_config}
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _arguments(self) -> list[str]:
        return [f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address={self.address}",
                "--web.enable-lifecycle"]

    def reload(self, scrape_jobs: Sequence[ScrapeJob] | None = None, *,
               rule_files: Sequence[str | Path] | None = None) -> None:
        """Rewrite the config (None keeps the current jobs / rule files; rule files are
        reread either way) and POST /-/reload; RuntimeError with Prometheus' error when it
        rejects the config (it then keeps running on the old one)."""
        if scrape_jobs is not None:
            self.scrape_jobs = list(scrape_jobs)
        if rule_files is not None:
            self.rule_files = [Path(path).absolute() for path in rule_files]
        self._write_config()
        status, body = http_request("POST", f"{self.url}/-/reload")
        if status != 200:
            raise RuntimeError(f"Prometheus rejected the new config (HTTP {status}): "
                               f"{body.decode(errors='replace').strip()}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query (GET /api/v1/query): the `data.result` list. RuntimeError with
        Prometheus' error for a bad query."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        data = _get_json(url)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, promql: str,
                 predicate: Callable[[list[dict[str, Any]]], bool] = bool,
                 timeout: float = 30) -> list[dict[str, Any]]:
        """Poll `query(promql)` every 0.25 s until `predicate(result)` (default: non-empty)
        and return that result; TimeoutError with the last result and the scrape targets'
        health when it does not happen within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                targets = [{key: target.get(key) for key in ("scrapeUrl", "health", "lastError")}
                           for target in self.targets()]
                raise TimeoutError(f"{promql!r} did not give the expected result within "
                                   f"{timeout}s; last result: {result}; targets: {targets}")
            time.sleep(POLL_INTERVAL_S)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (GET /api/v1/targets, `data.activeTargets`)."""
        data = _get_json(f"{self.url}/api/v1/targets?state=active")
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets


class PushgatewayServer(_Server):
    """A Pushgateway without persistence (it forgets everything when stopped)."""

    name = "pushgateway"
    binary = "pushgateway"

    def _arguments(self) -> list[str]:
        # Debian changes the default --persistence.file to /var/lib/...: turn it off.
        return [f"--web.listen-address={self.address}", "--persistence.file="]

    def push(self, job: str, text: str, **grouping: str) -> None:
        """PUT text-format metrics to /metrics/job/<job>[/<label>/<value>...], replacing that
        group; RuntimeError with the Pushgateway's answer when it refuses them."""
        path = "/".join(["metrics", "job", urllib.parse.quote(job, safe="")]
                        + [urllib.parse.quote(part, safe="")
                           for label, value in grouping.items() for part in (label, value)])
        status, body = http_request("PUT", f"{self.url}/{path}", text.encode(),
                                    {"Content-Type": "text/plain; version=0.0.4"})
        if status not in {200, 202}:
            raise RuntimeError(f"push to {path} refused (HTTP {status}): "
                               f"{body.decode(errors='replace').strip()}")

    def metrics_text(self) -> str:
        """GET /metrics: everything pushed plus the Pushgateway's own metrics."""
        status, body = http_request("GET", f"{self.url}/metrics")
        if status != 200:
            raise RuntimeError(f"GET {self.url}/metrics failed (HTTP {status})")
        return body.decode()


def default_alertmanager_config(webhook_url: str = DEFAULT_WEBHOOK_URL) -> dict[str, Any]:
    """A minimal valid config: every alert goes to one webhook, grouped fast (1s)."""
    return {
        "route": {"receiver": "webhook", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "webhook",
                       "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }


class AlertmanagerServer(_Server):
    """An Alertmanager with clustering off, using `config_path` if given, else a written
    `default_alertmanager_config(webhook_url)`."""

    name = "alertmanager"
    binary = "alertmanager"

    def __init__(self, base_dir: Path, config_path: Path | None = None,
                 webhook_url: str = DEFAULT_WEBHOOK_URL) -> None:
        super().__init__(base_dir)
        if config_path is None:
            config_path = self.directory / "alertmanager.yml"
            config_path.write_text(
                json.dumps(default_alertmanager_config(webhook_url), indent=2) + "\n")
        self.config_path = Path(config_path).absolute()

    def _arguments(self) -> list[str]:
        return [f"--config.file={self.config_path}",
                f"--storage.path={self.directory / 'data'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address="]  # empty: no gossip listener on 0.0.0.0:9094

    def alerts(self) -> list[dict[str, Any]]:
        """The current alerts (GET /api/v2/alerts)."""
        status, body = http_request("GET", f"{self.url}/api/v2/alerts")
        if status != 200:
            raise RuntimeError(f"GET {self.url}/api/v2/alerts failed (HTTP {status}): "
                               f"{body.decode(errors='replace').strip()}")
        alerts: list[dict[str, Any]] = json.loads(body)
        return alerts

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts (each alert: {"labels": {...}, "annotations": {...}, ...})."""
        status, body = http_request("POST", f"{self.url}/api/v2/alerts",
                                    json.dumps(list(alerts)).encode(),
                                    {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"POST {self.url}/api/v2/alerts failed (HTTP {status}): "
                               f"{body.decode(errors='replace').strip()}")
