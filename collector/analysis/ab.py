"""An A/B's record and its headline: one benchmark measured in two package environments,
interleaved (the measuring is collector/usecases/ab.py), and B/A of one metric with its 95%
interval and verdict, as `collector compare` judges it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.analysis.compare import Comparison, Verdict
from collector.domain.catalogue import headline
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Failure
from collector.domain.packages import Pin


@dataclass(frozen=True)
class AbResult:
    spec: BenchmarkSpec
    a: tuple[Pin, ...]
    b: tuple[Pin, ...]
    results_a: list[BenchmarkResult]  # one per complete round
    results_b: list[BenchmarkResult]
    comparison: Comparison
    rounds: int  # complete rounds
    build_s: float  # building (or finding) both environments
    elapsed_s: float  # the whole A/B, builds included
    failure: Failure | None  # an environment that could not be built, a run that failed
    order: tuple[str, ...] = ()  # per round, which side ran first: "ab" or "ba"
    versions_a: dict[str, str] = field(default_factory=dict)  # recorded versions, per side
    versions_b: dict[str, str] = field(default_factory=dict)
    cache_hits: tuple[bool, bool] = (False, False)

    @property
    def label_a(self) -> str:
        return side_label(self.a, self.b)

    @property
    def label_b(self) -> str:
        return side_label(self.b, self.a)


def side_label(pins: Sequence[Pin], other: Sequence[Pin]) -> str:
    """A side as its pins that differ from the other side's (all of them when none does);
    no pins: this interpreter's packages."""
    differing = [p for p in pins if p not in other]
    shown = differing or list(pins)
    return " ".join(str(p) for p in shown) if shown else "the base environment"


@dataclass(frozen=True)
class AbSummary:
    """The headline of an A/B: B/A of one metric, its 95% interval and the verdict."""

    metric: str
    ratio: float
    low: float | None
    high: float | None
    verdict: Verdict
    text: str  # e.g. "A/B: transformers==5.24.0 is 1.31x transformers==5.23.0, 95% CI
    # 1.27-1.35 (slower)"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "ratio": self.ratio, "low": self.low,
                "high": self.high, "verdict": self.verdict, "text": self.text}


def ab_summary(result: AbResult, metric: str | None = None) -> AbSummary | None:
    """The A/B's `metric` (default: the headline metric of its results); None when it has
    no comparison of that metric (no complete round, a failure, the metric absent)."""
    ok = [r for r in result.results_a + result.results_b if r.status == "ok"]
    if not ok:
        return None
    wanted = metric or headline(ok[0].metrics)
    row = next((r for r in result.comparison.rows if r.metric == wanted), None)
    if row is None:
        return None
    interval = (f"95% CI {row.low:.2f}-{row.high:.2f}" if row.low is not None
                and row.high is not None else "no interval")
    text = (f"A/B: {result.label_b} is {row.ratio:.2f}x {result.label_a}, {interval} "
            f"({row.word})")
    return AbSummary(wanted, row.ratio, row.low, row.high, row.verdict, text)

