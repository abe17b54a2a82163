"""Two sides, one verdict per workload and metric: is B faster, slower or the same as A?

A side is a set of results (one or more runs of the same workloads: files, stored runs, the
previous runs of a series). Workloads are matched by their identity without the host (the
same model, task, backend, dtype, shapes, device and settings), so two hosts or two
environments compare too. On the log scale, so that the interval of a ratio is symmetric
in slower and faster:

- a side of 2 runs or more is represented by its runs' values (the unit of noise on a
  shared host is the run: repetitions of one run share its conditions, and as units they
  understate the noise; benchmarks/compare_calibration.py measured 23 % false verdicts
  that way);
- both sides with 2 runs or more: Welch's t interval of the difference of mean logs;
- one side with 2 runs or more and the other with one: the many-run side's t prediction
  interval for one more run;
- one run each: Welch's t over their fresh-process repetitions (else a bootstrap of the
  raw samples' medians), widened in quadrature by an assumed run-to-run noise
  (`run_noise`, a log-sd per side; nothing within one run can show it).

The verdict respects the noise: B is `worse` (slower) or `better` (faster) only when the
interval excludes a ratio of 1 and the change is beyond the metric's threshold (the
detector's minimum effect for it, or --threshold); everything else is `same`, never a
slowdown. Without an interval (one value each, no samples, no assumed noise) the threshold
alone decides, and the row says so.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from collector.analysis.reading import read
from collector.domain.catalogue import (
    COMPARE_SELECTION,
    METRICS,
    SAMPLE_PERCENTILES,
    Direction,
    Format,
)
from collector.domain.detection import settings_for
from collector.domain.model import BenchmarkResult
from collector.domain.series import PIVOT_DIMENSIONS, workload_key, workload_label
from collector.domain.stats import mean, percentile, stdev, t975

Verdict = Literal["better", "worse", "same"]
Method = Literal["welch", "prediction", "repetitions", "samples", "exact", "history", "none"]
# Run-to-run noise (log-sd per side) assumed when each side is a single run, whose own
# repetitions cannot show it. A dedicated, quiet host: a few percent; the shared VMs this
# was built on: about 20 % (benchmarks/compare_calibration.py). --run-noise sets it.
DEFAULT_RUN_NOISE = 0.05

_BOOTSTRAP = 2000
_SUFFIX = {Format.MS: " ms", Format.SECONDS: " s", Format.RATE: "", Format.MIB: " MiB",
           Format.PERCENT: " %", Format.MEGA: "", Format.MAX_RATE: "", Format.SIGNIFICANT: ""}
_BY_UNIT = {"seconds": Format.MS, "bytes": Format.MIB}


@dataclass(frozen=True)
class Row:
    """One workload's metric on both sides. `ratio` is always `b / a`, the values shown:
    each side's value is its run's stored value, or with several runs their geometric
    mean (what a ratio of runs is computed over)."""

    workload: str  # a readable label (name and the dimensions)
    identity: str  # canonical JSON of the workload identity (host left out)
    metric: str
    a: float  # each side's value: its one run's, or its runs' geometric mean
    b: float
    ratio: float  # b / a
    low: float | None  # 95% interval of the ratio (exact metrics: the ratio itself)
    high: float | None
    n_a: int
    n_b: int
    method: Method
    threshold: float
    verdict: Verdict
    exact: bool = False  # deterministic metric: compared as it is
    quality_a: str = "clean"  # each side's quality (collector.analysis.reading)
    quality_b: str = "clean"
    note: str | None = None  # why there is no verdict (too few runs, not judged)

    @property
    def word(self) -> str:
        """The verdict in the metric's terms: slower/faster for times and rates."""
        if self.note is not None:
            return self.note
        if self.verdict == "same":
            return "same"
        timed = METRICS[self.metric].unit.endswith(("seconds", "/s")) or \
            self.metric.endswith("_per_second")
        if timed:
            return "slower" if self.verdict == "worse" else "faster"
        return self.verdict

    def text(self, value: float) -> str:
        """A value of this row's metric with its unit, as the results table shows it."""
        return value_text(self.metric, value)

    @property
    def quality(self) -> str:
        """Both sides' quality in one text (one word when they agree)."""
        return (self.quality_a if self.quality_a == self.quality_b
                else f"A {self.quality_a}, B {self.quality_b}")

    @property
    def interval_text(self) -> str:
        if self.exact:
            return "exact"
        if self.low is None or self.high is None:
            return "no interval"
        return f"[{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, object]:
        return {"workload": self.workload, "metric": self.metric, "a": self.a, "b": self.b,
                "ratio": self.ratio, "ci95": [self.low, self.high]
                if self.low is not None else None, "n_a": self.n_a, "n_b": self.n_b,
                "method": self.method, "threshold": self.threshold, "verdict": self.verdict,
                "word": self.word, "exact": self.exact, "quality_a": self.quality_a,
                "quality_b": self.quality_b, "note": self.note}


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    only_a: list[str]  # workloads on one side only
    only_b: list[str]

    def regressed(self, fail_on: float | None) -> bool:
        """--fail-on-regression [F]: a row judged worse (by at least F when F is given)."""
        return fail_on is not None and bool(self.worse(fail_on or None))

    def by_size(self) -> tuple[list[Row], list[Row]]:
        """(timed rows, exact rows), each with the changes first, the largest first."""
        def key(row: Row) -> tuple[bool, float]:
            return row.verdict == "same", -abs(math.log(row.ratio)) if row.ratio > 0 else 0.0
        return (sorted((r for r in self.rows if not r.exact), key=key),
                sorted((r for r in self.rows if r.exact), key=key))

    def worse(self, at_least: float | None = None) -> list[Row]:
        """Rows judged worse, by at least `at_least` (relative) when given."""
        return [r for r in self.rows if r.verdict == "worse"
                and (at_least is None or _worse_by(r) >= at_least)]


