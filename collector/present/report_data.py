"""What `collector report` shows, gathered once by the use case (collector/usecases/report.py)
and presented as HTML (collector/present/html_report.py) or Markdown
(collector/present/markdown.py), in the same order: what changed (two sides), what needs a
look, the fastest variants, the findings run by run, then the detail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from collector.analysis.compare import value_text
from collector.analysis.reading import Reading, read
from collector.domain.catalogue import (
    BUSY_CPU_FRACTION,
    CHART_MEMORY,
    COST_METRICS,
    CURRENCY,
    METRICS,
    headline,
)
from collector.domain.history import ResultsOfRun, flatten
from collector.domain.series import workload_label

if TYPE_CHECKING:
    from collector.analysis.compare import Comparison
    from collector.analysis.findings import FindingGroup
    from collector.analysis.variants import VariantTable
    from collector.domain.history import Regression
    from collector.domain.model import BenchmarkResult

MAX_TREND_POINTS = 400  # per series: the newest, so one busy series cannot swell the file
# What a result's headline value is (collector.analysis.combine), said where it is shown.
HEADLINE_MEANING = ("its headline value (the best of its fresh-process repetitions), that "
                    "value's 95% uncertainty within its run, and its quality.")
ACTIVE = ("suspected", "open", "acknowledged")  # regression statuses that need a look
# What the cost section's figures are (collector/analysis/cost.py), said above them.
COST_MEANING = ("The latest result of each workload that has them, at the rates of the "
                "config's cost section when it ran (recorded with it): the host's price per "
                "hour over its output tokens (generation: every sequence of the batch, "
                "prefill included; under load: completed requests) or requests per second, "
                "and its measured energy per token at the grid's carbon intensity. A "
                "workload without a price for its host, a token or request rate or an energy "
                "counter has no figure.")


@dataclass(frozen=True)
class DetectedChange:
    """A change the detector finds in a trend's points: where it starts, and what it is."""

    time: datetime
    value: float
    text: str


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows."""

    runs: Sequence[ResultsOfRun]  # what is reported (side B when two sides are compared)
    findings: Sequence[FindingGroup]
    sides: Sequence[str]  # where the results came from (files, selectors)
    variants: Sequence[VariantTable] = ()
    comparison: Comparison | None = None  # A (`baseline`) against B (`sides`)
    baseline: Sequence[str] = ()
    regressions: Sequence[Regression] = ()  # stored ones for these series
    store_read: bool = False  # whether a store was asked for them (selectors)
    # The changes the detector finds replaying the trends' points, by (series, metric).
    detected: Mapping[tuple[str, str], Sequence[DetectedChange]] = field(default_factory=dict)
    busy_fraction: float = BUSY_CPU_FRACTION
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def results(self) -> list[BenchmarkResult]:
        """The successful results."""
        return [r for r in flatten(self.runs) if r.status == "ok"]

    @property
    def failed(self) -> list[tuple[ResultsOfRun, BenchmarkResult]]:
        return [(run, r) for run in self.runs for r in run.results if r.status != "ok"]

    @property
    def active_regressions(self) -> list[Regression]:
        return [r for r in self.regressions if r.status in ACTIVE]

    def reading(self, result: BenchmarkResult, metric: str | None = None) -> Reading:
        """`result`'s reading of `metric` (default: its headline)."""
        return read(result, metric or headline(result.metrics), busy_fraction=self.busy_fraction)

    def marked(self) -> list[tuple[ResultsOfRun, BenchmarkResult, Reading]]:
        """The successful results whose headline is not clean (busy host, not settled)."""
        out = []
        for run in self.runs:
            for result in run.results:
                if result.status == "ok":
                    reading = self.reading(result)
                    if reading.quality != "clean":
                        out.append((run, result, reading))
        return out

    def run_names(self) -> dict[str, str]:
        return {run.run_id: run_name(run) for run in self.runs}

    def findings_by_run(self) -> list[tuple[ResultsOfRun, list[FindingGroup], bool]]:
        """(run, its findings, whether it is the newest run of its suite and host), newest
        runs first."""
        by_run: dict[str, list[FindingGroup]] = {}
        for item in self.findings:
            by_run.setdefault(item.run or "", []).append(item)
        seen: set[tuple[str, str]] = set()
        out = []
        for run in sorted(self.runs, key=lambda r: r.started_at, reverse=True):
            newest = (run.suite, run.host) not in seen
            seen.add((run.suite, run.host))
            if run.run_id in by_run:
                out.append((run, by_run[run.run_id], newest))
        return sorted(out, key=lambda item: not item[2])


def run_name(run: ResultsOfRun) -> str:
    """How the report names a run: its id's first 8 digits, suite, host and start."""
    return f"run {run.run_id[:8]} ({run.suite} on {run.host}, {run.started_at:%Y-%m-%d %H:%M})"


def latest(results: Sequence[BenchmarkResult]) -> dict[str, BenchmarkResult]:
    """The newest result of each workload (and host), by label."""
    newest: dict[str, BenchmarkResult] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        newest[workload_label(result, host=True)] = result
    return dict(sorted(newest.items()))


def trend_series(results: Sequence[BenchmarkResult]) -> dict[str, list[BenchmarkResult]]:
    """The series the Trends section draws (two results or more), each its newest points,
    oldest first."""
    series: dict[str, list[BenchmarkResult]] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        series.setdefault(result.series_id, []).append(result)
    return {k: v[-MAX_TREND_POINTS:] for k, v in series.items() if len(v) >= 2}


def trend_metrics(series: dict[str, list[BenchmarkResult]]) -> list[str]:
    """The metrics the Trends section draws: each series' headline, and peak memory."""
    metrics: list[str] = []
    for members in series.values():
        for metric in (headline(members[-1].metrics), CHART_MEMORY):
            if metric not in metrics:
                metrics.append(metric)
    return metrics


def costed(results: Sequence[BenchmarkResult]) -> tuple[list[str], dict[str, BenchmarkResult]]:
    """The cost section: the cost and carbon metrics some latest result has (catalogue
    order), and the newest result of each workload that has any, by label ([] and {} when
    none has: the section is not shown)."""
    having = {label: r for label, r in latest(results).items()
              if any(m in r.metrics for m in COST_METRICS)}
    shown = [m for m in COST_METRICS if any(m in r.metrics for r in having.values())]
    return shown, having


def cost_text(result: BenchmarkResult, metric: str) -> str:
    """A cost or carbon figure with its unit: `0.693 USD` (a cost, in the currency its
    result recorded), `55.6 g` (grams CO2e); `-` where the result has none."""
    if metric not in result.metrics:
        return "-"
    value = value_text(metric, result.metrics[metric])
    if METRICS[metric].unit.startswith(CURRENCY):
        currency = result.environment.cost_currency
        return f"{value} {currency}" if currency else f"{value} (currency not recorded)"
    return f"{value} g"


def rates_text(result: BenchmarkResult) -> str:
    """The rates a result's figures were derived with: `2.5 USD/h, 400 gCO2e/kWh`."""
    env = result.environment
    parts = []
    if env.hourly_price is not None:
        parts.append(f"{env.hourly_price:g} {env.cost_currency or '(currency not recorded)'}/h")
    if env.grid_carbon_g_per_kwh is not None:
        parts.append(f"{env.grid_carbon_g_per_kwh:g} gCO2e/kWh")
    return ", ".join(parts) or "-"
