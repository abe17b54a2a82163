"""`collector serve` as a real process, scraped by a real Prometheus."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fixtures_prom import PrometheusFactory
from tests.helpers import FAST_MEASUREMENT, TINY_MODELS
from tests.pg_server import PostgresServer, free_port
from tests.prom_servers import PushgatewayServer

ROOT = Path(__file__).parents[2]


def bench(name: str, model: str = "bert", **fields: Any) -> dict[str, Any]:
    return {"name": name, "model": TINY_MODELS[model], "sequence_length": 8,
            "measurement": FAST_MEASUREMENT, **fields}


def write(path: Path, suites: dict[str, Any], **serve: Any) -> Path:
    with path.open("w") as handle:
        YAML().dump({"version": 1, "serve": {"grace_s": 10, **serve}, "suites": suites},
                    handle)
    return path


class Serve:
    """A running `collector serve` subprocess on a free port."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.port = free_port()
        self.log = config.with_suffix(".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--config", str(config), "--port",
             str(self.port), *extra], cwd=ROOT, stdout=self.log.open("w"),
            stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.2)
        raise AssertionError(f"serve did not come up:\n{self.log.read_text()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def wait_log(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log.read_text()}"
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def serving() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait()


def store_rows(query: str) -> list[tuple[Any, ...]]:
    path = Path(os.environ["COLLECTOR_DATA_DIR"]) / "collector.db"
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def test_schedule_lists_next_run_times(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yml", {
        "hourly": {"schedule": {"cron": "0 * * * *"}, "benchmarks": [bench("a")]},
        "often": {"schedule": {"interval_s": 90}, "benchmarks": [bench("b", sequence_length=16)]},
        "manual": {"benchmarks": [bench("c", sequence_length=32)]}})
    proc = subprocess.run([sys.executable, "-m", "collector", "schedule", "--config",
                           str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.strip().splitlines())
    assert lines["hourly"].startswith("cron '0 * * * *' (UTC); next: ")
    assert lines["hourly"].count(":00:00+00:00") == 3
    assert lines["often"].startswith("every 90 s (UTC); next: ")
    assert lines["manual"] == "not scheduled (run-once only)"


def test_prometheus_scrapes_serve_and_sees_the_stored_values(
        tmp_path: Path, serving: list[Serve], prometheus_factory: PrometheusFactory,
        promtool: str) -> None:
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert"), bench("vit", "vit")]}})
    serve = Serve(config, "--run-at-start")
    serving.append(serve)
    serve.wait_log("suite s: ok, 2 result(s), 0 failed")
    prometheus = prometheus_factory([{"job_name": "collector",
                                      "targets": [f"127.0.0.1:{serve.port}"]}])
    result = prometheus.wait_for(
        'collector_benchmark_latency_seconds{benchmark="bert",percentile="50"}')
    (sample,) = result
    labels = sample["metric"]
    assert labels["job"] == "collector" and labels["suite"] == "s"
    assert labels["task"] == "text-classification" and labels["dtype"] == "float32"
    assert labels["batch_size"] == "1" and labels["sequence_length"] == "8"
    (stored,) = store_rows("SELECT m.value FROM measurements m JOIN series s USING (series_id) "
                           "WHERE s.name = 'bert' AND m.metric = 'latency_p50_seconds'")
    assert float(sample["value"][1]) == pytest.approx(stored[0])
    for query in ('collector_runs_total{status="ok"}', "collector_build_info",
                  'collector_scheduler_next_run_timestamp_seconds{suite="s"}',
                  'collector_benchmark_peak_memory_bytes{kind="rss",benchmark="vit"}'):
        assert prometheus.wait_for(query), query
    proc = subprocess.run([promtool, "check", "metrics"], input=serve.metrics().encode(),
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert serve.stop() == 0


def test_crashing_and_hanging_benchmarks_do_not_stop_the_service(
        tmp_path: Path, serving: list[Serve]) -> None:
    bad = bench("bad")
    bad["model"] = {**bad["model"], "config": {"hidden_size": 30, "num_attention_heads": 4}}
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 4}, "benchmarks": [
        bad, bench("hang", timeout_s=0.05, batch_size=2), bench("good")]}})
    serve = Serve(config, "--run-at-start")
    serving.append(serve)
    deadline = time.monotonic() + 120
    while len(store_rows("SELECT run_id FROM runs")) < 2:
        assert time.monotonic() < deadline, serve.log.read_text()
        assert serve.proc.poll() is None, serve.log.read_text()
        time.sleep(0.5)
    text = serve.metrics()
    assert 'collector_runs_total{host=' in text
    failures = {line.split("} ")[0]: float(line.split("} ")[1]) for line in text.splitlines()
                if line.startswith("collector_benchmark_failures_total{")}
    kinds = {key.split('kind="')[1].split('"')[0]: v for key, v in failures.items()}
    assert kinds["exception"] >= 2 and kinds["timeout"] >= 2
    success = [line for line in text.splitlines() if line.startswith(
        "collector_benchmark_last_success_timestamp_seconds{") and 'benchmark="good"' in line]
    assert success and float(success[0].split()[-1]) > time.time() - 120
    with urllib.request.urlopen(f"{serve.url}/healthz", timeout=5) as response:
        assert response.status == 200
    assert serve.stop() == 0


