"""The results document's `summary` block (docs/results-format.md): how many runs and
results, and the best and worst result of each metric, as users of the original entry
point expect to find them without reading every run.

Best and worst follow the metric catalogue's direction (lower latency, higher throughput);
neutral metrics (model size, spread) have neither and are left out. They are taken over
every successful result in the document, whatever the workload: "the fastest workload
here", not a comparison of like with like (that is `collector compare`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collector.domain.catalogue import METRICS, Direction
from collector.domain.model import BenchmarkResult, RunResult


def _entry(result: BenchmarkResult, metric: str) -> dict[str, Any]:
    from collector.domain.series import workload_label

    return {"benchmark": result.spec.name, "workload": workload_label(result),
            "series_id": result.series_id, "value": result.metrics[metric]}


def summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    results = [r for run in runs for r in run.results]
    ok = [r for r in results if r.status == "ok"]
    metrics: dict[str, Any] = {}
    for name, definition in METRICS.items():
        having = [r for r in ok if name in r.metrics]
        if not having or definition.direction is Direction.NEUTRAL:
            continue
        ranked = sorted(having, key=lambda r: r.metrics[name])
        if definition.direction is Direction.HIGHER_IS_BETTER:
            ranked.reverse()
        metrics[name] = {"direction": definition.direction.value, "unit": definition.unit,
                         "results": len(having), "best": _entry(ranked[0], name),
                         "worst": _entry(ranked[-1], name)}
    return {"runs": len(runs), "results": len(results), "ok": len(ok),
            "failed": len(results) - len(ok), "metrics": metrics}
