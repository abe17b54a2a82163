"""`collector detect --input FILE`: the series file, parsed (the detection is
collector/detect/offline.py's).

Input, one point per run, oldest first:
  * CSV with a header: `value` (required), `time`, `samples` (numbers separated by `;` or
    spaces), `contaminated` (true/false);
  * JSON: a list of objects with the same keys, or `{"points": [...]}`.
Times, when given, are given for every point, all ISO 8601 times (all with a UTC offset, or
all without) or all numbers, oldest first. Values are measurements: from 1e-18 to 1e18.
Output: a JSON document listing every change (collector.present.documents.detect_document).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import datetime
from typing import Any

from collector.detect.offline import MEASURED_MAX, MEASURED_MIN, InputPoint
from collector.domain.errors import InputError

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}


MAX_DEPTH = 32  # a point is at most 3 levels deep ({"points": [{"samples": [...]}]})
MAX_INT_DIGITS = 64  # longer integers are not measurements (and Python caps at 4,300)
_WS = re.compile(r"[ \t\n\r]*")
# Strings are skipped whole (brackets inside them do not count), brackets are counted.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class _BigInt(str):
    """An integer literal too long to be a value: kept as its text, refused by _value."""

    def __repr__(self) -> str:
        return f"an integer of {len(self):,} digits"


def _int(text: str) -> int | _BigInt:
    return int(text) if len(text) <= MAX_INT_DIGITS else _BigInt(text)


_DECODER = json.JSONDecoder(parse_int=_int)


def parse_series(text: str, path: str) -> list[InputPoint]:
    """The points of a series file's text (read by collector.adapters.files.read_text);
    InputError naming `path`, the line and the field otherwise."""
    stripped = text.lstrip()
    read = _read_json(path, text) if stripped[:1] in ("[", "{") else _read_csv(path, text)
    if not read:
        raise InputError(f"{path}:1: no points")
    _check_times(read)
    return [point for point, _ in read]


def _value(raw: Any, where: str, field: str) -> float:
    if isinstance(raw, bool | _BigInt):  # float(True) is 1.0: not a measurement
        raise InputError(f"{where}: {field}: expected a number, got {_short(raw)}")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: {field}: expected a number, got {_short(raw)}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{where}: {field}: expected a positive finite number, "
                         f"got {_short(raw)}")
    if not MEASURED_MIN <= value <= MEASURED_MAX:
        raise InputError(f"{where}: {field}: {_short(raw)} is outside what any measurement "
                         f"is ({MEASURED_MIN:g} to {MEASURED_MAX:g})")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _samples(raw: Any, where: str) -> list[float] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, dict | bool | _BigInt) or not isinstance(raw, list | str):
        raise InputError(f"{where}: samples: expected a list of numbers, got {_short(raw)}")
    items = raw if isinstance(raw, list) else raw.replace(";", " ").split()
    return [_value(item, where, "samples") for item in items]


def _flag(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        raw = str(raw)  # 0 and 1, as in CSV
    text = raw.strip().lower() if isinstance(raw, str) else "" if raw is None else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{where}: contaminated: expected true or false, got {_short(raw)}")


def _time(raw: Any, where: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise InputError(f"{where}: time: expected a string, got {_short(raw)}")
    return str(raw)


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _instant(text: str, where: str) -> tuple[str, float | datetime]:
    """A point's time as something to order by, and what kind of time it is."""
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        value = float(stripped)
        if math.isfinite(value):
            return "a number", value
    else:
        try:
            when = datetime.fromisoformat(stripped)
        except ValueError:
            pass
        else:
            return ("a time with a UTC offset" if when.utcoffset() is not None
                    else "a time without a UTC offset"), when
    raise InputError(f"{where}: time: expected an ISO 8601 time (2026-01-01T12:00:00Z) or a "
                     f"number, got {_short(text)}")