def test_sigterm_mid_run_records_an_aborted_run_and_restart_restores_gauges(
        tmp_path: Path, serving: list[Serve]) -> None:
    slow = bench("slow", measurement={**FAST_MEASUREMENT, "min_duration_s": 60,
                                      "max_duration_s": 60})
    config = write(tmp_path / "c.yml", {
        "quick": {"benchmarks": [bench("quick", "vit")]},  # not scheduled: run-once only
        "long": {"schedule": {"interval_s": 3600},
                 "benchmarks": [slow, bench("never-run", "clip")]}}, grace_s=1)
    first = subprocess.run([sys.executable, "-m", "collector", "run-once", "--config",
                            str(config), "--suite", "quick"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    serve = Serve(config, "--run-at-start")
    serving.append(serve)
    serve.wait_log("suite long: starting")
    time.sleep(3)  # the slow benchmark is measuring
    before = [line for line in serve.metrics().splitlines()
              if line.startswith("collector_benchmark_latency_seconds{")]
    assert before
    started = time.monotonic()
    assert serve.stop() == 0
    assert time.monotonic() - started < 15  # grace 1 s, then the worker is killed
    runs = dict(store_rows("SELECT suite, status FROM runs"))
    assert runs == {"quick": "ok", "long": "aborted"}
    long_results = store_rows("SELECT r.status, f.kind FROM results r JOIN runs USING (run_id) "
                              "LEFT JOIN failures f USING (run_id, series_id) "
                              "WHERE runs.suite = 'long'")
    assert long_results == [("failed", "aborted")]  # never-run was not started
    again = Serve(config)  # no run at start: everything shown comes from the store
    serving.append(again)
    after = [line for line in again.metrics().splitlines()
             if line.startswith("collector_benchmark_latency_seconds{")]
    assert after == before
    assert again.stop() == 0


def test_two_suites_due_at_once_never_overlap(tmp_path: Path, serving: list[Serve]) -> None:
    config = write(tmp_path / "c.yml", {
        "a": {"schedule": {"interval_s": 2}, "benchmarks": [bench("a1"), bench("a2", "vit")]},
        # Another workload each (a workload is one series, whatever the suite).
        "b": {"schedule": {"interval_s": 2}, "benchmarks": [bench("b1", sequence_length=16),
                                                             bench("b2", "vit", batch_size=2)]}})
    serve = Serve(config, "--run-at-start")
    serving.append(serve)
    deadline = time.monotonic() + 120
    while len(store_rows("SELECT run_id FROM runs")) < 4:
        assert time.monotonic() < deadline, serve.log.read_text()
        time.sleep(0.5)
    assert serve.stop() == 0
    spans = sorted(store_rows("SELECT started_at, finished_at FROM results"))
    assert len(spans) >= 8
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans
    suites = {suite for (suite,) in store_rows("SELECT suite FROM runs")}
    assert suites == {"a", "b"}


def test_run_once_pushes_to_a_pushgateway_read_back_through_prometheus(
        tmp_path: Path, pushgateway: PushgatewayServer,
        prometheus_factory: PrometheusFactory) -> None:
    config = write(tmp_path / "c.yml", {"adhoc": {"benchmarks": [bench("bert")]}})
    proc = subprocess.run([sys.executable, "-m", "collector", "run-once", "--config",
                           str(config), "--push", pushgateway.url, "--host", "bench-7"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"pushed suite adhoc to {pushgateway.url}" in proc.stderr
    prometheus = prometheus_factory([{"job_name": "pushgateway", "honor_labels": True,
                                      "targets": [pushgateway.address]}])
    (sample,) = prometheus.wait_for(
        'collector_benchmark_latency_seconds{benchmark="bert",percentile="50"}')
    assert sample["metric"]["job"] == "collector"
    assert sample["metric"]["instance"] == "bench-7"
    assert sample["metric"]["suite"] == "adhoc"
    assert sample["metric"]["host"] == "bench-7"


def test_a_pushgateway_that_is_down_is_a_warning(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yml", {"adhoc": {"benchmarks": [bench("bert")]}})
    gone = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "collector", "run-once", "--config",
                           str(config), "--push", gone], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: could not push suite adhoc to {gone}" in proc.stderr
    assert "stored in" in proc.stderr


def test_outbox_is_retried_on_a_timer(tmp_path: Path, serving: list[Serve],
                                      pg_server: PostgresServer, pg_url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from collector.adapters.store.postgres import PostgresStore

    PostgresStore(pg_url).close()  # schema in place
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", pg_url)
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}},
                   outbox_retry_s=1)
    pg_server.stop()
    serve = Serve(config, "--run-at-start")
    serving.append(serve)
    serve.wait_log("1 run(s) wait in the outbox")
    assert "collector_outbox_pending_runs 1.0" in serve.metrics()
    pg_server.start()
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM runs").fetchone()
        if row == (1,):
            break
        assert time.monotonic() < deadline, serve.log.read_text()
        time.sleep(0.5)
    assert "collector_outbox_pending_runs 0.0" in serve.metrics()
    assert serve.stop() == 0
