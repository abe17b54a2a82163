"""`collector report` on results files and stored runs: Markdown with where, results and
the bottleneck findings; clear errors and exit codes."""

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
    assert text.startswith("# Benchmark report\n\n2 successful results of 2 workloads")
    for section in ("## Where", "## Results", "## Findings"):
        assert section in text
    assert "| bert float32 onnxruntime cpu bs=1 seq=8 | text-classification | " \
           "latency_p50_seconds | 0.90 ms |" in text
    assert ("onnxruntime is 1.78x eager for bert at batch 1, sequence 8, float32 on cpu of "
            "host-a: 0.90 ms vs 1.60 ms; export took 2.00 s") in text
    # The threshold given: eager's 1.6 ms is above 1 ms, ONNX Runtime's 0.9 ms is not.
    assert text.count("**warning** (high_latency)") == 1
    out = tmp_path / "report.md"
    assert collector("report", str(path), "--output", str(out)).returncode == 0
    assert out.read_text().startswith("# Benchmark report")


def test_a_report_of_stored_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "local.db")
    try:
        store.record_run(make_run(models=("bert", "vit")))
    finally:
        store.close()
    proc = collector("report", "--local-store", str(tmp_path / "local.db"), "suite=s")
    assert proc.returncode == 0, proc.stderr
    assert "2 successful results of 2 workloads from `suite=s`" in proc.stdout


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
