"""`collector report` and the API's reports: the results gathered with what the report
shows beside them (the findings, the changes the detector finds in the trends' points, the
stored regressions of these series), for the Markdown or HTML presentation."""

from __future__ import annotations

from collections.abc import Sequence

from collector.analysis.findings import Thresholds, analyse
from collector.detect.detector import replay
from collector.domain.catalogue import METRICS
from collector.domain.detection import settings_for
from collector.domain.errors import InputError
from collector.domain.history import Store
from collector.domain.model import BenchmarkResult
from collector.present.html_report import (
    DetectedChange,
    ReportData,
    trend_metrics,
    trend_series,
)
from collector.usecases.select import stored_regressions

# Other processes' CPU share above which a run is left out of the detector's replay (as
# detection's contaminated_cpu_fraction default).
CONTAMINATED = 0.25


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
            contaminated = [r.noise is not None and r.noise.other_cpu_fraction >= CONTAMINATED
                            for r in having]
            for change in replay(values, direction, settings_for(metric),
                                 contaminated=contaminated):
                at = having[change.start_index]
                found.setdefault((series_id, metric), []).append(DetectedChange(
                    at.finished_at, values[change.start_index],
                    f"detected here: {change.kind} {change.relative_change:+.1%} "
                    f"({change.status})"))
    return found


def report_data(results: Sequence[BenchmarkResult], sides: Sequence[str], *,
                store: Store | None = None, thresholds: Thresholds | None = None) -> ReportData:
    """What the HTML report shows of `results` (failed ones included); with `store`, the
    stored regressions of their series. InputError when none succeeded."""
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        raise InputError("nothing to report: no successful result")
    return ReportData(results=ok, findings=analyse(ok, thresholds), sides=list(sides),
                      failed=[r for r in results if r.status != "ok"],
                      regressions=stored_regressions(store, ok) if store is not None else (),
                      store_read=store is not None, detected=detected_changes(ok))
