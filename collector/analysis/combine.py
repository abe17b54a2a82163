"""Several fresh-process repetitions of one benchmark, combined into one stored point.

Core module (pure, no I/O). Each repetition ran in its own worker process at another moment
of the suite (the service interleaves them: A1 B1 C1 A2 B2 C2 ...), so a slow minute on a
shared host hits every benchmark a little instead of one benchmark wholly.

The stored point is the **best repetition**: the one with the lowest median latency (the
headline; the highest where the headline is a rate), whose steady-state metrics (latency
percentiles, throughput, tokens per second) are stored together, as measured in one window.
Interference from other processes only ever adds time, so the fastest window is the one
least disturbed; on this project's 2-core hosts its run-to-run spread was a fraction of the
median's (benchmarks/wall_stability.py; docs/measuring.md, "The stored value"). One-off costs (load,
first call, compilation) are each their own best, and deterministic metrics (memory,
instruction counts, output drift) the median of the repetitions. Every repetition is kept.

The uncertainty stored is the best repetition's own: the rank-based 95% interval of its
median within its window, and the point converged when that is within the target. The
spread between the repetitions is kept beside it (between_rel_sd): it is the run's
conditions, not the stored value's precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from collector.domain.catalogue import METRICS, Direction, Profile, headline
from collector.domain.model import (
    BenchmarkResult,
    Failure,
    MeasurementInfo,
    NoiseProbe,
    Repetition,
)


def combine_values(values: Sequence[float]) -> float:
    """The median of a metric over repetitions (the mean of two): deterministic metrics."""
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


def best_index(ok: Sequence[BenchmarkResult]) -> int:
    """The best repetition: the lowest headline (the highest for a rate); the first of
    equals. A deterministic headline (instruction counts) has no best: the first."""
    name = headline(ok[0].metrics)
    definition = METRICS[name]
    if definition.profile.exact or any(name not in r.metrics for r in ok):
        return 0
    sign = -1.0 if definition.direction is Direction.HIGHER_IS_BETTER else 1.0
    return min(range(len(ok)), key=lambda i: sign * ok[i].metrics[name])


def _best_of(values: Sequence[float], direction: Direction) -> float:
    if direction is Direction.LOWER_IS_BETTER:
        return min(values)
    if direction is Direction.HIGHER_IS_BETTER:
        return max(values)
    return combine_values(values)


def combine_metrics(ok: Sequence[BenchmarkResult], best: int) -> dict[str, float]:
    """The stored metrics: the best repetition's steady state, each one-off cost's own best,
    the median of deterministic ones."""
    metrics = {}
    for name in sorted({name for r in ok for name in r.metrics}):
        values = [r.metrics[name] for r in ok if name in r.metrics]
        definition = METRICS.get(name)
        if definition is None or definition.profile.exact:
            metrics[name] = combine_values(values)
        elif definition.profile is Profile.COLD:
            metrics[name] = _best_of(values, definition.direction)
        else:
            metrics[name] = ok[best].metrics.get(name, combine_values(values))
    return metrics


def _measurement(ok: list[BenchmarkResult], best: int) -> MeasurementInfo | None:
    infos = [r.measurement for r in ok if r.measurement is not None]
    chosen = ok[best].measurement
    if not infos or chosen is None:
        return None
    first = infos[0]
    # The spread of the repetitions' headline values: median latency, or in instructions
    # mode (nothing timed) the counts.
    medians = [r.metrics[name] for r in ok if (name := headline(r.metrics)) in r.metrics]
    return MeasurementInfo(
        iterations=sum(i.iterations for i in infos),
        warmup_iterations=first.warmup_iterations,
        duration_s=sum(i.duration_s for i in infos),
        target_rel_ci=chosen.target_rel_ci,
        achieved_rel_ci=chosen.achieved_rel_ci,
        converged=chosen.converged,
        stop_reason=chosen.stop_reason,
        repetitions=len(ok), within_rel_ci=chosen.achieved_rel_ci,
        between_rel_sd=between_rel_sd(medians), best_repetition=best)


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
    best = best_index(ok)
    return BenchmarkResult(
        **common, status="ok", resolved_task=first.resolved_task,
        metrics=combine_metrics(ok, best), samples=samples, measurement=_measurement(ok, best),
        noise=_noise([r.noise for r in ok if r.noise is not None]))