def _check_times(read: list[tuple[InputPoint, str]]) -> None:
    """The points' times, when given, say the points go oldest first, and can say it: every
    point has one, all of one kind (numbers; or ISO times, all with a UTC offset or all
    without: a time without one has no order against a time with one), none before the
    point above it. Otherwise a change would be reported from times that do not follow
    each other (a detection before its change's start). InputError naming the line."""
    timed = [(point.time, where) for point, where in read]
    given = [where for time, where in timed if time is not None]
    if not given:
        return
    if len(given) < len(timed):
        missing = next(where for time, where in timed if time is None)
        raise InputError(f"{missing}: time: missing, while other points have one (the first "
                         f"at {given[0]}); give every point a time, or none")
    previous: tuple[str, float | datetime, str] | None = None
    for time, where in timed:
        assert time is not None
        kind, when = _instant(time, where)
        if previous is not None:
            before_kind, before, before_text = previous
            if kind != before_kind:
                raise InputError(f"{where}: time: {_short(time)} is {kind} and the point above "
                                 f"it, {_short(before_text)}, is {before_kind}; give every "
                                 "point's time the same way")
            if when < before:  # type: ignore[operator]  # one kind: both numbers or times
                raise InputError(f"{where}: time: {_short(time)} is before the point above "
                                 f"it ({_short(before_text)}); points go oldest first")
        previous = kind, when, time


def _read_csv(path: str, text: str) -> list[tuple[InputPoint, str]]:
    reader = csv.DictReader(io.StringIO(text))
    points = []
    try:
        if reader.fieldnames is None or "value" not in reader.fieldnames:
            raise InputError(f"{path}:1: expected a CSV header with a `value` column "
                             "(and optionally time, samples, contaminated)")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            points.append((InputPoint(_time(row.get("time"), where),
                                      _value(row["value"], where, "value"),
                                      _samples(row.get("samples"), where),
                                      _flag(row.get("contaminated"), where)), where))
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (131,072)
        # The error comes while reading a record: it starts on the line after line_num.
        raise InputError(f"{path}:{reader.line_num + 1}: invalid CSV: {exc}") from None
    return points


def _check_depth(path: str, text: str) -> None:
    """json.loads recurses once per level: refuse deep nesting before it does."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise InputError(f"{path}:{line}: nested more than {MAX_DEPTH} levels deep")
        elif token in ("]", "}"):
            depth -= 1


def _item_lines(text: str, data: Any) -> list[int]:
    """The line of each point of a document already known to be valid JSON: the stdlib
    parser keeps no positions, so the point list is walked again with raw_decode."""
    def skip(index: int) -> int:
        return _WS.match(text, index).end()  # type: ignore[union-attr]  # `*` always matches

    index = skip(0)
    if isinstance(data, dict):  # {"points": [...]}: the last "points" member counts
        start = None
        index = skip(index + 1)
        while text[index] != "}":
            key, index = _DECODER.raw_decode(text, index)
            index = skip(skip(index) + 1)  # the colon
            if key == "points":
                start = index
            _, index = _DECODER.raw_decode(text, index)
            index = skip(index)
            if text[index] == ",":
                index = skip(index + 1)
        if start is None:
            return []
        index = start
    lines = []
    newlines = 0
    last = 0
    index = skip(index + 1)
    while text[index] != "]":
        newlines += text.count("\n", last, index)
        last = index
        lines.append(newlines + 1)
        _, index = _DECODER.raw_decode(text, index)
        index = skip(index)
        if text[index] == ",":
            index = skip(index + 1)
    return lines


def _read_json(path: str, text: str) -> list[tuple[InputPoint, str]]:
    _check_depth(path, text)
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # the checks above should leave none
        raise InputError(f"{path}: invalid JSON: {exc}") from None
    items = data.get("points") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{path}:1: expected a list of points or {{\"points\": [...]}}")
    lines = _item_lines(text, data)
    points = []
    for i, item in enumerate(items):
        where = f"{path}:{lines[i]}: point {i}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected an object with a `value`")
        if "value" not in item:
            raise InputError(f"{where}: value: missing")
        points.append((InputPoint(_time(item.get("time"), where),
                                  _value(item["value"], where, "value"),
                                  _samples(item.get("samples"), where),
                                  _flag(item.get("contaminated"), where)), where))
    return points
