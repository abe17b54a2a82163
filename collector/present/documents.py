"""Every versioned JSON document the collector writes, and the results document it reads
back: one place for the formats (docs/results-format.md), each named by its `format` and
`format_version`.

- `collector-results` v1: runs with every result (run-once --output, the Python API),
  read back by `compare`, `report` and the API;
- `collector-comparison` v1: `compare --format json` (and ab/rerun, which add their keys);
- `collector-pivot` v1: `compare --pivot ... --format json`;
- `collector-ab` v1 and `collector-bisect` v1: `ab` and `bisect --format json`;
- `collector-detect` v1: `detect`'s changes of a series from a file;
- the regressions list (`regressions --format json`), a plain JSON list.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from collector.analysis.ab import AbResult, AbSummary
from collector.analysis.bisect import MultiBisect
from collector.analysis.compare import Comparison, Pivot
from collector.analysis.reading import read
from collector.analysis.summary import summary
from collector.detect.offline import MEASURED_MAX, MEASURED_MIN, InputPoint
from collector.domain.catalogue import SAMPLE_MEDIANS, headline
from collector.domain.detection import DetectorSettings
from collector.domain.errors import InputError
from collector.domain.history import Regression, ResultsOfRun, StoredRun
from collector.domain.model import BenchmarkResult, Failure, RunResult
from collector.domain.packages import Pin
from collector.domain.series import SeriesInfo

RESULTS_FORMAT = "collector-results"
RESULTS_FORMAT_VERSION = 1
COMPARISON_FORMAT = "collector-comparison"
COMPARISON_FORMAT_VERSION = 1
PIVOT_FORMAT = "collector-pivot"
AB_FORMAT = "collector-ab"
BISECT_FORMAT = "collector-bisect"
DETECT_FORMAT = "collector-detect"
FORMAT_VERSION = 1  # of the pivot, A/B, bisect and detect documents


def dumps(document: Any) -> str:
    """A document as the collector writes it: indented JSON and a newline."""
    return json.dumps(document, indent=2) + "\n"


# -- results -------------------------------------------------------------------------------

def results_document(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The documented, versioned results document (docs/results-format.md). Each successful
    result carries its headline's `reading` (collector.analysis.reading: value,
    uncertainty, quality) beside what was measured; it is derived, and read back ignored."""
    return {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "runs": [_run_entry(run) for run in runs],
        "summary": summary(runs),
    }


def _run_entry(run: RunResult) -> dict[str, Any]:
    body = run.model_dump(mode="json")
    for entry, result in zip(body["results"], run.results, strict=True):
        if result.status == "ok":
            reading = read(result, headline(result.metrics))
            entry["reading"] = {**reading.as_dict(), "quality_text": reading.quality_text}
    return {**body, "status": run.status}


def _measured(raw: Any) -> Any:
    """A run entry without what results_document derived (its status, each reading)."""
    if not isinstance(raw, dict):
        return raw
    body = {k: v for k, v in raw.items() if k != "status"}
    if isinstance(body.get("results"), list):
        body["results"] = [{k: v for k, v in r.items() if k != "reading"}
                           if isinstance(r, dict) else r for r in body["results"]]
    return body


def parse_results(text: str, source: str) -> list[ResultsOfRun]:
    """Every scheduled run of a results document's text, with its results; InputError
    naming `source` (and the line or run) otherwise."""
    document = _strict_json(text, source)
    if not isinstance(document, dict) or document.get("format") != RESULTS_FORMAT:
        raise InputError(f"{source}: not a collector results document (format "
                         f"{RESULTS_FORMAT!r}; write one with `run-once --output`)")
    if document.get("format_version") != RESULTS_FORMAT_VERSION:
        raise InputError(f"{source}: results format version "
                         f"{document.get('format_version')!r}, this collector reads "
                         f"{RESULTS_FORMAT_VERSION}")
    runs: list[ResultsOfRun] = []
    if not isinstance(document.get("runs") or [], list):
        raise InputError(f"{source}: runs: expected a list of runs")
    for index, raw in enumerate(document.get("runs") or []):
        try:
            run = RunResult.model_validate(_measured(raw))
        except (ValueError, TypeError, AttributeError) as exc:
            first = str(exc).splitlines()
            raise InputError(f"{source}: runs[{index}] is not a valid run: "
                             f"{' '.join(first[:3])}") from None
        _check_values(run, f"{source}: runs[{index}]")
        if run.purpose == "scheduled":
            runs.append(ResultsOfRun(run.run_id, run.suite, run.host, run.started_at,
                                     run.results))
    return runs


