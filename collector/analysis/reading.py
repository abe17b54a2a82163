"""One reading of a result's metric: its value, how sure it is, and the conditions it was
measured in. Every surface shows a result through this: run-once's table, `compare`, the
report, the JSON documents, /metrics and the dashboards' SQL say the same of one number.

- value: the stored value (for timed metrics the best of the fresh-process repetitions,
  collector.analysis.combine);
- uncertainty: the relative half-width of its 95% interval within the run (None where it
  is not known), or exact for deterministic metrics (memory, instruction counts, output
  drift: they are compared as they are, never through timing noise);
- quality: `clean`, `disturbed` (other processes used at least BUSY_CPU_FRACTION of the
  machine's CPU while it was measured: its times are another machine's) or `unconverged`
  (the median did not settle within the benchmark's CI target). A disturbed result is both
  marked and set aside by the detector. An imported result (`collector import`) reads
  `imported` where it would read clean: its tool recorded neither the machine's other load
  nor how well its median settled, so nothing vouches for it being clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from collector.domain.catalogue import BUSY_CPU_FRACTION, METRICS
from collector.domain.model import BenchmarkResult

Quality = Literal["clean", "disturbed", "unconverged"]
QUALITIES: tuple[Quality, ...] = ("clean", "disturbed", "unconverged")


@dataclass(frozen=True)
class Reading:
    metric: str
    value: float
    exact: bool  # deterministic: compared as it is
    rel_ci: float | None  # 95% half-width within the run, relative (timed metrics)
    target_rel_ci: float | None  # what the measurement aimed for
    converged: bool  # the median settled within the target (exact metrics: True)
    other_cpu: float | None  # other processes' share of the CPU while it was measured
    busy_fraction: float = BUSY_CPU_FRACTION
    imported: bool = False  # measured by another tool (collector import): conditions unknown

    @property
    def disturbed(self) -> bool:
        return self.other_cpu is not None and self.other_cpu >= self.busy_fraction

    @property
    def quality(self) -> Quality:
        return quality_of(self.other_cpu, self.converged, self.busy_fraction)

    @property
    def quality_text(self) -> str:
        """A few words a person reads at a glance: `clean`, `busy 55%` (the other processes'
        share), `±12% > ±5%` (achieved against target)."""
        if self.disturbed:
            assert self.other_cpu is not None
            return f"busy {self.other_cpu:.0%}"
        if not self.converged and self.rel_ci is not None and self.target_rel_ci is not None:
            return f"±{_pct(self.rel_ci)} > ±{_pct(self.target_rel_ci)}"
        if self.imported and self.converged:
            return "imported"
        return "clean" if self.converged else "unconverged"

    @property
    def uncertainty_text(self) -> str:
        if self.exact:
            return "exact"
        return "-" if self.rel_ci is None else f"±{_pct(self.rel_ci)}"

    def as_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "value": self.value, "exact": self.exact,
                "rel_ci": self.rel_ci, "target_rel_ci": self.target_rel_ci,
                "converged": self.converged, "other_cpu_fraction": self.other_cpu,
                "quality": self.quality}


def quality_of(other_cpu: float | None, converged: bool | None,
               busy_fraction: float = BUSY_CPU_FRACTION) -> Quality:
    """The quality of a result measured while other processes used `other_cpu` of the CPU
    (None: not probed), whose median settled within its target or not (None: unknown)."""
    if other_cpu is not None and other_cpu >= busy_fraction:
        return "disturbed"
    return "unconverged" if converged is False else "clean"


def _pct(ratio: float) -> str:
    percent = ratio * 100
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.1f}%"


def exact(metric: str) -> bool:
    """Whether a metric is deterministic on fixed inputs (memory, instruction counts,
    output drift): compared exactly, never through timing noise."""
    return METRICS[metric].profile.exact


def read(result: BenchmarkResult, metric: str, *,
         busy_fraction: float = BUSY_CPU_FRACTION) -> Reading:
    """The reading of `result`'s `metric` (which it must have)."""
    info = result.measurement
    other = result.noise.other_cpu_fraction if result.noise is not None else None
    is_exact = exact(metric)
    return Reading(
        metric=metric, value=result.metrics[metric], exact=is_exact,
        rel_ci=None if is_exact or info is None else info.achieved_rel_ci,
        target_rel_ci=None if info is None else info.target_rel_ci,
        converged=is_exact or info is None or info.converged,
        other_cpu=other, busy_fraction=busy_fraction,
        imported=result.spec.origin is not None)