def value_text(metric: str, value: float) -> str:
    """A value of `metric` with its unit, as the results table shows it."""
    definition = METRICS[metric]
    shown = definition.column.format if definition.column is not None else _BY_UNIT.get(
        definition.unit)
    return f"{value:.4g}" if shown is None else shown.render(value) + _SUFFIX[shown]


def _worse_by(row: Row) -> float:
    direction = METRICS[row.metric].direction
    return row.ratio - 1 if direction is Direction.LOWER_IS_BETTER else 1 / row.ratio - 1


def repetition_values(result: BenchmarkResult, metric: str) -> list[float]:
    """A result's values of `metric`: one per fresh-process repetition, else its own."""
    repeated = [r.metrics[metric] for r in result.repetitions if metric in r.metrics]
    if len(repeated) >= 2:
        return repeated
    return [result.metrics[metric]] if metric in result.metrics else []


def threshold_for(metric: str, override: float | None = None) -> float:
    return override if override is not None else settings_for(metric).min_effect


def judge(metric: str, ratio: float, low: float | None, high: float | None,
          threshold: float) -> Verdict:
    """worse/better only outside the noise (the interval excludes 1) and beyond the
    threshold; same otherwise."""
    direction = METRICS[metric].direction
    if direction is Direction.NEUTRAL or ratio <= 0:
        return "same"
    up = ratio - 1 > threshold and (low is None or low > 1)
    down = 1 / ratio - 1 > threshold and (high is None or high < 1)
    if not (up or down):
        return "same"
    higher_is_worse = direction is Direction.LOWER_IS_BETTER
    return "worse" if up == higher_is_worse else "better"


def _mean_sd(logs: Sequence[float]) -> tuple[float, float]:
    return mean(logs), stdev(logs)


def _welch(la: Sequence[float], lb: Sequence[float]) -> tuple[float, float, float]:
    """(difference of mean logs, its standard error, degrees of freedom)."""
    ma, sa = _mean_sd(la)
    mb, sb = _mean_sd(lb)
    va, vb = sa * sa / len(la), sb * sb / len(lb)
    # Welch-Satterthwaite degrees of freedom (no spread at all: the smaller side's).
    df = ((va + vb) ** 2 / (va * va / (len(la) - 1) + vb * vb / (len(lb) - 1))
          if va + vb > 0 else min(len(la), len(lb)) - 1)
    return mb - ma, math.sqrt(va + vb), df


def _runs_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, Method]:
    """(log ratio, half-width, method) from per-run values, one side with 2 or more."""
    la, lb = [math.log(v) for v in a], [math.log(v) for v in b]
    if len(la) >= 2 and len(lb) >= 2:
        diff, se, df = _welch(la, lb)
        return diff, t975(max(1, math.floor(df))) * se, "welch"
    many, one, sign = (la, lb[0], 1) if len(la) >= 2 else (lb, la[0], -1)
    m, s = _mean_sd(many)
    # A prediction interval: where one more run would fall if nothing had changed.
    return sign * (one - m), t975(len(many) - 1) * s * math.sqrt(1 + 1 / len(many)), \
        "prediction"


