"""What every importer shares: the point it reads from another tool's history, the runs
those points become, and bounded readers of JSON, JSON Lines and CSV that name the file and
line of whatever is wrong.

An importer (one module per format in this package) turns its source into
`ImportedPoint`s and nothing else: `build_runs` makes them the collector's own results
(BenchmarkSpec with `origin`, Environment, RunResult) with ids that depend only on what the
source says, so importing the same history twice adds nothing. A problem in any record is
an `InputError` naming the file and the record, raised before anything is written.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.adapters.files import MAX_DOCUMENT_BYTES, read_text
from collector.domain.catalogue import METRICS
from collector.domain.errors import InputError
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Environment, RunResult
from collector.domain.workload import Origin
from collector.version import __version__

# A source file: a year of a hundred series in one CSV export is tens of MiB.
MAX_IMPORT_BYTES = 256 << 20
MAX_DEPTH = 64  # JSON nesting: optimum-benchmark's reports are about 8 levels deep
UNKNOWN_HOST = "imported"

log = logging.getLogger(__name__)  # a source that does not say which machine measured it


@dataclass(frozen=True)
class ImportedPoint:
    """One measured point of another tool, as its source gives it.

    `where` names the file and record for messages (`report.json`, `results.jsonl:17`,
    `benchmarks.benchmark_id=42`). `group` ties the points of one source run together (they
    become one run); it is built from what the source says (its run's id, timestamp and
    settings), never from a file's name or place, so the same history from another copy of
    the file is the same run. `spec` holds BenchmarkSpec fields (name, model, task, device,
    dtype, batch_size, sequence_length, new_tokens, backend, serving, ...); `origin` and
    `suite` are added. `environment` holds the Environment fields the source has (commit,
    transformers_version, torch_version, gpu_name, gpu_count, cpu_model, ...). `time` is when
    the source says it was measured (timezone-aware; naive times are taken as UTC)."""

    origin: Origin
    where: str
    group: str
    spec: Mapping[str, Any]
    time: datetime
    metrics: Mapping[str, float]
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)
    host: str = UNKNOWN_HOST
    environment: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def parse_time(value: Any, where: str, what: str = "time") -> datetime:
    """An ISO 8601 time (a trailing Z allowed) or a Unix timestamp, as UTC-aware."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return as_utc(datetime.fromisoformat(text))
        except ValueError:
            pass
    raise InputError(f"{where}: {what}: expected an ISO 8601 time or a Unix timestamp, "
                     f"got {value!r:.60}")


def number(value: Any, where: str, what: str) -> float:
    """A finite number (a numeric string too, as CSV gives them)."""
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: {what}: expected a finite number, got {value!r:.60}")
    return float(value)


def required_field(mapping: Mapping[str, Any], key: str, where: str, at: str) -> Any:
    """`mapping[key]`, which must be there and not null (`at`: the mapping's path)."""
    if mapping.get(key) is None:
        raise InputError(f"{where}: {at}{key}: missing")
    return mapping[key]


def text_field(mapping: Mapping[str, Any], key: str, where: str, at: str) -> str | None:
    """`mapping[key]` as a string, None where it is absent or null."""
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: {at}{key}: expected a string, got {value!r:.60}")
    return value


def name_field(mapping: Mapping[str, Any], key: str, where: str, at: str) -> str:
    """`mapping[key]`, a string that is not blank."""
    value = text_field(mapping, key, where, at)
    if value is None or not value.strip():
        raise InputError(f"{where}: {at}{key}: missing")
    return value


def json_number(value: Any, where: str, what: str) -> float:
    """A finite JSON number (a string is not one here, whatever it spells)."""
    if isinstance(value, str):
        raise InputError(f"{where}: {what}: expected a finite number, got {value!r:.60}")
    return number(value, where, what)


def positive_field(mapping: Mapping[str, Any], key: str, where: str, at: str) -> int:
    """`mapping[key]`, a positive integer."""
    value = required_field(mapping, key, where, at)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{where}: {at}{key}: expected a positive integer, got {value!r:.60}")
    return value


_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.\-]+")


def benchmark_name(text: str) -> str:
    """A benchmark name (collector.domain.workload.NAME_PATTERN) from a source's own name
    of it: `facebook/opt-6.7b` -> `facebook_opt-6.7b`."""
    name = _NAME_INVALID.sub("_", text).strip("_.-")[:120]
    return name if name and name[0].isalnum() else f"x{name}"[:120] if name else "imported"


def digest(*parts: Any) -> str:
    """A stable hex digest of JSON-able parts (a group key from what a source says)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- readers ----------------------------------------------------------------------------------

_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def read_source(path: str | Path) -> str:
    """A source file's text: bounded, UTF-8; InputError naming the file otherwise."""
    return read_text(path, limit=MAX_IMPORT_BYTES, what="benchmark result file")


