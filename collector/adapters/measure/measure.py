"""The measurement loop: warm up, then time iterations until the median is stable.

Pure Python (no torch): the worker passes in the step and, on CUDA, a synchronize function
that runs inside the timed region so GPU work is counted. The loop body is kept to two clock
reads and an append; the convergence check runs between iterations on a thinning schedule.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from collector.domain.model import MeasurementInfo, MeasurementSettings
from collector.domain.stats import median_ci

ProgressFn = Callable[[dict[str, Any]], None]
_PROGRESS_EVERY_NS = 250_000_000


@dataclass(frozen=True)
class Measured:
    samples_ns: list[int]
    # What each step returned (e.g. token timestamps of a generate call), in order.
    payloads: list[Any] = field(default_factory=list)
    info: MeasurementInfo | None = None


def _rel_ci(samples_ns: list[int], confidence: float) -> float | None:
    ci = median_ci(sorted(samples_ns), confidence)
    return None if ci is None else ci.rel_half_width


def measure(step: Callable[[], Any], settings: MeasurementSettings, *,
            sync: Callable[[], None] | None = None,
            on_progress: ProgressFn | None = None,
            clock: Callable[[], int] = time.perf_counter_ns,
            region: contextlib.AbstractContextManager[Any] | None = None) -> Measured:
    """Run `step` until the CI of the median is within target, bounded by the settings.

    min_iterations always run (the worker's hard timeout bounds a slow step); after that the
    loop stops at the first of: target reached (once min_duration_s has passed as well),
    max_iterations, max_duration_s. `region` is entered around the timed iterations only
    (after the warm-up): the energy meter's."""
    for _ in range(settings.warmup_iterations):
        step()
        if sync is not None:
            sync()

    with region or contextlib.nullcontext():
        return _timed(step, settings, sync=sync, on_progress=on_progress, clock=clock)


def _timed(step: Callable[[], Any], settings: MeasurementSettings, *,
           sync: Callable[[], None] | None, on_progress: ProgressFn | None,
           clock: Callable[[], int]) -> Measured:
    """measure's timed loop, after the warm-up."""
    samples: list[int] = []
    payloads: list[Any] = []
    min_ns = int(settings.min_duration_s * 1e9)
    max_ns = int(settings.max_duration_s * 1e9)
    max_iterations = settings.max_iterations
    next_check = settings.min_iterations
    next_progress = 0
    rel_ci: float | None = None
    stop_reason: Literal["converged", "max_duration", "max_iterations"] = "max_duration"
    start = clock()
    while True:
        t0 = clock()
        out = step()
        if sync is not None:
            sync()
        t1 = clock()
        samples.append(t1 - t0)
        if out is not None:
            payloads.append(out)
        n = len(samples)
        elapsed = t1 - start
        if n >= next_check and elapsed >= min_ns:
            rel_ci = _rel_ci(samples, settings.confidence)
            if rel_ci is not None and rel_ci <= settings.target_rel_ci:
                stop_reason = "converged"
                break
            next_check = n + max(1, n // 20)
        if max_iterations is not None and n >= max_iterations:
            stop_reason = "max_iterations"
            break
        if elapsed >= max_ns and n >= settings.min_iterations:
            break
        if on_progress is not None and t1 >= next_progress:
            on_progress({"phase": "measuring", "iterations": n, "elapsed_s": elapsed / 1e9,
                         "rel_ci": rel_ci})
            next_progress = t1 + _PROGRESS_EVERY_NS
    end = clock()
    if stop_reason != "converged":
        rel_ci = _rel_ci(samples, settings.confidence)
    info = MeasurementInfo(
        iterations=len(samples),
        warmup_iterations=settings.warmup_iterations,
        duration_s=(end - start) / 1e9,
        target_rel_ci=settings.target_rel_ci,
        achieved_rel_ci=rel_ci,
        converged=stop_reason == "converged",
        stop_reason=stop_reason,
    )
    return Measured(samples, payloads, info)
