"""The detector over a series given as points (`collector detect --input FILE`): the same
online detector as scheduled runs get, replayed, each change described with the points'
times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from collector.detect.detector import Change, replay
from collector.domain.catalogue import Direction
from collector.domain.detection import DetectorSettings
from collector.domain.stats import mann_whitney_p

# What a measurement can be, in a series file or a results file: no catalogued metric is
# nonzero below 1e-18 or above 1e18 (an attosecond, an exabyte, 10^18 instructions). Within
# it every ratio of two values and every effect the detector computes on their logs stays
# finite (values of 1e-308 and 1e308 overflowed it).
MEASURED_MIN = 1e-18
MEASURED_MAX = 1e18


@dataclass(frozen=True)
class InputPoint:
    time: str | None
    value: float
    samples: list[float] | None = None
    contaminated: bool = False


def _change(change: Change, points: Sequence[InputPoint]) -> dict[str, Any]:
    def at(index: int | None) -> str | None:
        return None if index is None else points[index].time

    body: dict[str, Any] = {"status": change.status, **asdict(change),
                            "p_value": change.p_value}
    body.update(start_time=at(change.start_index), detected_time=at(change.detected_index),
                confirmed_time=at(change.confirmed_index),
                resolved_time=at(change.resolved_index))
    # Raw samples: the last clean run before the change against the first one after it.
    before = next((points[i] for i in range(change.start_index - 1, -1, -1)
                   if not points[i].contaminated), None)
    after = points[change.start_index]
    if before is not None and before.samples and after.samples:
        body["samples_p_value"] = mann_whitney_p(before.samples, after.samples)
    return body


def detect_series(points: Sequence[InputPoint], direction: Direction,
                  settings: DetectorSettings) -> list[dict[str, Any]]:
    """Every change the detector finds in the points, described with the points' times and,
    where both sides have raw samples, a rank test of them."""
    changes = replay([p.value for p in points], direction, settings,
                     contaminated=[p.contaminated for p in points])
    return [_change(c, points) for c in changes]
