"""`collector report --format html`: one self-contained file that a real browser (Debian's
headless Chromium) opens with no network, whose charts render with no console error; its
size stays under a stated bound; its text is escaped."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.store import SQLiteStore
from collector.domain.model import BenchmarkResult, FailureKind, RunResult
from collector.present.documents import results_document
from tests.helpers import benchmark_yaml, make_run
from tests.helpers import run_collector as collector

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The bound we state for a report (README): plotly.js itself is ~4.8 MB of it.
SIZE_BOUND = 6 * 2**20
# Flags that keep headless Chromium off this machine's closed network and out of $HOME.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")
# Injected into a copy of the report, first thing in <head>: records script errors and
# console.error calls, then after load writes what rendered into the DOM for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.slice.call(arguments).join(' '));
  __consoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  setTimeout(function () {
    var charts = Array.prototype.map.call(document.querySelectorAll('div.chart'), function (c) {
      return {svg: c.querySelectorAll('svg.main-svg').length,
              traces: c.querySelectorAll('g.trace, g.trace.bars').length};
    });
    var probe = document.createElement('pre');
    probe.id = 'probe';
    probe.textContent = JSON.stringify({errors: window.__errors, charts: charts});
    document.body.appendChild(probe);
  }, 300);
});
</script>"""


def _variant(result: BenchmarkResult, host: str, *, metrics: dict[str, float],
             **spec: Any) -> BenchmarkResult:
    changed = result.spec.model_copy(update=spec)
    return result.model_copy(update={"spec": changed, "series_id": changed.series_id(host),
                                      "metrics": {**result.metrics, **metrics}})


