"""What `collector serve` costs while it waits: /metrics scrape time, idle memory, CLI start.

  (a) /metrics with 1,000 series (one stored run of 1,000 benchmark results, 13 metrics
      each): the scrape computed from the store (first scrape after a new run: cache miss),
      a repeated scrape (cached by the store's data version), and both over real HTTP from
      the service's own endpoint. Goal: <= 20 ms.
  (b) idle RSS of a running `collector serve` after one run, main process and its
      forkserver (which holds torch and transformers for the workers) reported apart.
      Goal: <= 100 MB for the service process.
  (c) `collector --help` wall time, median of 10 fresh interpreters. Goal: <= 0.3 s.

    .venv/bin/python benchmarks/serve_overhead.py [--series 1000] [--repeat 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/ is not installed
    sys.path.insert(0, str(ROOT))

from collector.adapters.host import capture_host  # noqa: E402 - after the sys.path line
from collector.adapters.http import serve_metrics  # noqa: E402
from collector.adapters.store import SQLiteStore  # noqa: E402
from collector.domain.model import (  # noqa: E402
    BenchmarkResult,
    BenchmarkSpec,
    MeasurementInfo,
    RunResult,
    Task,
)
from collector.present.exposition import Exposition, ServiceCollector  # noqa: E402
from tests.helpers import spec_dict  # noqa: E402

METRIC_VALUES = {
    "latency_p50_seconds": 0.01, "latency_p90_seconds": 0.011, "latency_p99_seconds": 0.012,
    "latency_mean_seconds": 0.0105, "throughput_samples_per_second": 100.0,
    "throughput_input_tokens_per_second": 800.0, "load_time_seconds": 0.1,
    "peak_rss_bytes": 3e8, "load_peak_rss_bytes": 2.9e8, "model_size_bytes": 1e6,
    "time_to_first_token_p50_seconds": 0.002, "decode_tokens_per_second": 300.0,
    "inter_token_latency_mean_seconds": 0.003,
}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def big_run(series: int) -> RunResult:
    env = capture_host("bench-host")
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    results = []
    for i in range(series):
        spec = BenchmarkSpec.model_validate(spec_dict("bert", name=f"b{i}", batch_size=i + 1))
        results.append(BenchmarkResult(
            spec=spec, series_id=spec.series_id(env.host), status="ok",
            resolved_task=Task.TEXT_CLASSIFICATION, started_at=start, finished_at=start,
            environment=env, metrics=METRIC_VALUES, samples={"latency_seconds": [0.01] * 10},
            measurement=MeasurementInfo(iterations=10, warmup_iterations=1, duration_s=0.1,
                                        target_rel_ci=0.01, achieved_rel_ci=0.01,
                                        converged=True, stop_reason="converged")))
    return RunResult(run_id="0" * 31 + "1", suite="big", host=env.host, started_at=start,
                     finished_at=start, collector_version="0", results=tuple(results))


def timed(action: Any, repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - t0)
    seconds.sort()
    return {"p50_ms": statistics.median(seconds) * 1e3,
            "p95_ms": seconds[max(0, int(len(seconds) * 0.95) - 1)] * 1e3}


def scrape_figures(series: int, repeat: int, directory: Path) -> dict[str, Any]:
    store = SQLiteStore(directory / "scrape.db")
    store.record_run(big_run(series))
    samples = 0

    def cold() -> None:
        nonlocal samples
        samples = Exposition(store, ServiceCollector({"version": "0"})).render().count(b"\n")

    exposition = Exposition(store, ServiceCollector({"version": "0"}, outbox_pending=lambda: 0))
    exposition.render()
    server = serve_metrics(exposition.render, lambda: (True, "ok"), port=0)
    url = "http://{}:{}/metrics".format(*server.address)

    def http() -> None:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            response.read()

    try:
        figures = {"cold_compute": timed(cold, max(5, repeat // 3)),
                   "cached": timed(exposition.render, repeat),
                   "http_cached": timed(http, repeat)}
    finally:
        server.stop()
        store.close()
    return {"series": series, "exposition_lines": samples, **figures}


def idle_rss(directory: Path, isolation: str) -> dict[str, float]:
    directory = directory / isolation
    directory.mkdir()
    config = directory / "serve.yml"
    config.write_text(json.dumps({"version": 1, "serve": {"grace_s": 5}, "suites": {"s": {
        "schedule": {"interval_s": 3600}, "benchmarks": [{
            "name": "bert", "model": spec_dict("bert")["model"], "sequence_length": 8,
            "measurement": {"min_iterations": 3, "min_duration_s": 0, "max_duration_s": 0.3}}]}}}))
    log = directory / "serve.log"
    env = {**os.environ, "COLLECTOR_DATA_DIR": str(directory / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "collector", "serve", "--config", str(config),
                             "--port", "0", "--run-at-start", "--isolation", isolation],
                            cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "suite s: ok" not in log.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"serve did not finish its first run:\n{log.read_text()}")
            time.sleep(0.5)
        time.sleep(3)  # idle between runs
        main = psutil.Process(proc.pid)
        children = main.children(recursive=True)
        return {"serve_rss_mb": main.memory_info().rss / 2**20,
                "forkserver_rss_mb": sum(c.memory_info().rss for c in children) / 2**20,
                "helper_processes": len(children)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def help_seconds(runs: int = 10) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "collector"), "--help"], check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="collector-serve-bench-") as tmp:
        scrape = scrape_figures(args.series, args.repeat, Path(tmp))
        rss = idle_rss(Path(tmp), "forkserver")
        spawn = idle_rss(Path(tmp), "spawn")
    cli = help_seconds()
    result = {"scrape": scrape, "idle": rss, "idle_spawn": spawn, "help": cli,
              "loadavg_start": load_start,
              "loadavg_end": loadavg()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"(a) /metrics with {scrape['series']} series ({scrape['exposition_lines']} lines): "
          f"computed from the store p50 {scrape['cold_compute']['p50_ms']:.1f} ms / p95 "
          f"{scrape['cold_compute']['p95_ms']:.1f} ms; cached p50 "
          f"{scrape['cached']['p50_ms']:.1f} / p95 {scrape['cached']['p95_ms']:.1f} ms; over "
          f"HTTP (cached) p50 {scrape['http_cached']['p50_ms']:.1f} / p95 "
          f"{scrape['http_cached']['p95_ms']:.1f} ms; goal <= 20 ms")
    print(f"(b) idle serve after one run: service process {rss['serve_rss_mb']:.0f} MB "
          f"(goal <= 100 MB); forkserver holding torch for the workers "
          f"{rss['forkserver_rss_mb']:.0f} MB in {rss['helper_processes']:.0f} process(es); "
          f"with --isolation spawn: service {spawn['serve_rss_mb']:.0f} MB, helpers "
          f"{spawn['forkserver_rss_mb']:.0f} MB in {spawn['helper_processes']:.0f}")
    print(f"(c) collector --help: median {cli['median_s'] * 1e3:.0f} ms, min "
          f"{cli['min_s'] * 1e3:.0f} ms (goal <= 300 ms)")
    print(f"load average (1/5/15 min): start {load_start}, end {result['loadavg_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
