"""Several fresh-process repetitions of one benchmark, combined into one stored point.

Core module (pure, no I/O). Each repetition ran in its own worker process at another moment
of the suite (the service interleaves them: A1 B1 C1 A2 B2 C2 ...), so a slow minute on a
shared host hits every benchmark a little instead of one benchmark wholly. The stored value
of every metric is the **median of the repetitions' values** (for two, their mean): on these
hosts a repetition now and then lands in a burst of interference from neighbours and runs
10-35% slow, and the median ignores one such repetition of three where a mean would move by
a third of it (benchmarks/wall_stability.py compares the estimators on real runs).

The confidence interval reported is honest about the spread between repetitions, not only
about the samples within one window: the half-width is the larger of the pooled samples'
rank-based interval and Student's t over the repetitions' medians.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from collector.domain.catalogue import headline
from collector.domain.model import (
    BenchmarkResult,
    Failure,
    MeasurementInfo,
    NoiseProbe,
    Repetition,
)
from collector.domain.stats import median_ci, t975

_MEDIAN_SE = 1.2533  # standard error of a median / that of a mean, normal noise (sqrt(pi/2))
_LATENCY = "latency_seconds"


def combine_values(values: Sequence[float]) -> float:
    """The stored value of a metric over repetitions: the median (the mean of two)."""
    if not values:
        raise ValueError("no values to combine")
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def between_rel_sd(values: Sequence[float]) -> float | None:
    """Relative standard deviation between repetitions (of their logs: relative, and
    symmetric for slow and fast repetitions); None below two positive values."""
    logs = [math.log(v) for v in values if v > 0]
    if len(logs) < 2:
        return None
    m = sum(logs) / len(logs)
    return math.sqrt(sum((x - m) ** 2 for x in logs) / (len(logs) - 1))


def repetition_rel_ci(medians: Sequence[float]) -> float | None:
    """Half-width (relative) of a 95% interval for the combined value from the spread of
    the repetitions' medians alone."""
    sd = between_rel_sd(medians)
    if sd is None:
        return None
    n = len(medians)
    factor = _MEDIAN_SE if n >= 3 else 1.0
    return t975(n - 1) * sd * factor / math.sqrt(n)


def _noise(probes: list[NoiseProbe]) -> NoiseProbe | None:
    if not probes:
        return None
    wall = sum(p.wall_s for p in probes)
    fraction = (sum(p.other_cpu_fraction * p.wall_s for p in probes) / wall if wall > 0
                else max(p.other_cpu_fraction for p in probes))
    return NoiseProbe(wall_s=wall, self_cpu_s=sum(p.self_cpu_s for p in probes),
                      other_cpu_s=sum(p.other_cpu_s for p in probes),
                      other_cpu_fraction=fraction,
                      loadavg_1m_start=probes[0].loadavg_1m_start,
                      loadavg_1m_end=probes[-1].loadavg_1m_end,
                      gpu=probes[-1].gpu)


def _measurement(ok: list[BenchmarkResult], samples: dict[str, list[float]]
                 ) -> MeasurementInfo | None:
    infos = [r.measurement for r in ok if r.measurement is not None]
    if not infos:
        return None
    first = infos[0]
    pooled = median_ci(sorted(samples.get(_LATENCY, [])), 0.95)
    within = pooled.rel_half_width if pooled is not None else None
    # The spread of the repetitions' headline values: median latency, or in instructions
    # mode (nothing timed) the counts.
    medians = [r.metrics[name] for r in ok if (name := headline(r.metrics)) in r.metrics]
    between = repetition_rel_ci(medians)
    parts = [x for x in (within, between) if x is not None]
    achieved = max(parts) if parts else None
    stops = [i.stop_reason for i in infos if i.stop_reason != "converged"]
    return MeasurementInfo(
        iterations=sum(i.iterations for i in infos),
        warmup_iterations=first.warmup_iterations,
        duration_s=sum(i.duration_s for i in infos),
        target_rel_ci=first.target_rel_ci,
        achieved_rel_ci=achieved,
        converged=achieved is not None and achieved <= first.target_rel_ci,
        stop_reason=stops[0] if stops else "converged",
        repetitions=len(ok), within_rel_ci=within, between_rel_sd=between_rel_sd(medians))


def combine(results: Sequence[BenchmarkResult]) -> BenchmarkResult:
    """One result from a benchmark's repetitions (in the order they ran). One repetition is
    returned as it is. When any repetition failed the benchmark is failed, with that
    failure (a crash in one repetition of three is a crash), and every repetition kept."""
    if not results:
        raise ValueError("no repetitions to combine")
    if len(results) == 1:
        return results[0]
    first = results[0]
    samples: dict[str, list[float]] = {}
    repetitions: list[Repetition] = []
    for index, result in enumerate(results):
        offsets = {k: len(samples.get(k, [])) for k in result.samples}
        for key, values in result.samples.items():
            samples.setdefault(key, []).extend(values)
        repetitions.append(Repetition(
            index=index, status=result.status, started_at=result.started_at,
            finished_at=result.finished_at, metrics=result.metrics,
            measurement=result.measurement, noise=result.noise, failure=result.failure,
            sample_offsets=offsets,
            sample_counts={k: len(v) for k, v in result.samples.items()}))
    common = {"spec": first.spec, "series_id": first.series_id,
              "started_at": first.started_at, "finished_at": results[-1].finished_at,
              "environment": first.environment, "repetitions": tuple(repetitions)}
    failed = [r for r in results if r.status == "failed"]
    if failed:
        assert failed[0].failure is not None
        index = results.index(failed[0])
        failure = failed[0].failure
        message = f"repetition {index + 1} of {len(results)}: {failure.message}"
        return BenchmarkResult(**common, status="failed", resolved_task=first.resolved_task,
                               failure=Failure(**{**failure.model_dump(), "message": message}))
    ok = list(results)
    names = sorted({name for r in ok for name in r.metrics})
    metrics = {name: combine_values([r.metrics[name] for r in ok if name in r.metrics])
               for name in names}
    return BenchmarkResult(
        **common, status="ok", resolved_task=first.resolved_task, metrics=metrics,
        samples=samples, measurement=_measurement(ok, samples),
        noise=_noise([r.noise for r in ok if r.noise is not None]))