def _check_depth(where: str, text: str, first_line: int = 1) -> None:
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line = first_line + text.count("\n", 0, match.start())
                raise InputError(f"{where}:{line}: nested more than {MAX_DEPTH} levels deep")
        elif token in ("]", "}"):
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, where: str, first_line: int = 1) -> Any:
    """JSON text, nesting bounded; NaN and Infinity refused; errors name the line."""
    if len(text) > MAX_DOCUMENT_BYTES:  # one document; a JSONL file's lines are each one
        raise InputError(f"{where}: one JSON document larger than 64 MiB")
    _check_depth(where, text, first_line)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{first_line + exc.lineno - 1}: invalid JSON: "
                         f"{exc.msg}") from None
    except ValueError as exc:  # a constant, or an integer over Python's digit limit
        raise InputError(f"{where}:{first_line}: invalid JSON: {exc}") from None


def read_json(path: str | Path) -> Any:
    return parse_json(read_source(path), str(path))


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON Lines file."""
    for number_, line in enumerate(read_source(path).splitlines(), start=1):
        if line.strip():
            yield number_, parse_json(line, str(path), number_)


def read_csv(path: str | Path, text: str | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of each record of a CSV file with a header."""
    source = read_source(path) if text is None else text
    reader = csv.DictReader(io.StringIO(source, newline=""), strict=True)
    try:
        if reader.fieldnames is None:
            raise InputError(f"{path}:1: expected a CSV header")
        for row in reader:
            if None in row:  # more fields than the header names
                raise InputError(f"{path}:{reader.line_num}: more fields than the header's "
                                 f"{len(reader.fieldnames)}")
            yield reader.line_num, {k: (v if v is not None else "") for k, v in row.items()}
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num + 1}: invalid CSV: {exc}") from None


# -- points into runs -----------------------------------------------------------------------


def _environment(point: ImportedPoint) -> Environment:
    given = dict(point.environment)
    values: dict[str, Any] = {
        "host": point.host, "os": "", "kernel": "", "cpu_model": "", "cpu_logical_cores": 0,
        "memory_total_bytes": 0, "python_version": "", "collector_version": __version__}
    values.update({k: v for k, v in given.items() if v is not None})
    return Environment.model_validate(values)


def _problem(where: str, exc: ValidationError) -> InputError:
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"])
    return InputError(f"{where}: {loc + ': ' if loc else ''}{error['msg']}")


def build_runs(points: Sequence[ImportedPoint]) -> list[RunResult]:
    """The collector's runs of these points: one run per source run (`group`) and host,
    its id and every series id from what the source says. Two points of one series in one
    source run are one measurement given twice (a copy, two forms of one file): kept once,
    the first read. InputError naming the record for a point that is not a valid
    result."""
    runs: dict[str, list[tuple[ImportedPoint, BenchmarkResult]]] = {}
    specs: dict[str, BenchmarkSpec] = {}  # a year of a series repeats one spec
    environments: dict[str, Environment] = {}
    for point in points:
        unknown = sorted(set(point.metrics) - set(METRICS))
        if unknown:
            raise InputError(f"{point.where}: metric(s) {', '.join(unknown)} are not in the "
                             f"catalogue")
        if not point.metrics:
            raise InputError(f"{point.where}: no measured value to import")
        try:
            key = digest(point.origin.value, point.spec)
            spec = specs.get(key) or specs.setdefault(key, BenchmarkSpec.model_validate(
                {"suite": point.origin.value, **point.spec, "origin": point.origin}))
            key = digest(point.host, point.environment)
            environment = environments.get(key) or environments.setdefault(
                key, _environment(point))
            started = as_utc(point.time)
            finished = datetime.fromtimestamp(started.timestamp() + max(point.duration_s, 0),
                                              tz=timezone.utc)
            series_id = spec.series_id(environment.host)
            result = BenchmarkResult(
                spec=spec, series_id=series_id, status="ok", resolved_task=spec.task
                if spec.task.value != "auto" else None, started_at=started,
                finished_at=finished, environment=environment, metrics=dict(point.metrics),
                samples={k: [float(v) for v in values] for k, values in point.samples.items()})
        except ValidationError as exc:
            raise _problem(point.where, exc) from None
        key = digest(point.origin.value, point.group, environment.host)
        kept = next((p for p, r in runs.get(key, ()) if r.series_id == series_id), None)
        if kept is not None:
            # One source run measures a series once: this is the same measurement given
            # again (a copy of a file, or another form of it, such as benchmark_v2's full
            # and summarized results), kept once: the first read.
            if kept.metrics != point.metrics:
                log.warning("%s: the same run and workload as %s, read first: kept once",
                            point.where, kept.where)
            continue
        runs.setdefault(key, []).append((point, result))
    out = []
    for key, members in runs.items():
        first = members[0][0]
        results = tuple(result for _, result in members)
        out.append(RunResult(
            run_id=key[:32], suite=first.origin.value, host=results[0].environment.host,
            started_at=min(r.started_at for r in results),
            finished_at=max(r.finished_at for r in results),
            collector_version=__version__, results=results))
    return sorted(out, key=lambda run: (run.started_at, run.run_id))
