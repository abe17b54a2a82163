"""Two sides, one verdict per workload and metric: is B faster, slower or the same as A?

A side is a set of results (one or more runs of the same workloads: files, stored runs, the
previous runs of a series). Workloads are matched by their identity without the host (the
same model, task, backend, dtype, shapes, device and settings), so two hosts or two
environments compare too. For each metric, each side's values are the fresh-process
repetitions of each run where there are several (their spread is what the next run would
show), else each run's value. On the log scale, so that the interval of a ratio is
symmetric in slower and faster:

- both sides with 2 values or more: Welch's t interval of the difference of mean logs;
- one side with a single value: the other side's t prediction interval for one more value
  (the single value is judged against the spread the other side shows);
- one value each: a bootstrap of the raw samples' medians where the metric has samples
  (the latency p50), which knows nothing of run-to-run noise; else no interval.

The verdict respects the noise: B is `worse` (slower) or `better` (faster) only when the
interval excludes a ratio of 1 and the change is beyond the metric's threshold (the
detector's minimum effect for it, or --threshold); everything else is `same`, never a
slowdown. Without an interval the threshold alone decides, and the row says so.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from collector.metrics import COMPARE_SELECTION, METRICS, SAMPLE_MEDIANS, Direction, Format
from collector.model import BenchmarkResult
from collector.regress.detector import settings_for
from collector.stats import percentile, t975

Verdict = Literal["better", "worse", "same"]
Method = Literal["welch", "prediction", "samples", "none"]

_BOOTSTRAP = 2000
_SUFFIX = {Format.MS: " ms", Format.SECONDS: " s", Format.RATE: "", Format.MIB: " MiB",
           Format.PERCENT: " %", Format.MEGA: ""}
_BY_UNIT = {"seconds": Format.MS, "bytes": Format.MIB}


@dataclass(frozen=True)
class Row:
    """One workload's metric on both sides."""

    workload: str  # a readable label (name and the dimensions)
    identity: str  # canonical JSON of the workload identity (host left out)
    metric: str
    a: float  # each side's median value
    b: float
    ratio: float  # b / a (geometric means where an interval is computed)
    low: float | None  # 95% interval of the ratio
    high: float | None
    n_a: int
    n_b: int
    method: Method
    threshold: float
    verdict: Verdict

    @property
    def word(self) -> str:
        """The verdict in the metric's terms: slower/faster for times and rates."""
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
    def interval_text(self) -> str:
        if self.low is None or self.high is None:
            return "no interval"
        return f"[{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, object]:
        return {"workload": self.workload, "metric": self.metric, "a": self.a, "b": self.b,
                "ratio": self.ratio, "ci95": [self.low, self.high]
                if self.low is not None else None, "n_a": self.n_a, "n_b": self.n_b,
                "method": self.method, "threshold": self.threshold, "verdict": self.verdict,
                "word": self.word}


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    only_a: list[str]  # workloads on one side only
    only_b: list[str]

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


def workload_key(result: BenchmarkResult) -> str:
    return json.dumps(result.spec.identity(), sort_keys=True, separators=(",", ":"))


def workload_label(result: BenchmarkResult) -> str:
    spec = result.spec
    parts = [spec.name, spec.dtype.value, spec.backend.value]
    if spec.quantization.value != "none":
        parts.append(spec.quantization.value)
    if spec.attn_implementation is not None:
        parts.append(f"attn={spec.attn_implementation.value}")
    parts += [spec.device, f"bs={spec.batch_size}", f"seq={spec.sequence_length}"]
    return " ".join(parts)


def values_of(result: BenchmarkResult, metric: str) -> list[float]:
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
    m = sum(logs) / len(logs)
    return m, math.sqrt(sum((x - m) ** 2 for x in logs) / (len(logs) - 1))


def _interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, Method]:
    """(ratio, low, high, method) on the log scale; low/high NaN when there is no interval."""
    la, lb = [math.log(v) for v in a], [math.log(v) for v in b]
    if len(la) >= 2 and len(lb) >= 2:
        ma, sa = _mean_sd(la)
        mb, sb = _mean_sd(lb)
        va, vb = sa * sa / len(la), sb * sb / len(lb)
        se = math.sqrt(va + vb)
        # Welch-Satterthwaite degrees of freedom (no spread at all: the smaller side's).
        df = ((va + vb) ** 2 / (va * va / (len(la) - 1) + vb * vb / (len(lb) - 1))
              if va + vb > 0 else min(len(la), len(lb)) - 1)
        half = t975(max(1, math.floor(df))) * se
        return math.exp(mb - ma), math.exp(mb - ma - half), math.exp(mb - ma + half), "welch"
    if len(la) >= 2 or len(lb) >= 2:
        many, one, sign = (la, lb[0], 1) if len(la) >= 2 else (lb, la[0], -1)
        m, s = _mean_sd(many)
        diff = sign * (one - m)
        half = t975(len(many) - 1) * s * math.sqrt(1 + 1 / len(many))
        return math.exp(diff), math.exp(diff - half), math.exp(diff + half), "prediction"
    return b[0] / a[0], math.nan, math.nan, "none"