def sweep_runs() -> list[RunResult]:
    """Thirty runs a day apart of a small matrix: bert at batch 1/4/8 and sequence 8/32,
    eager and ONNX Runtime, vit; bert's latency steps up 50 % from the 23rd run (a change
    the detector finds) with transformers 5.98.0 -> 5.99.0, and vit fails once with a
    message that must be escaped."""
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    runs = []
    for day in range(30):
        base = 0.001 * (1.5 if day >= 22 else 1.0) * (1 + 0.01 * (day % 3))
        run = make_run(models=("bert", "vit"), latency=base, when=start + timedelta(days=day),
                       metrics={"model_size_bytes": 4e6}, environment={
                           "transformers_version": "5.99.0" if day >= 22 else "5.98.0"},
                       fail="vit" if day == 5 else None)
        bert, vit = run.results
        results = [bert, vit] if day != 5 else [bert]
        if day == 5:
            results.append(vit.model_copy(update={"failure": vit.failure.model_copy(update={
                "kind": FailureKind.EXCEPTION,
                "message": "<img src=x onerror=alert(1)> exploded"})}))
        for batch in (4, 8):
            latency = base * batch * 0.6
            results.append(_variant(bert, run.host, batch_size=batch, metrics={
                "latency_p50_seconds": latency, "throughput_samples_per_second": batch / latency,
                "peak_rss_bytes": 3e8 + batch * 1e7}))
        for sequence in (32,):
            latency = base * 2.5
            results.append(_variant(bert, run.host, sequence_length=sequence, metrics={
                "latency_p50_seconds": latency,
                "throughput_input_tokens_per_second": sequence / latency}))
        results.append(_variant(bert, run.host, backend="onnxruntime", metrics={
            "latency_p50_seconds": base * 0.55, "export_time_seconds": 2.0}))
        bert_tokens = bert.model_copy(update={"metrics": {
            **bert.metrics, "throughput_input_tokens_per_second": 8 / base}})
        results[0] = bert_tokens
        runs.append(run.model_copy(update={"results": tuple(results)}))
    return runs


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    source = folder / "results.json"
    source.write_text(json.dumps(results_document(sweep_runs())))
    out = folder / "report.html"
    proc = collector("report", str(source), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    return out


def test_the_report_is_one_self_contained_file_under_its_size_bound(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert report.stat().st_size < SIZE_BOUND
    assert text.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no external script, style sheet, image or frame.
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link[^>]+href=", text)
    for section in ("Summary", "Results", "Comparisons", "Trends", "Regressions",
                    "Findings", "Failures", "Environment"):
        assert f">{section}</h2>" in text
    # Measured findings, the pivot's best-of-column mark, the failure's text escaped.
    assert "onnxruntime is 1.8" in text and "x eager for bert at batch 1" in text
    assert "&#9733;" in text
    assert "&lt;img src=x onerror=alert(1)&gt; exploded" in text
    assert "<img src=x" not in text
    # The trend of bert's headline carries the step the detector finds in these points.
    assert "detected here: regression +" in text


def test_chromium_renders_every_chart_without_errors(report: Path, tmp_path: Path) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace(
        "<head>", "<head>" + PROBE, 1), encoding="utf-8")
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=15000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the page never finished loading: " + dom.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    charts = probe["charts"]
    declared = len(re.findall(r'<div class="chart">', report.read_text(encoding="utf-8")))
    # By model, latency vs batch, throughput vs sequence, memory vs size, two trends.
    assert len(charts) == declared >= 6
    assert all(c["svg"] >= 1 and c["traces"] >= 1 for c in charts), charts

    shot = tmp_path / "report.png"
    taken = subprocess.run([CHROMIUM, *flags, "--window-size=1280,6000",
                            f"--screenshot={shot}", report.as_uri()],
                           capture_output=True, text=True, timeout=120, check=False)
    assert taken.returncode == 0, taken.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 50_000  # a page of charts, not a blank one
    if os.environ.get("COLLECTOR_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["COLLECTOR_KEEP_SCREENSHOT"])


def test_stored_runs_bring_their_regressions_into_the_report(tmp_path: Path) -> None:
    from collector.usecases.scan import ScanSettings, scan

    store = SQLiteStore(tmp_path / "local.db")
    runs = sweep_runs()
    for run in runs:
        store.record_run(run)
    scan(store, series_ids=[runs[-1].results[0].series_id], settings=ScanSettings())
    recorded = store.regressions()
    assert recorded, "the step in bert's latency must be a stored regression"
    # As the automatic A/B leaves it on the record (collector/usecases/cycle.py).
    [latency] = [r for r in recorded if r.metric == "latency_p50_seconds"]
    store.save_regression(dataclasses.replace(latency, ab={
        "text": "A/B: transformers==5.99.0 is 1.49x transformers==5.98.0, 95% CI "
                "1.41-1.57 (slower)", "verdict": "worse", "ratio": 1.49}))
    store.close()
    out = tmp_path / "stored.html"
    proc = collector("report", "suite=s", "--local-store", str(tmp_path / "local.db"),
                     "--config", str(tmp_path / "absent.yml"), "-o", str(out))
    # An absent config named on the command line is an error, not defaults.
    assert proc.returncode == 2 and "absent.yml" in proc.stderr
    # The config file's report section sets the thresholds: 0.5 ms makes every bert
    # latency a high-latency warning; the command line's flag overrides it.
    config = tmp_path / "collector.yml"
    config.write_text(json.dumps({"version": 1, "report": {"high_latency_ms": 0.5},
                                  "suites": {"s": {"benchmarks": [benchmark_yaml("bert")]}}}))
    proc = collector("report", "suite=s", "--local-store", str(tmp_path / "local.db"),
                     "--config", str(config), "--format", "html", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "(high_latency)" in text
    proc = collector("report", "suite=s", "--local-store", str(tmp_path / "local.db"),
                     "--config", str(config), "--high-latency-ms", "1000")
    assert proc.returncode == 0, proc.stderr
    assert "(high_latency)" not in proc.stdout
    regressions = text.split('id="regressions"')[1].split("</table>")[0]
    assert "<td>latency_p50_seconds</td>" in regressions
    assert "transformers_version 5.98.0 -&gt; 5.99.0" in regressions
    assert "A/B: transformers==5.99.0 is 1.49x transformers==5.98.0" in regressions
    assert "stored regression" in text  # marked on the trend too
