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
# A high-latency finding, alone or grouped.
HIGH_LATENCY = re.compile(r"p50 latency (above the threshold|\S+ ms for .* above the)")
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


def probe_in_chromium(page: Path, script: str, probe_id: str, tmp_path: Path) -> Any:
    """`page` with `script` first in its head, loaded by headless Chromium (no network):
    the JSON the script wrote into <pre id=probe_id> once the page had loaded."""
    probed = tmp_path / f"probed-{probe_id}.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + script, 1),
                      encoding="utf-8")
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=15000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(rf'<pre id="{probe_id}">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the page never finished loading: " + dom.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&amp;", "&"))


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
    sections = ["Summary", "What needs a look", "Fastest variant per model", "Findings",
                "Charts", "Trends", "Regressions", "Results", "Environment"]
    found = [text.index(f">{section}</h2>") for section in sections]
    assert found == sorted(found)
    assert ">What changed</h2>" not in text  # one side
    # Measured findings (the newest run's first, the others folded), one table per model
    # across its variants, the failure's text escaped.
    findings = text.split('id="findings"')[1].split('id="charts"')[0]
    assert "onnxruntime is 1.8" in findings and "x as fast as eager for bert at batch 1" in findings
    assert "<summary>Earlier runs: 29</summary>" in findings
    variants = text.split('id="variants"')[1].split('id="findings"')[0]
    assert "<td>onnxruntime float32</td>" in variants and "<td>eager float32</td>" in variants
    assert "&lt;img src=x onerror=alert(1)&gt; exploded" in text
    assert "<img src=x" not in text
    # The trend of bert's headline carries the step the detector finds in these points.
    assert "detected here: regression +" in text


def test_chromium_renders_every_chart_without_errors(report: Path, tmp_path: Path) -> None:
    probe = probe_in_chromium(report, PROBE, "probe", tmp_path)
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=15000"]
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
    assert HIGH_LATENCY.search(text)
    proc = collector("report", "suite=s", "--local-store", str(tmp_path / "local.db"),
                     "--config", str(config), "--high-latency-ms", "1000")
    assert proc.returncode == 0, proc.stderr
    assert not HIGH_LATENCY.search(proc.stdout)
    regressions = text.split('id="regressions"')[1].split("</table>")[0]
    assert "<td>latency_p50_seconds</td>" in regressions
    assert "transformers_version 5.98.0 -&gt; 5.99.0" in regressions
    assert "A/B: transformers==5.99.0 is 1.49x transformers==5.98.0" in regressions
    assert "stored regression" in text  # marked on the trend too


# What a reader of a two-sided report sees: the heading above the first table, and each
# chart's trace types and axis types as plotly laid them out.
READER = """<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var table = document.querySelector('table');
    var heading = table;
    while (heading && heading.tagName !== 'H2') {
      heading = heading.previousElementSibling || heading.parentElement;
    }
    var charts = Array.prototype.map.call(
      document.querySelectorAll('div.js-plotly-plot'), function (gd) {
        var layout = gd._fullLayout || {};
        return {types: gd.data.map(function (t) { return t.type; }),
                x: (layout.xaxis || {}).type, y: (layout.yaxis || {}).type,
                xTitle: ((layout.xaxis || {}).title || {}).text,
                yTitle: ((layout.yaxis || {}).title || {}).text,
                colours: gd.data.map(function (t) {
                  return (t.marker && t.marker.color) || null; })};
      });
    var probe = document.createElement('pre');
    probe.id = 'reader';
    probe.textContent = JSON.stringify({first: heading ? heading.textContent : null,
                                        firstRow: table.rows[1].textContent,
                                        charts: charts});
    document.body.appendChild(probe);
  }, 300);
});
</script>"""


def test_a_reader_of_a_two_sided_report_sees_what_changed_first(tmp_path: Path) -> None:
    runs = sweep_runs()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(results_document(runs[15:20])))  # before the step
    b.write_text(json.dumps(results_document(runs[25:30])))  # after it: bert 50% slower
    out = tmp_path / "ab.html"
    proc = collector("report", "--a", str(a), "--b", str(b), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    reader = probe_in_chromium(out, READER, "reader", tmp_path)
    # The first table a reader meets is what changed, its largest change first: bert's
    # latency, 1.5x, slower; its ratio is that of the values beside it.
    assert reader["first"] == "What changed"
    row = re.search(r"([\d.]+) ms([\d.]+) ms([\d.]+)x\[", reader["firstRow"])
    assert row, reader["firstRow"]
    a_ms, b_ms, ratio = map(float, row.groups())
    assert 1.45 < ratio < 1.55 and "slower" in reader["firstRow"]
    assert ratio == pytest.approx(b_ms / a_ms, abs=0.01)
    bars = [c for c in reader["charts"] if "bar" in c["types"]]
    assert bars, reader["charts"]
    for chart in reader["charts"]:
        # Bars on linear axes (their lengths compare); titles in words, with the unit.
        if "bar" in chart["types"]:
            assert chart["x"] == "linear" and chart["y"] == "category", chart
        titles = (chart["xTitle"] or "") + (chart["yTitle"] or "")
        assert "_seconds" not in titles and "_bytes" not in titles, chart
    assert any("p50 latency (ms)" in (c["xTitle"] or "") for c in bars)
    if os.environ.get("COLLECTOR_KEEP_SCREENSHOT"):
        shot = Path(os.environ["COLLECTOR_KEEP_SCREENSHOT"]).with_suffix(".ab.png")
        subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                        "--window-size=1280,2400", f"--screenshot={shot}",
                        out.as_uri()], capture_output=True, timeout=120, check=True)


HOSTILE_HOST = ('<a href="https://evil.example/login">sign in</a>'
                '<span style="color:red">urgent</span>')
# Counts, after plotly has drawn: elements made from the data's markup.
MARKUP_PROBE = """<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var charts = document.querySelectorAll('div.js-plotly-plot');
    var text = Array.prototype.map.call(charts, function (c) {
      return c.textContent; }).join(' ');
    var probe = document.createElement('pre');
    probe.id = 'markup';
    probe.textContent = JSON.stringify({
      charts: charts.length,
      links: document.querySelectorAll('a[href*="evil.example"]').length,
      styled: document.querySelectorAll('[style*="color:red"], [style*="color: red"]').length,
      shown: text.indexOf('<a href="https://evil.example/login">') >= 0});
    document.body.appendChild(probe);
  }, 300);
});
</script>"""


def test_markup_in_data_never_becomes_markup_in_the_charts(tmp_path: Path) -> None:
    """A results file from a pull request names its host with a link and styled text:
    plotly renders a subset of HTML in names, ticks and hover text, so every data string is
    escaped before it gets there; the page holds no element made from it, and shows the
    text as it is."""
    runs = [make_run(host=HOSTILE_HOST, when=datetime(2026, 11, 1, tzinfo=timezone.utc)
                     + timedelta(days=day), latency=0.001 * (1 + 0.01 * day),
                     metrics={"model_size_bytes": 4e6}) for day in range(3)]
    source = tmp_path / "hostile.json"
    source.write_text(json.dumps(results_document(runs)))
    out = tmp_path / "hostile.html"
    proc = collector("report", str(source), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    seen = probe_in_chromium(out, MARKUP_PROBE, "markup", tmp_path)
    assert seen["charts"] >= 2
    assert seen["links"] == 0 and seen["styled"] == 0, seen
    assert seen["shown"], "the host's text is shown as it is, escaped"
