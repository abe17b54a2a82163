"""The results document's summary block: counts, and best and worst per metric by the
catalogue's direction."""

from __future__ import annotations

from collector.present.documents import results_document
from tests.helpers import make_run


def test_counts_and_best_and_worst_follow_each_metrics_direction() -> None:
    fast = make_run(models=("bert", "vit"), latency=0.002)
    slow = make_run(models=("bert", "vit"), latency=0.010, fail="vit")
    summary = results_document([fast, slow])["summary"]
    assert {k: summary[k] for k in ("runs", "results", "ok", "failed")} == {
        "runs": 2, "results": 4, "ok": 3, "failed": 1}
    latency = summary["metrics"]["latency_p50_seconds"]
    assert latency["direction"] == "lower_is_better" and latency["results"] == 3
    assert latency["best"]["value"] == 0.002 and latency["worst"]["value"] == 0.010
    assert latency["worst"]["benchmark"] == "bert"  # slow vit failed: not a value
    assert latency["best"]["workload"].startswith(("bert float32 eager cpu bs=1 seq=8",
                                                   "vit float32 eager cpu bs=1 seq=8"))
    # Higher is better for throughput: its best is the fastest run's.
    rate = summary["metrics"]["throughput_samples_per_second"]
    assert rate["best"]["value"] == 500.0 and rate["worst"]["value"] == 100.0


def test_neutral_metrics_have_no_best_and_an_empty_document_has_zero_counts() -> None:
    run = make_run(models=("bert",), metrics={"model_size_bytes": 4e6})
    assert "model_size_bytes" not in results_document([run])["summary"]["metrics"]
    assert results_document([])["summary"] == {"runs": 0, "results": 0, "ok": 0,
                                               "failed": 0, "metrics": {}}
