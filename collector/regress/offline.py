"""`collector detect --input FILE`: the same online detector over a series from a file.

Input, one point per run, oldest first:
  * CSV with a header: `value` (required), `time`, `samples` (numbers separated by `;` or
    spaces), `contaminated` (true/false);
  * JSON: a list of objects with the same keys, or `{"points": [...]}`.
Output: a JSON document listing every change (see `document`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collector.errors import InputError
from collector.metrics import Direction
from collector.regress.detector import Change, DetectorSettings, replay
from collector.stats import mann_whitney_p

FORMAT = "collector-detect"
FORMAT_VERSION = 1
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}


@dataclass(frozen=True)
class InputPoint:
    time: str | None
    value: float
    samples: list[float] | None = None
    contaminated: bool = False


def read_series(path: Path) -> list[InputPoint]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    stripped = text.lstrip()
    points = _read_json(path, text) if stripped[:1] in ("[", "{") else _read_csv(path, text)
    if not points:
        raise InputError(f"{path}: no points")
    return points


def _value(raw: Any, where: str, field: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {field}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{where}: {field}: expected a positive finite number, got {raw!r}")
    return value


def _samples(raw: Any, where: str) -> list[float] | None:
    if raw is None or raw == "":
        return None
    items = raw if isinstance(raw, list) else str(raw).replace(";", " ").split()
    return [_value(item, where, "samples") for item in items]


def _flag(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if raw is not None else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{where}: contaminated: expected true or false, got {raw!r}")


def _read_csv(path: Path, text: str) -> list[InputPoint]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "value" not in reader.fieldnames:
        raise InputError(f"{path}:1: expected a CSV header with a `value` column "
                         "(and optionally time, samples, contaminated)")
    points = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        points.append(InputPoint(row.get("time") or None, _value(row["value"], where, "value"),
                                 _samples(row.get("samples"), where),
                                 _flag(row.get("contaminated"), where)))
    return points


def _read_json(path: Path, text: str) -> list[InputPoint]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    items = data.get("points") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a list of points or {{\"points\": [...]}}")
    points = []
    for i, item in enumerate(items):
        where = f"{path}: point {i}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected an object with a `value`")
        if "value" not in item:
            raise InputError(f"{where}: value: missing")
        time = item.get("time")
        points.append(InputPoint(None if time is None else str(time),
                                 _value(item["value"], where, "value"),
                                 _samples(item.get("samples"), where),
                                 _flag(item.get("contaminated"), where)))
    return points


def _change(change: Change, points: list[InputPoint]) -> dict[str, Any]:
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


def document(points: list[InputPoint], direction: Direction,
             settings: DetectorSettings, *, source: str,
             metric: str | None = None) -> dict[str, Any]:
    changes = replay([p.value for p in points], direction, settings,
                     contaminated=[p.contaminated for p in points])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "input": source,
        "metric": metric,
        "direction": direction.value,
        "points": len(points),
        "settings": asdict(settings),
        "changes": [_change(c, points) for c in changes],
    }
