"""End to end: a real Prometheus scrapes a real `collector serve` whose store holds a
regression found by the real detector; the committed rules fire the regression alert and
a real Alertmanager, with the committed routing, delivers it to a webhook run by this test
with the series labels and the attribution in it."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.store import SQLiteStore
from collector.usecases.scan import scan
from tests.fixtures_prom import AlertmanagerFactory, PrometheusFactory
from tests.helpers import make_run
from tests.integration.test_serve import Serve, bench, write

ROOT = Path(__file__).parents[2]
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
ALERTMANAGER_YML = ROOT / "prometheus" / "alertmanager.yml"


TOKEN = "e2e-alerts-token-0123456789abcdef"  # noqa: S105 - the test's own throwaway token


class Webhook:
    """An HTTP receiver for Alertmanager's webhook notifications that, like the collector's
    /alerts, answers 401 without the bearer token."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received
        self.refused = 0
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    webhook.refused += 1
                    self.send_response(401)
                else:
                    received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [alert for note in self.received for alert in note["alerts"]
                if alert["labels"].get("alertname") == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


def _alertmanager_config(path: Path, webhook_url: str, token: str = TOKEN) -> Path:
    """The committed alertmanager.yml with its webhook pointed at the test's receiver, its
    bearer token read from a file holding `token` (the stack's is /run/secrets/alerts_token)
    and its grouping waits shortened (30 s and 5 min in production)."""
    token_file = path.with_name(path.stem + "-token")
    token_file.write_text(token + "\n")
    yaml = YAML()
    config = yaml.load(ALERTMANAGER_YML.read_text())
    config["route"]["group_wait"] = "1s"
    config["route"]["group_interval"] = "1s"
    for route in config["route"].get("routes", []):
        route.pop("group_wait", None)
        route.pop("group_interval", None)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            authorization = hook["http_config"]["authorization"]
            # (one hook object shared by the receivers through the YAML alias `*webhook`)
            assert authorization["credentials_file"] in ("/run/secrets/alerts_token",
                                                         str(token_file))
            authorization["credentials_file"] = str(token_file)
    with path.open("w") as handle:
        yaml.dump(config, handle)
    return path


def _seed_regression() -> dict[str, str]:
    """History in the collector's local store: 20 runs on transformers 5.23.0, then 8 runs
    30% slower on 5.24.0; the real detector scans after each run, as run-once does."""
    store = SQLiteStore(Path(os.environ["COLLECTOR_DATA_DIR"]) / "collector.db")
    start = datetime.now(timezone.utc) - timedelta(hours=28)
    try:
        for hour in range(28):
            slow = hour >= 20
            jitter = 1 + 0.01 * ((hour * 7) % 5 - 2)
            store.record_run(make_run(
                suite="s", models=("bert",), when=start + timedelta(hours=hour),
                latency=(0.013 if slow else 0.010) * jitter,
                environment={"transformers_version": "5.24.0" if slow else "5.23.0"}))
            scan(store)
        [reg] = [r for r in store.regressions(metric="latency_p50_seconds")
                 if r.status == "open"]
        [info] = store.list_series()
        return {"series_id": info.series_id, "model": info.model, "host": info.host,
                "benchmark": info.benchmark, "regression_id": reg.regression_id,
                "attribution": reg.attribution}
    finally:
        store.close()


def test_a_detected_regression_is_delivered_by_alertmanager(
        tmp_path: Path, webhook: Webhook, prometheus_factory: PrometheusFactory,
        alertmanager_factory: AlertmanagerFactory) -> None:
    seeded = _seed_regression()
    assert seeded["attribution"] == "transformers_version 5.23.0 -> 5.24.0"
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}})
    serve = Serve(config)
    try:
        assert f'regression_id="{seeded["regression_id"]}"' in serve.metrics()
        alertmanager = alertmanager_factory(_alertmanager_config(tmp_path / "am.yml",
                                                                 webhook.url))
        prometheus_factory(
            [{"job_name": "collector", "targets": [f"127.0.0.1:{serve.port}"]}], RULE_FILES,
            extra_config={"alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.address]}]}]}})
        deadline = time.monotonic() + 90
        while len(webhook.alerts("BenchmarkRegression")) < 3:
            assert time.monotonic() < deadline, f"nothing delivered: {webhook.received}"
            time.sleep(0.5)
        # p90 moved with p50, and throughput is 1/latency here: each is an alert of its own.
        assert {a["labels"]["metric"] for a in webhook.alerts("BenchmarkRegression")} == {
            "latency_p50_seconds", "latency_p90_seconds", "throughput_samples_per_second"}
        [alert] = [a for a in webhook.alerts("BenchmarkRegression")
                   if a["labels"]["metric"] == "latency_p50_seconds"]
        labels, notes = alert["labels"], alert["annotations"]
        assert alert["status"] == "firing"
        assert {k: labels[k] for k in seeded} == seeded
        assert (labels["metric"], labels["kind"], labels["status"], labels["severity"]) == (
            "latency_p50_seconds", "regression", "open", "page")
        assert notes["attribution"] == "transformers_version 5.23.0 -> 5.24.0"
        assert float(notes["relative_change"]) == pytest.approx(0.3, abs=0.05)
        assert f"series_id={seeded['series_id']}" in notes["description"]

        # The same notification sent to the collector's own receiver (the stack's default)
        # is logged, one line per alert.
        note = next(n for n in webhook.received
                    if any(a["labels"].get("alertname") == "BenchmarkRegression"
                           for a in n["alerts"]))
        request = urllib.request.Request(f"{serve.url}/alerts", json.dumps(note).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        serve.wait_log("alert firing: BenchmarkRegression [page]", timeout=30)
        assert webhook.refused == 0
    finally:
        assert serve.stop() == 0


def _page(name: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": "page", "instance": "e2e"},
            "annotations": {"summary": f"{name} from the e2e test"}}


@pytest.mark.parametrize("sent", ["the token", "a wrong token"])
def test_alertmanager_delivers_to_the_collectors_receiver_with_its_token(
        sent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        alertmanager_factory: AlertmanagerFactory) -> None:
    """The stack's default route, for real: Alertmanager with the committed config sends to
    a real `collector serve` whose /alerts requires the token file's content. With the same
    token the alert is logged; with another one the collector refuses it (401, logged once)
    and logs no alert."""
    token_file = tmp_path / "alerts_token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("COLLECTOR_ALERTS_TOKEN_FILE", str(token_file))
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}})
    serve = Serve(config)
    try:
        alertmanager = alertmanager_factory(_alertmanager_config(
            tmp_path / "am.yml", f"{serve.url}/alerts",
            TOKEN if sent == "the token" else "not-" + TOKEN))
        alertmanager.post_alerts([_page("CollectorE2ETokenCheck")])
        if sent == "the token":
            serve.wait_log("alert firing: CollectorE2ETokenCheck [page]", timeout=60)
        else:
            serve.wait_log("refused POST /alerts from 127.0.0.1: wrong bearer token", timeout=60)
            deadline = time.monotonic() + 60
            while "401" not in alertmanager.log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, alertmanager.log_tail()
                time.sleep(0.5)
            assert "CollectorE2ETokenCheck" not in serve.log.read_text()
        assert TOKEN not in serve.log.read_text()
    finally:
        assert serve.stop() == 0