def _one_run_interval(a: Sequence[float], b: Sequence[float],
                      samples: tuple[Sequence[float], Sequence[float]] | None,
                      run_noise: float, q: float = 50.0) -> tuple[float, Method]:
    """(half-width on the log scale, method) for one run a side, around the ratio of the
    runs' stored values: the within-run spread (the repetitions, else a bootstrap of the
    raw samples' q-th percentile) cannot show run-to-run noise, so an assumed run-to-run
    log-sd `run_noise` per side is added in quadrature."""
    assumed = 1.96 * math.sqrt(2) * run_noise
    within: float = 0.0
    method: Method = "none"
    if len(a) >= 2 and len(b) >= 2:
        _, se, df = _welch([math.log(v) for v in a], [math.log(v) for v in b])
        within, method = t975(max(1, math.floor(df))) * se, "repetitions"
    elif samples is not None:
        sa, sb = samples
        if q != 50 and min(len(sa), len(sb)) < samples_for_percentile(q):
            # Too few samples to bound this percentile at all (a p99 of 24 requests is
            # their maximum, or beyond): no interval, so no verdict.
            return math.inf, "none"
        if len(sa) >= 5 and len(sb) >= 5 and min(sa) > 0 and min(sb) > 0:
            low, high = _bootstrap(sa, sb, q)
            within, method = 0.5 * math.log(high / low), "samples"
    if method == "none" and run_noise == 0:
        return math.nan, "none"
    return math.hypot(within, assumed), method


def samples_for_percentile(q: float, confidence: float = 0.95) -> int:
    """The fewest samples with a distribution-free interval for their q-th percentile:
    n with P(every sample below it) = (q/100)^n <= (1 - confidence) / 2, the chance that
    the largest sample still falls short of it (and the same below for q < 50). 6 for the
    median, 36 for p90, 368 for p99."""
    tail = max(q, 100 - q) / 100
    if tail <= 0.5:
        return 6
    return math.ceil(math.log((1 - confidence) / 2) / math.log(tail))


def _bootstrap(a: Sequence[float], b: Sequence[float],
               q: float = 50.0) -> tuple[float, float]:
    """95% percentile interval of pq(b) / pq(a), the q-th percentiles, resampling each
    side's samples (seeded: the same inputs give the same interval)."""
    rng = random.Random(1234)  # noqa: S311 - resampling, not cryptography
    ratios = []
    for _ in range(_BOOTSTRAP):
        ra = sorted(rng.choices(a, k=len(a)))
        rb = sorted(rng.choices(b, k=len(b)))
        ratios.append(percentile(rb, q) / percentile(ra, q))
    ratios.sort()
    return percentile(ratios, 2.5), percentile(ratios, 97.5)


