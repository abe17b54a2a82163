"""Outputs changed: the rule that judges output drift (collector/analysis/numerics.py).

Drift is measured on fixed synthetic inputs against a fixed reference, so on one host and
one software stack it repeats exactly: it is a step function, not a noisy level, and often
exactly 0 (no log, no relative change). The step detector's statistics are the wrong tool.
A run's drift is a change when it is worse, by more than the metric's tolerance (the
catalogue's `tolerance`), than both the run before it and the median of the runs before
that: a persistent step is flagged at its first run only, and a one-run spike (a series
compared with its own previous run shows an upgrade that way) is flagged each time.
Worse means larger for a difference, where a step must also at least double it (float
reorderings move a 1e-7 difference to 3e-7), and smaller for an agreement share.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.domain.catalogue import Direction
from collector.domain.stats import percentile

METHOD = "outputs-step/1"
WINDOW = 10  # runs before a point whose median is its level
GROWTH = 2.0  # a difference must at least double to be a step


def worse(value: float, reference: float, direction: Direction, tolerance: float) -> bool:
    """Whether `value` is a worse output drift than `reference`."""
    if direction is Direction.LOWER_IS_BETTER:
        return value > reference + tolerance and value >= GROWTH * reference
    if direction is Direction.HIGHER_IS_BETTER:
        return value < reference - tolerance
    return False


def changes(values: Sequence[float], direction: Direction, tolerance: float) -> list[int]:
    """Indices of the runs at which the outputs changed for the worse."""
    found = []
    for index in range(1, len(values)):
        before = sorted(values[max(0, index - WINDOW):index])
        level = percentile(before, 50)
        value = values[index]
        if worse(value, values[index - 1], direction, tolerance) and worse(
                value, level, direction, tolerance):
            found.append(index)
    return found


def relative_step(before: float, after: float, tolerance: float) -> float:
    """The step relative to the value before it, or to the tolerance where that was 0:
    finite, signed, comparable across series."""
    return (after - before) / max(abs(before), tolerance)
