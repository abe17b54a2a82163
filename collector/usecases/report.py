"""`collector report` and the API's reports: the runs reported with what the report shows
beside them: with a baseline, the comparison (what changed); the findings run by run,
grouped; the fastest variant of each model; the changes the detector finds in the trends'
points; the stored regressions of these series. Presented as HTML or Markdown
(collector/present/report_data.py)."""

from __future__ import annotations

from collections.abc import Sequence

from collector.analysis.compare import DEFAULT_RUN_NOISE, compare
from collector.analysis.findings import Thresholds, analyse_runs, group
from collector.analysis.variants import fastest_variants
from collector.detect.detector import replay
from collector.domain.catalogue import BUSY_CPU_FRACTION, METRICS
from collector.domain.detection import settings_for
from collector.domain.errors import InputError
from collector.domain.history import ResultsOfRun, Store, flatten
from collector.domain.model import BenchmarkResult
from collector.present.report_data import (
    DetectedChange,
    ReportData,
    trend_metrics,
    trend_series,
)
from collector.usecases.select import stored_regressions


def detected_changes(results: Sequence[BenchmarkResult]
                     ) -> dict[tuple[str, str], list[DetectedChange]]:
    """The changes the detector finds replaying each trend's points, by (series, metric)."""
    series = trend_series(results)
    found: dict[tuple[str, str], list[DetectedChange]] = {}
    for metric in trend_metrics(series):
        direction = METRICS[metric].direction
        for series_id, members in series.items():
            having = [r for r in members if metric in r.metrics]
            if len(having) < 2:
                continue
            values = [r.metrics[metric] for r in having]
            contaminated = [r.noise is not None and r.noise.other_cpu_fraction >= BUSY_CPU_FRACTION
                            for r in having]
            for change in replay(values, direction, settings_for(metric),
                                 contaminated=contaminated):
                at = having[change.start_index]
                found.setdefault((series_id, metric), []).append(DetectedChange(
                    at.finished_at, values[change.start_index],
                    f"detected here: {change.kind} {change.relative_change:+.1%} "
                    f"({change.status})"))
    return found


def report_data(runs: Sequence[ResultsOfRun], sides: Sequence[str], *,
                baseline_runs: Sequence[ResultsOfRun] | None = None,
                baseline: Sequence[str] = (), store: Store | None = None,
                thresholds: Thresholds | None = None,
                run_noise: float = DEFAULT_RUN_NOISE) -> ReportData:
    """What the report shows of `runs` (failed results included); with `baseline_runs`,
    what changed from them to `runs` (as `collector compare` A against B); with `store`, the
    stored regressions of their series. InputError when no result succeeded."""
    ok = [r for r in flatten(runs) if r.status == "ok"]
    if not ok:
        raise InputError("nothing to report: no successful result")
    comparison = None
    if baseline_runs is not None:
        comparison = compare(flatten(baseline_runs), ok, run_noise=run_noise)
        if not comparison.rows:
            raise InputError("nothing to compare: no workload has results on both sides")
    findings = analyse_runs([(run.run_id, [r for r in run.results if r.status == "ok"])
                             for run in runs], thresholds)
    return ReportData(runs=list(runs), findings=group(findings), sides=list(sides),
                      variants=fastest_variants(ok), comparison=comparison,
                      baseline=list(baseline),
                      regressions=stored_regressions(store, ok) if store is not None else (),
                      store_read=store is not None, detected=detected_changes(ok))
