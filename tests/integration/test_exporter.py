"""The exporter against a real store, over real HTTP, checked by the real promtool, the
OpenMetrics parser and a real Prometheus."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics
from prometheus_client.parser import text_string_to_metric_families

from collector.adapters.http import MetricsServer, serve_metrics
from collector.adapters.store import SQLiteStore
from collector.domain.series import SERIES_LABELS
from collector.present.exposition import Exposition, ServiceCollector, StoreCollector
from tests.fixtures_prom import PrometheusFactory
from tests.helpers import make_run

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
BUILD = {"version": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# The Accept header Debian's Prometheus 2.42 scrapes with (its scrape.go; checked against a
# real one in test_prometheus_scrapes_openmetrics).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def scrape(store: SQLiteStore, **kwargs: object) -> Samples:
    registry = CollectorRegistry()  # never the global one
    registry.register(StoreCollector(store))
    registry.register(ServiceCollector(BUILD, **kwargs))  # type: ignore[arg-type]
    return samples_of(text_string_to_metric_families(generate_latest(registry).decode()))


def samples_of(families: Iterable[Metric]) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


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
    assert find(samples, "collector_benchmark_latency_seconds", benchmark="bert",
                percentile="50") == [0.04]
    assert find(samples, "collector_benchmark_latency_seconds", benchmark="bert",
                percentile="90") == [pytest.approx(0.044)]
    assert find(samples, "collector_benchmark_throughput_samples_per_second",
                benchmark="bert") == [pytest.approx(25.0)]
    assert find(samples, "collector_benchmark_peak_memory_bytes", benchmark="bert",
                kind="rss") == [3e8]
    # vit failed in the second run: its last success is the first run.
    vit_ok = find(samples, "collector_benchmark_last_success_timestamp_seconds", benchmark="vit")
    vit_run = find(samples, "collector_benchmark_last_run_timestamp_seconds", benchmark="vit")
    assert vit_ok[0] < vit_run[0]
    assert find(samples, "collector_benchmark_failures_total", benchmark="vit",
                kind="timeout") == [1.0]
    assert find(samples, "collector_benchmark_results_total", benchmark="vit",
                status="ok") == [1.0]
    assert find(samples, "collector_runs_total", suite="s", status="partial") == [1.0]
    assert find(samples, "collector_runs_total", suite="s", status="ok") == [1.0]
    assert find(samples, "collector_build_info", torch="2.13.0") == [1.0]
    assert find(samples, "collector_outbox_pending_runs") == [2.0]
    labels = dict(next(ls for (n, ls) in samples if n == "collector_benchmark_latency_seconds"))
    assert set(labels) == {*SERIES_LABELS, "percentile"}


def test_each_series_says_the_quality_of_its_latest_result(tmp_path: Path) -> None:
    """The reading of a result on /metrics (collector.analysis.reading): a state set a
    dashboard can colour, the other processes' CPU share and the median's uncertainty."""
    store = SQLiteStore(tmp_path / "q.db")
    store.record_run(make_run(when=T0, other_cpu_fraction=0.02))
    store.record_run(make_run(when=T0 + timedelta(hours=1), other_cpu_fraction=0.6,
                              models=("bert",)))
    samples = scrape(store)
    store.close()
    states = {quality: find(samples, "collector_benchmark_quality", benchmark="bert",
                            quality=quality) for quality in ("clean", "disturbed",
                                                             "unconverged")}
    assert states == {"clean": [0.0], "disturbed": [1.0], "unconverged": [0.0]}
    assert find(samples, "collector_benchmark_quality", benchmark="vit",
                quality="clean") == [1.0]
    assert find(samples, "collector_benchmark_other_cpu_ratio", benchmark="bert") == [0.6]
    assert find(samples, "collector_benchmark_rel_ci_ratio", benchmark="vit") == [0.005]


def test_a_restart_shows_the_same_values_at_once(store: SQLiteStore, tmp_path: Path) -> None:
    before = scrape(store)
    store.close()
    reopened = SQLiteStore(tmp_path / "local.db")
    assert scrape(reopened) == before


def test_new_runs_show_up_on_the_next_scrape(store: SQLiteStore) -> None:
    exposition = Exposition(store, ServiceCollector(BUILD))
    assert b'benchmark="bert"' in exposition.render()
    assert exposition.render() == exposition.render()  # cached between runs
    store.record_run(make_run(when=T0 + timedelta(hours=2), latency=0.02))
    fresh = exposition.render().decode()
    line = next(x for x in fresh.splitlines() if x.startswith(
        "collector_benchmark_latency_seconds{") and 'benchmark="bert"' in x and '"50"' in x)
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


@pytest.fixture
def endpoint(store: SQLiteStore) -> Iterator[MetricsServer]:
    exposition = Exposition(store, ServiceCollector(BUILD, outbox_pending=store.pending_count,
                                                    next_runs=lambda: {"s": T0}))
    server = serve_metrics(exposition.render, lambda: (True, "ok"), port=0)
    yield server
    server.stop()


def get_metrics(server: MetricsServer, **headers: str) -> tuple[str, str | None, bytes]:
    """(Content-Type, Content-Encoding, body) of GET /metrics."""
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return (response.headers["Content-Type"], response.headers["Content-Encoding"],
                response.read())


def parse_openmetrics(body: bytes) -> Samples:
    """Every sample of a body the OpenMetrics parser reads to its end, which must be the
    one `# EOF`."""
    text = body.decode()
    assert text.endswith("\n# EOF\n") and text.count("# EOF") == 1
    families = openmetrics.text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    return samples_of(families)


def test_openmetrics_is_served_when_the_scraper_asks_for_it(
        store: SQLiteStore, endpoint: MetricsServer) -> None:
    content_type, _, body = get_metrics(endpoint, Accept=PROMETHEUS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    samples = parse_openmetrics(body)
    assert find(samples, "collector_benchmark_latency_seconds", benchmark="bert",
                percentile="50") == [0.04]
    assert find(samples, "collector_benchmark_results_total", benchmark="vit",
                status="ok") == [1.0]
    assert find(samples, "collector_runs_total", suite="s", status="partial") == [1.0]
    assert find(samples, "collector_build_info", torch="2.13.0") == [1.0]
    assert find(samples, "collector_scheduler_next_run_timestamp_seconds",
                suite="s") == [T0.timestamp()]
    assert find(samples, "collector_benchmark_last_run_timestamp_seconds", benchmark="vit") == [
        pytest.approx((T0 + timedelta(hours=1)).timestamp(), abs=60)]  # Unix seconds
    store.record_run(make_run(when=T0 + timedelta(hours=2), latency=0.02))  # a new version
    again = parse_openmetrics(get_metrics(endpoint, Accept=PROMETHEUS_ACCEPT)[2])
    assert find(again, "collector_benchmark_latency_seconds", benchmark="bert",
                percentile="50") == [0.02]
    assert find(again, "collector_runs_total", suite="s", status="ok") == [2.0]


@pytest.mark.parametrize("accept", [None, "text/plain", "*/*", "application/json"])
def test_classic_text_otherwise_with_the_same_samples(endpoint: MetricsServer,
                                                      accept: str | None) -> None:
    openmetrics_samples = parse_openmetrics(get_metrics(endpoint, Accept=PROMETHEUS_ACCEPT)[2])
    content_type, _, body = get_metrics(endpoint, **({} if accept is None else
                                                     {"Accept": accept}))
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in body
    assert samples_of(text_string_to_metric_families(body.decode())) == openmetrics_samples
    _, _, later = get_metrics(endpoint, Accept=PROMETHEUS_ACCEPT)  # each format its own cache
    assert parse_openmetrics(later) == openmetrics_samples


def test_openmetrics_gzipped(endpoint: MetricsServer) -> None:
    content_type, encoding, body = get_metrics(endpoint, Accept=PROMETHEUS_ACCEPT,
                                               **{"Accept-Encoding": "gzip"})
    assert content_type.startswith("application/openmetrics-text")
    assert encoding == "gzip"
    plain = get_metrics(endpoint, Accept=PROMETHEUS_ACCEPT)[2]
    assert gzip.decompress(body) == plain
    assert find(parse_openmetrics(gzip.decompress(body)), "collector_benchmark_failures_total",
                benchmark="vit", kind="timeout") == [1.0]


def test_the_store_part_is_cached_for_prometheus_and_within_bounds(store: SQLiteStore) -> None:
    exposition = Exposition(store, ServiceCollector(BUILD))
    exposition.render()  # what the scheduler does after a run: Prometheus' format is warm
    assert set(exposition._parts) == {"text/plain; version=0.0.4; charset=utf-8",
                                      choose_encoder(PROMETHEUS_ACCEPT)[1]}
    for minor in range(10):
        parse_openmetrics(exposition.render(f"application/openmetrics-text; version=1.0.{minor}"))
    assert len(exposition._parts) == len(exposition._encoders) == Exposition.formats_kept


def test_prometheus_scrapes_openmetrics(store: SQLiteStore,
                                        prometheus_factory: PrometheusFactory) -> None:
    exposition = Exposition(store, ServiceCollector(BUILD))
    accepted: list[str] = []

    def render(accept: str) -> bytes:
        accepted.append(accept)
        return exposition.render(accept)

    server = serve_metrics(render, lambda: (True, "ok"), port=0)
    try:
        host, port = server.address
        prometheus = prometheus_factory([{"job_name": "collector",
                                          "targets": [f"{host}:{port}"]}])
        assert prometheus.wait_for('up{job="collector"} == 1')
        (ok,) = prometheus.wait_for(
            'collector_benchmark_results_total{benchmark="vit",status="ok"}')
        assert float(ok["value"][1]) == 1.0
        (latency,) = prometheus.wait_for(
            'collector_benchmark_latency_seconds{benchmark="bert",percentile="50"}')
        assert float(latency["value"][1]) == 0.04
        assert prometheus.wait_for('collector_build_info{version="0.1.0"}')
        (target,) = prometheus.targets()
        assert target["health"] == "up" and target["lastError"] == ""
    finally:
        server.stop()
    assert accepted and set(accepted) == {PROMETHEUS_ACCEPT}
    assert choose_encoder(accepted[0])[1].startswith("application/openmetrics-text")


def test_a_pushed_run_renders_exactly_what_the_store_would_export(tmp_path: Path) -> None:
    """push_run renders a run's families from the run itself (RunCollector): the same
    samples a store holding only that run exports, failures and every catalogue family
    (export time, instructions) included."""
    from collector.present.exposition import RunCollector

    run = make_run(when=T0, fail="vit", other_cpu_fraction=0.3,
                   metrics={"export_time_seconds": 4.5, "instructions_per_iteration": 1.5e7})
    store = SQLiteStore(tmp_path / "only-this-run.db")
    store.record_run(run)
    from_store = CollectorRegistry()
    from_store.register(StoreCollector(store))
    from_run = CollectorRegistry()
    from_run.register(RunCollector(run))
    expected = samples_of(text_string_to_metric_families(generate_latest(from_store).decode()))
    got = samples_of(text_string_to_metric_families(generate_latest(from_run).decode()))
    store.close()
    assert got == expected
    assert find(got, "collector_benchmark_export_time_seconds") == [4.5]
    assert find(got, "collector_benchmark_failures_total", kind="timeout") == [1.0]
    assert find(got, "collector_benchmark_quality", quality="disturbed") == [1.0]