def interval_ends(ratio: float, half: float) -> tuple[float, float]:
    """ratio * e^-half and ratio * e^half (half: a half-width on the log scale), finite
    however wide: far apart values give a width past what a float holds (e^860 for two
    runs 1e-17 and 1e17 against one), and then the ends are clamped to the largest and
    smallest floats, on the same side of 1 as the true ends (so the verdict is exact)."""
    center = math.log(ratio)
    if abs(center) + half < 700:
        return ratio * math.exp(-half), ratio * math.exp(half)
    return math.exp(max(center - half, -745.0)), math.exp(min(center + half, 709.0))


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean; one value (or equal ones) exactly itself, not exp(log(v))."""
    if len(set(values)) == 1:
        return values[0]
    return math.exp(mean([math.log(v) for v in values]))


def _quality(results: Sequence[BenchmarkResult], metric: str) -> str:
    """A side's quality: its one result's, or how many of its runs were not clean."""
    readings = [read(r, metric) for r in results if metric in r.metrics]
    if len(readings) == 1:
        return readings[0].quality_text
    bad = [r for r in readings if r.quality != "clean"]
    if bad:
        return f"{len(bad)} of {len(readings)} not clean"
    return "imported" if readings and all(r.imported for r in readings) else "clean"


def _make_row(result: BenchmarkResult, metric: str, side_a: Sequence[BenchmarkResult],
              side_b: Sequence[BenchmarkResult], *, threshold: float | None,
              run_noise: float) -> Row | None:
    """`metric` of `result`'s workload on both sides. A side of 2 runs or more is judged by
    its runs' values (repetitions of one run share that run's conditions: as units they
    would understate the noise); with one run on each side, by the repetitions (or raw
    samples) plus the assumed run-to-run noise. Deterministic metrics are compared as they
    are: the threshold alone decides."""
    runs_a = [r.metrics[metric] for r in side_a if metric in r.metrics]
    runs_b = [r.metrics[metric] for r in side_b if metric in r.metrics]
    if not runs_a or not runs_b or min(runs_a) <= 0 or min(runs_b) <= 0:
        return None  # absent, or 0 (an exact drift of 0 has no ratio)
    value_a, value_b = geometric_mean(runs_a), geometric_mean(runs_b)
    n_a, n_b = len(runs_a), len(runs_b)
    exact = METRICS[metric].profile.exact
    method: Method
    if exact:
        half, method = 0.0, "exact"
    elif n_a >= 2 or n_b >= 2:
        _, half, method = _runs_interval(runs_a, runs_b)
    else:
        a = repetition_values(side_a[0], metric)
        b = repetition_values(side_b[0], metric)
        name, q = SAMPLE_PERCENTILES.get(metric, (None, 50.0))
        samples = (None if name is None
                   else (side_a[0].samples.get(name, ()), side_b[0].samples.get(name, ())))
        if min(a) <= 0 or min(b) <= 0:
            return None
        half, method = _one_run_interval(a, b, samples, run_noise, q)
        n_a, n_b = len(a), len(b)
    ratio = value_b / value_a
    lo, hi = (None, None) if math.isnan(half) else interval_ends(ratio, half)
    bound = threshold_for(metric, threshold)
    return Row(workload_label(result), workload_key(result), metric, value_a, value_b,
               ratio, lo, hi, n_a, n_b, method, bound, judge(metric, ratio, lo, hi, bound),
               exact=exact, quality_a=_quality(side_a, metric),
               quality_b=_quality(side_b, metric))


def _row(metric: str, side_a: list[BenchmarkResult], side_b: list[BenchmarkResult],
         threshold: float | None, run_noise: float) -> Row | None:
    return _make_row(side_a[0], metric, side_a, side_b, threshold=threshold,
                     run_noise=run_noise)


def against_history(result: BenchmarkResult, metric: str, previous: Sequence[float], *,
                    noise: float | None = None, threshold: float | None = None) -> Row | None:
    """`result`'s `metric` (B) against its series' previous runs (A: their median, the
    detector's reference level): what `run-once` prints after its table. It never invents
    a change: below the detector's min_history previous runs it says so; a disturbed result
    is not judged; otherwise B is outside the normal range when it is further than the
    detector's z_threshold times the series' noise (its learnt noise, else the robust scale
    of those runs) from A, and beyond the metric's threshold."""
    if not previous or metric not in result.metrics or min(previous) <= 0:
        return None
    settings = settings_for(metric)
    a, b = percentile(sorted(previous), 50), result.metrics[metric]
    if b <= 0:
        return None
    ratio = b / a
    reading = read(result, metric)
    bound = threshold_for(metric, threshold)
    def row(low: float | None, high: float | None, method: Method, verdict: Verdict,
            note: str | None = None) -> Row:
        return Row(workload_label(result), workload_key(result), metric, a, b, ratio, low,
                   high, len(previous), 1, method, bound, verdict, exact=reading.exact,
                   quality_b=reading.quality_text, note=note)

    if len(previous) < settings.min_history:
        return row(None, None, "none", "same",
                   f"too few runs ({len(previous)} of {settings.min_history})")
    if reading.disturbed:
        return row(None, None, "none", "same", f"not judged: {reading.quality_text}")
    logs = [math.log(v) for v in previous]
    center = percentile(sorted(logs), 50)
    scale = 1.4826 * percentile(sorted(abs(v - center) for v in logs), 50)
    sigma = max(noise if noise is not None else scale, settings.noise_floor)
    half = settings.z_threshold * sigma * math.sqrt(1 + 1 / len(previous))
    lo, hi = interval_ends(ratio, half)
    return row(lo, hi, "history", judge(metric, ratio, lo, hi, bound))


def _judged(metric: str) -> bool:
    definition = METRICS.get(metric)
    return definition is not None and definition.detectable


def compare(side_a: Sequence[BenchmarkResult], side_b: Sequence[BenchmarkResult], *,
            metrics: Sequence[str] | None = None, threshold: float | None = None,
            all_metrics: bool = False, run_noise: float = DEFAULT_RUN_NOISE) -> Comparison:
    """Compare two sides' successful results workload by workload."""
    def grouped(side: Sequence[BenchmarkResult]) -> dict[str, list[BenchmarkResult]]:
        groups: dict[str, list[BenchmarkResult]] = {}
        for result in side:
            if result.status == "ok":
                groups.setdefault(workload_key(result), []).append(result)
        return groups

    ga, gb = grouped(side_a), grouped(side_b)
    rows: list[Row] = []
    for key in [k for k in ga if k in gb]:
        present = {m for r in ga[key] + gb[key] for m in r.metrics}
        if metrics:
            wanted = [m for m in metrics if m in present]
        elif all_metrics:
            wanted = [m for m in METRICS if m in present and _judged(m)]
        else:
            wanted = [m for m in COMPARE_SELECTION if m in present]
        for metric in wanted:
            row = _row(metric, ga[key], gb[key], threshold, run_noise)
            if row is not None:
                rows.append(row)
    only_a = [workload_label(ga[k][0]) for k in ga if k not in gb]
    only_b = [workload_label(gb[k][0]) for k in gb if k not in ga]
    return Comparison(rows, only_a, only_b)


@dataclass(frozen=True)
class Pivot:
    """One side's metric laid out by two dimensions, for one value of the others."""

    metric: str
    group: str  # the other dimensions' values ("" when they do not vary)
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], float]  # the median over the matching results
    best: set[tuple[str, str]]  # the best cell of each column (direction-aware)

    def cell_text(self, row: str, column: str) -> str:
        """A cell with its unit; the best of its column starred."""
        value = self.cells.get((row, column))
        if value is None:
            return "-"
        return value_text(self.metric, value) + (" *" if (row, column) in self.best else "")


