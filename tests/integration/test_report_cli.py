"""`collector report` on results files and stored runs, as Markdown: what changed (two
sides) first, what needs a look, the fastest variant of each model, the findings run by
run, the results; clear errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from collector.adapters.store import SQLiteStore
from collector.present.documents import results_document
from tests.helpers import make_run
from tests.helpers import run_collector as collector

ROOT = Path(__file__).parents[2]


def results_file(tmp_path: Path) -> Path:
    """bert on eager (1.6 ms) and on ONNX Runtime (0.9 ms) in one run."""
    run = make_run(models=("bert",), latency=0.0016)
    [eager] = run.results
    spec = eager.spec.model_copy(update={"backend": "onnxruntime"})
    onnx = eager.model_copy(update={
        "spec": spec, "series_id": spec.series_id("host-a"),
        "metrics": {**eager.metrics, "latency_p50_seconds": 0.0009,
                    "export_time_seconds": 2.0}})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results_document(
        [run.model_copy(update={"results": (eager, onnx)})])))
    return path


def test_a_report_of_a_results_file(tmp_path: Path) -> None:
    path = results_file(tmp_path)
    proc = collector("report", str(path), "--high-latency-ms", "1")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("# Benchmark report\n\n2 successful results (0 failed) of 2 "
                           "workloads in 1 run from ")
    sections = ["## What needs a look", "## Fastest variant per model", "## Findings",
                "## Results", "## Where"]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)
    assert "## What changed" not in text  # one side: nothing to compare with
    # One table for the model across its variants, whatever the benchmarks are called.
    variants = text.split("## Fastest variant per model")[1].split("## Findings")[0]
    assert "| onnxruntime float32 | 0.90 ms (1.00x) |" in variants
    assert "| eager float32 | 1.60 ms (1.78x) |" in variants
    assert "| bert eager cpu bs=1 seq=8 @ host-a | p50 latency (ms) | 0.90 ms" not in text
    assert ("onnxruntime is 1.78x as fast as eager for bert at batch 1, sequence 8, float32 "
            "on cpu of host-a: 0.90 ms vs 1.60 ms; export took 2.00 s") in text
    # The threshold given: eager's 1.6 ms is above 1 ms, ONNX Runtime's 0.9 ms is not; the
    # finding names its run.
    findings = text.split("## Findings")[1].split("## Results")[0]
    assert "In run " in findings
    assert findings.count("**warning**: p50 latency 1.60 ms") == 1
    assert "0.90 ms for" not in findings.split("info")[0]
    out = tmp_path / "report.md"
    assert collector("report", str(path), "--output", str(out)).returncode == 0
    assert out.read_text().startswith("# Benchmark report")


def test_a_report_of_two_sides_leads_with_what_changed(tmp_path: Path) -> None:
    a = results_file(tmp_path)
    b = tmp_path / "b.json"
    run = make_run(models=("bert",), latency=0.0032)  # eager twice as slow
    b.write_text(json.dumps(results_document([run])))
    proc = collector("report", "--a", str(a), "--b", str(b))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.index("## What changed") < text.index("## What needs a look")
    changed = text.split("## What changed")[1].split("## What needs a look")[0]
    timed, exact = changed.split("Deterministic metrics")
    # The ratio is that of the values printed beside it, and the change is named.
    assert "| p50 latency (ms) | 1.60 ms | 3.20 ms | 2.000x |" in timed
    assert "**slower**" in timed
    # Peak memory equal on both sides: exact, 1.000x, the same.
    assert "| peak memory, RSS (MiB) |" in exact
    row = next(line for line in exact.splitlines() if "peak memory" in line)
    assert "| 1.000x | exact |" in row and row.endswith("| same |")
    both = collector("report", str(a), "--a", str(a), "--b", str(b))
    assert both.returncode == 2 and "not both" in both.stderr
    one = collector("report", "--a", str(a))
    assert one.returncode == 2 and "--a/--b" in one.stderr


def test_a_report_of_stored_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "local.db")
    try:
        store.record_run(make_run(models=("bert", "vit")))
    finally:
        store.close()
    proc = collector("report", "--local-store", str(tmp_path / "local.db"), "suite=s")
    assert proc.returncode == 0, proc.stderr
    assert "2 successful results (0 failed) of 2 workloads in 1 run from suite=s" \
        in proc.stdout


def test_data_strings_cannot_break_the_markdown(tmp_path: Path) -> None:
    run = make_run(models=("bert",), fail="bert")
    [failed] = run.results
    failed = failed.model_copy(update={"failure": failed.failure.model_copy(update={
        "message": "bad | cell <script>x</script> [link](http://x)\n# heading"})})
    ok = make_run(models=("vit",))
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results_document([
        run.model_copy(update={"results": (failed,)}), ok])))
    proc = collector("report", str(path))
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "**failed**" in x)
    assert "bad \\| cell \\<script\\>x\\</script\\> \\[link\\](http://x) # heading" in line
    assert "\n# heading" not in proc.stdout


def test_report_errors_are_clear(tmp_path: Path) -> None:
    path = results_file(tmp_path)
    missing_dir = collector("report", str(path), "--output", str(tmp_path / "no" / "r.md"))
    assert missing_dir.returncode == 3 and "does not exist" in missing_dir.stderr
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps(results_document([make_run(models=("bert",), fail="bert")])))
    nothing = collector("report", str(failed))
    assert nothing.returncode == 2 and "no successful result" in nothing.stderr
    bad = collector("report", str(path), "--low-throughput", "0")
    assert bad.returncode == 2 and "--low-throughput" in bad.stderr
    assert all("Traceback" not in p.stderr for p in (missing_dir, nothing, bad))