class _NotAJsonNumber(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _constant(literal: str) -> float:
    raise _NotAJsonNumber(literal)  # NaN, Infinity, -Infinity: Python's, not JSON's


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999
        raise _NotAJsonNumber(literal)
    return value


def _strict_json(text: str, source: str) -> Any:
    """Standard JSON: NaN, Infinity and numbers beyond a double are refused (json.loads
    takes them, and a comparison would then write them back as bare NaN, which no JSON
    reader takes); InputError naming the line."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}: not JSON: {exc.msg}") from None
    except _NotAJsonNumber as exc:
        at = re.search(rf"(?<![\w.]){re.escape(exc.literal)}(?![\w.])", text)
        line = text.count("\n", 0, at.start()) + 1 if at else 1
        raise InputError(f"{source}:{line}: {exc.literal[:40]} is not a number JSON has (a "
                         "measurement is a finite number)") from None
    except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits; deep nesting
        raise InputError(f"{source}: not JSON: {str(exc)[:100]}") from None


def _value_problem(value: float) -> str | None:
    """No catalogued metric is negative, none is beyond MEASURED_MIN..MAX unless 0."""
    if not math.isfinite(value) or value < 0:
        return "a measurement is a finite number of 0 or more"
    if value != 0 and not MEASURED_MIN <= value <= MEASURED_MAX:
        return (f"outside what any metric measures (0, or {MEASURED_MIN:g} to "
                f"{MEASURED_MAX:g})")
    return None


def _check_values(run: RunResult, where: str) -> None:
    """Every metric of every result and repetition, and the timing samples compare reads,
    is a measurement; InputError naming the run, the result, the field and the value
    otherwise."""
    for number, result in enumerate(run.results):
        at = f"{where}.results[{number}]"
        fields: list[tuple[str, float]] = [
            (f"metrics.{name}", value) for name, value in result.metrics.items()]
        fields += [(f"repetitions[{rep.index}].metrics.{name}", value)
                   for rep in result.repetitions for name, value in rep.metrics.items()]
        fields += [(f"samples.{name}[{i}]", value) for name in SAMPLE_MEDIANS.values()
                   for i, value in enumerate(result.samples.get(name, ()))]
        for field, value in fields:
            problem = _value_problem(value)
            if problem is not None:
                raise InputError(f"{at}.{field}: {problem} (got {value!r})")


# -- compare -------------------------------------------------------------------------------

def verdict_counts(comparison: Comparison) -> dict[str, int]:
    counts = {"worse": 0, "better": 0, "same": 0}
    for row in comparison.rows:
        counts[row.verdict] += 1
    return counts


def comparison_document(comparison: Comparison, names: tuple[str, str]) -> dict[str, Any]:
    return {"format": COMPARISON_FORMAT, "format_version": COMPARISON_FORMAT_VERSION,
            "a": names[0], "b": names[1], "rows": [r.as_dict() for r in comparison.rows],
            "only_a": comparison.only_a, "only_b": comparison.only_b,
            "summary": verdict_counts(comparison)}


def pivot_table_document(table: Pivot) -> dict[str, Any]:
    return {"metric": table.metric, "group": table.group, "rows": table.rows,
            "columns": table.columns,
            "cells": [{"row": r, "column": c, "value": v, "best": (r, c) in table.best}
                      for (r, c), v in sorted(table.cells.items())]}


def pivot_document(tables: Sequence[Pivot]) -> dict[str, Any]:
    return {"format": PIVOT_FORMAT, "format_version": FORMAT_VERSION,
            "tables": [pivot_table_document(p) for p in tables]}


# -- ab, bisect, rerun ---------------------------------------------------------------------

def ab_document(result: AbResult, summary: AbSummary | None) -> dict[str, Any]:
    """The A/B's own keys of the JSON output (beside the comparison's)."""
    return {"ab": {"format": AB_FORMAT, "format_version": FORMAT_VERSION,
                   "benchmark": f"{result.spec.suite}/{result.spec.name}",
                   "pins_a": [str(p) for p in result.a], "pins_b": [str(p) for p in result.b],
                   "versions_a": result.versions_a, "versions_b": result.versions_b,
                   "rounds": result.rounds, "order": list(result.order),
                   "build_s": result.build_s, "elapsed_s": result.elapsed_s,
                   "cache_hits": list(result.cache_hits),
                   "summary": summary.as_dict() if summary is not None else None,
                   "failure": result.failure.model_dump(mode="json")
                   if result.failure is not None else None}}


def bisect_document(benchmark: str, outcome: MultiBisect) -> dict[str, Any]:
    return {"format": BISECT_FORMAT, "format_version": FORMAT_VERSION,
            "benchmark": benchmark, **outcome.as_dict()}


def rerun_document(run: StoredRun, pins: Sequence[Pin], failure: Failure | None,
                   fresh: Sequence[BenchmarkResult]) -> dict[str, Any]:
    """The rerun's own keys of the JSON output (beside the comparison's)."""
    return {"rerun": {"run_id": run.run_id, "suite": run.suite, "host": run.host,
                      "started_at": run.started_at.isoformat(),
                      "pins": [str(p) for p in pins],
                      "failure": failure.model_dump(mode="json")
                      if failure is not None else None,
                      "failed": [f"{r.spec.suite}/{r.spec.name}: "
                                 f"{r.failure.message if r.failure else ''}"
                                 for r in fresh if r.status != "ok"]}}


# -- detect, regressions -------------------------------------------------------------------

def detect_document(points: Sequence[InputPoint], changes: Sequence[dict[str, Any]], *,
                    direction: str, settings: DetectorSettings, source: str,
                    metric: str | None) -> dict[str, Any]:
    """`detect`'s output: the input's summary and every change found (each already a plain
    mapping with its times: collector.detect.offline.detect_series)."""
    return {
        "format": DETECT_FORMAT,
        "format_version": FORMAT_VERSION,
        "input": source,
        "metric": metric,
        "direction": direction,
        "points": len(points),
        "settings": asdict(settings),
        "changes": list(changes),
        "note": None if len(points) >= settings.min_history else (
            f"too few points to judge: {len(points)} of {settings.min_history}"),
    }


def regression_entry(record: Regression, info: SeriesInfo) -> dict[str, Any]:
    """One change of `regressions --format json`, with the series it belongs to."""
    body = asdict(record)
    for key, value in body.items():
        if hasattr(value, "isoformat"):
            body[key] = value.isoformat()
    return {**body, "series": {"benchmark": info.benchmark, "name": info.benchmark,
                               "model": info.model, "host": info.host, "task": info.task,
                               "device": info.device, "dtype": info.dtype}}