def _bootstrap(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """95% percentile interval of median(b) / median(a), resampling each side's samples
    (seeded: the same inputs give the same interval)."""
    rng = random.Random(1234)  # noqa: S311 - resampling, not cryptography
    ratios = []
    for _ in range(_BOOTSTRAP):
        ra = sorted(rng.choices(a, k=len(a)))
        rb = sorted(rng.choices(b, k=len(b)))
        ratios.append(percentile(rb, 50) / percentile(ra, 50))
    ratios.sort()
    return percentile(ratios, 2.5), percentile(ratios, 97.5)


def _make_row(result: BenchmarkResult, metric: str, a: Sequence[float], b: Sequence[float],
              *, threshold: float | None,
              samples: tuple[Sequence[float], Sequence[float]] | None = None) -> Row | None:
    """`metric` of `result`'s workload with values `a` and `b` (and, for one value each,
    raw samples of each side to bootstrap)."""
    if not a or not b or min(a) <= 0 or min(b) <= 0:
        return None  # absent, or 0 (an exact drift of 0 has no ratio)
    ratio, low, high, method = _interval(a, b)
    if method == "none" and samples is not None:
        sa, sb = samples
        if len(sa) >= 5 and len(sb) >= 5 and min(sa) > 0 and min(sb) > 0:
            low, high = _bootstrap(sa, sb)
            method = "samples"
    bound = threshold_for(metric, threshold)
    lo = None if math.isnan(low) else low
    hi = None if math.isnan(high) else high
    return Row(workload_label(result), workload_key(result), metric,
               percentile(sorted(a), 50), percentile(sorted(b), 50),
               ratio, lo, hi, len(a), len(b), method, bound,
               judge(metric, ratio, lo, hi, bound))


def _row(metric: str, side_a: list[BenchmarkResult], side_b: list[BenchmarkResult],
         threshold: float | None) -> Row | None:
    a = [v for r in side_a for v in values_of(r, metric)]
    b = [v for r in side_b for v in values_of(r, metric)]
    name = SAMPLE_MEDIANS.get(metric)
    samples = ((side_a[0].samples.get(name, ()), side_b[0].samples.get(name, ()))
               if name and len(side_a) == len(side_b) == 1 else None)
    return _make_row(side_a[0], metric, a, b, threshold=threshold, samples=samples)


def against_history(result: BenchmarkResult, metric: str, previous: Sequence[float],
                    threshold: float | None = None) -> Row | None:
    """`result`'s `metric` (B) against the stored values of its series' previous runs (A):
    what `run-once` prints after its table."""
    return _make_row(result, metric, previous, values_of(result, metric), threshold=threshold)


def _judged(metric: str) -> bool:
    definition = METRICS.get(metric)
    return definition is not None and definition.detectable


def compare(side_a: Sequence[BenchmarkResult], side_b: Sequence[BenchmarkResult], *,
            metrics: Sequence[str] | None = None, threshold: float | None = None,
            all_metrics: bool = False) -> Comparison:
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
            row = _row(metric, ga[key], gb[key], threshold)
            if row is not None:
                rows.append(row)
    only_a = [workload_label(ga[k][0]) for k in ga if k not in gb]
    only_b = [workload_label(gb[k][0]) for k in gb if k not in ga]
    return Comparison(rows, only_a, only_b)


def _attention(result: BenchmarkResult) -> str:
    attention = result.spec.attn_implementation
    return attention.value if attention is not None else "auto"


# Dimensions a pivot table can be laid out by: name -> the value of a result.
DIMENSIONS: dict[str, Callable[[BenchmarkResult], str]] = {
    "model": lambda r: r.spec.name,
    "backend": lambda r: r.spec.backend.value,
    "dtype": lambda r: r.spec.dtype.value,
    "device": lambda r: r.spec.device,
    "batch_size": lambda r: str(r.spec.batch_size),
    "sequence_length": lambda r: str(r.spec.sequence_length),
    "quantization": lambda r: r.spec.quantization.value,
    "attn_implementation": _attention,
    "host": lambda r: r.environment.host,
}


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
    if row_dim not in DIMENSIONS or column_dim not in DIMENSIONS or row_dim == column_dim:
        raise ValueError(f"pivot by two of {', '.join(DIMENSIONS)}")
    ok = [r for r in results if r.status == "ok" and metric in r.metrics]
    others = [d for d in DIMENSIONS if d not in (row_dim, column_dim)
              and len({DIMENSIONS[d](r) for r in ok}) > 1]
    groups: dict[str, list[BenchmarkResult]] = {}
    for result in ok:
        label = " ".join(f"{d}={DIMENSIONS[d](result)}" for d in others)
        groups.setdefault(label, []).append(result)
    lower = METRICS[metric].direction is Direction.LOWER_IS_BETTER
    tables = []
    for label, members in sorted(groups.items()):
        values: dict[tuple[str, str], list[float]] = {}
        for result in members:
            cell = (DIMENSIONS[row_dim](result), DIMENSIONS[column_dim](result))
            values.setdefault(cell, []).extend(values_of(result, metric))
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