def _order(values: set[str]) -> list[str]:
    return sorted(values, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


def pivot(results: Sequence[BenchmarkResult], row_dim: str, column_dim: str,
          metric: str) -> list[Pivot]:
    """`metric` of the successful `results` by `row_dim` x `column_dim`, one table per
    combination of the other dimensions that vary."""
    if (row_dim not in PIVOT_DIMENSIONS or column_dim not in PIVOT_DIMENSIONS
            or row_dim == column_dim):
        raise ValueError(f"pivot by two of {', '.join(PIVOT_DIMENSIONS)}")
    ok = [r for r in results if r.status == "ok" and metric in r.metrics]
    # A dimension splits the tables where one cell would otherwise mix its values; one the
    # cell already determines (the model of a benchmark, say) does not.
    by_cell: dict[tuple[str, str], list[BenchmarkResult]] = {}
    for result in ok:
        by_cell.setdefault((PIVOT_DIMENSIONS[row_dim](result),
                            PIVOT_DIMENSIONS[column_dim](result)), []).append(result)
    others = [d for d in PIVOT_DIMENSIONS if d not in (row_dim, column_dim)
              and any(len({PIVOT_DIMENSIONS[d](r) for r in members}) > 1
                      for members in by_cell.values())]
    groups: dict[str, list[BenchmarkResult]] = {}
    for result in ok:
        label = " ".join(f"{d}={PIVOT_DIMENSIONS[d](result)}" for d in others)
        groups.setdefault(label, []).append(result)
    lower = METRICS[metric].direction is Direction.LOWER_IS_BETTER
    tables = []
    for label, members in sorted(groups.items()):
        values: dict[tuple[str, str], list[float]] = {}
        for result in members:
            cell = (PIVOT_DIMENSIONS[row_dim](result), PIVOT_DIMENSIONS[column_dim](result))
            values.setdefault(cell, []).append(result.metrics[metric])
        cells = {k: percentile(sorted(v), 50) for k, v in values.items()}
        rows = _order({r for r, _ in cells})
        columns = _order({c for _, c in cells})
        best = set()
        if METRICS[metric].direction is not Direction.NEUTRAL:
            for column in columns:
                present = [(cells[(r, column)], r) for r in rows if (r, column) in cells]
                _, row = min(present) if lower else max(present)
                best.add((row, column))
        tables.append(Pivot(metric, label, rows, columns, cells, best))
    return tables
