"""The exporter against a real store, over real HTTP, checked by the real promtool."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.exporter import Exposition, ServiceCollector, StoreCollector
from collector.http import serve_metrics
from collector.store import SQLiteStore
from tests.helpers import make_run

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
BUILD = {"version": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(store: SQLiteStore, **kwargs: object) -> Samples:
    registry = CollectorRegistry()  # never the global one
    registry.register(StoreCollector(store))
    registry.register(ServiceCollector(BUILD, **kwargs))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def find(samples: Samples, metric: str,
         **labels: str) -> list[float]:
    return [v for (n, ls), v in samples.items()
            if n == metric and all(dict(ls).get(k) == val for k, val in labels.items())]


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    opened = SQLiteStore(tmp_path / "local.db")
    opened.record_run(make_run(when=T0, latency=0.05))
    opened.record_run(make_run(when=T0 + timedelta(hours=1), latency=0.04, fail="vit"))
    return opened


def test_values_come_from_the_latest_stored_results(store: SQLiteStore) -> None:
    samples = scrape(store, outbox_pending=store.pending_count)
    assert find(samples, "collector_benchmark_latency_seconds", name="bert",
                percentile="50") == [0.04]
    assert find(samples, "collector_benchmark_latency_seconds", name="bert",
                percentile="90") == [pytest.approx(0.044)]
    assert find(samples, "collector_benchmark_throughput_samples_per_second",
                name="bert") == [pytest.approx(25.0)]
    assert find(samples, "collector_benchmark_peak_memory_bytes", name="bert",
                kind="rss") == [3e8]
    # vit failed in the second run: its last success is the first run.
    vit_ok = find(samples, "collector_benchmark_last_success_timestamp_seconds", name="vit")
    vit_run = find(samples, "collector_benchmark_last_run_timestamp_seconds", name="vit")
    assert vit_ok[0] < vit_run[0]
    assert find(samples, "collector_benchmark_failures_total", name="vit",
                kind="timeout") == [1.0]
    assert find(samples, "collector_benchmark_results_total", name="vit",
                status="ok") == [1.0]
    assert find(samples, "collector_runs_total", suite="s", status="partial") == [1.0]
    assert find(samples, "collector_runs_total", suite="s", status="ok") == [1.0]
    assert find(samples, "collector_build_info", torch="2.13.0") == [1.0]
    assert find(samples, "collector_outbox_pending_runs") == [2.0]
    labels = dict(next(ls for (n, ls) in samples if n == "collector_benchmark_latency_seconds"))
    assert {"suite", "name", "model", "task", "backend", "device", "dtype", "batch_size",
            "sequence_length", "new_tokens", "host", "series_id"} <= set(labels)


def test_a_restart_shows_the_same_values_at_once(store: SQLiteStore, tmp_path: Path) -> None:
    before = scrape(store)
    store.close()
    reopened = SQLiteStore(tmp_path / "local.db")
    assert scrape(reopened) == before


def test_new_runs_show_up_on_the_next_scrape(store: SQLiteStore) -> None:
    exposition = Exposition(store, ServiceCollector(BUILD))
    assert b'name="bert",new_tokens="4",percentile="50"' in exposition.render()
    assert exposition.render() == exposition.render()  # cached between runs
    store.record_run(make_run(when=T0 + timedelta(hours=2), latency=0.02))
    fresh = exposition.render().decode()
    line = next(x for x in fresh.splitlines() if x.startswith(
        "collector_benchmark_latency_seconds{") and 'name="bert"' in x and '"50"' in x)
    assert float(line.split()[-1]) == 0.02


def test_exposition_passes_promtool(store: SQLiteStore, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/bootstrap.sh --services")
    text = Exposition(store, ServiceCollector(BUILD, outbox_pending=lambda: 0,
                                              next_runs=lambda: {"s": T0})).render()
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""


def test_http_endpoint_serves_metrics_and_health(store: SQLiteStore) -> None:
    exposition = Exposition(store, ServiceCollector(BUILD))
    healthy = [True]
    server = serve_metrics(exposition.render, lambda: (healthy[0], "scheduler alive" if healthy[0]
                                              else "scheduler dead"), port=0)
    try:
        host, port = server.address
        assert host == "127.0.0.1"
        base = f"http://{host}:{port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            body = response.read().decode()
        assert "collector_benchmark_latency_seconds{" in body
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}/healthz", timeout=10)
        assert caught.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nope", timeout=10)
        assert missing.value.code == 404
    finally:
        server.stop()
