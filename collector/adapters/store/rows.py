"""A RunResult flattened into the rows both stores write (one shape, two dialects)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.domain.catalogue import METRICS
from collector.domain.model import BenchmarkResult, RunResult
from collector.domain.series import SERIES_COLUMNS as SERIES_LABEL_COLUMNS
from collector.domain.series import SERIES_FIELDS, series_info


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class RunRows:
    run: tuple[Any, ...]
    series: list[tuple[Any, ...]]
    results: list[tuple[Any, ...]]
    measurements: list[tuple[Any, ...]]  # for measurements, or confirmation_measurements
    samples: list[tuple[Any, ...]]
    failures: list[tuple[Any, ...]]


RUN_COLUMNS = ("run_id", "suite", "host", "started_at", "finished_at", "status",
               "collector_version", "environment", "purpose")
SERIES_COLUMNS = (*SERIES_LABEL_COLUMNS, "spec", "identity")
# A series' labels (not its identity) follow its latest run: a renamed benchmark shows its
# new name, and a label whose meaning was made clearer is rewritten at the series' next run.
SERIES_RELABELLED = ("suite", "name", "model", "architecture", "revision")
RESULT_COLUMNS = ("run_id", "series_id", "status", "started_at", "finished_at",
                  "resolved_task", "measurement", "noise", "environment", "spec_hash",
                  "purpose", "repetitions")
MEASUREMENT_COLUMNS = ("time", "run_id", "series_id", "metric", "value", "unit")
SAMPLE_COLUMNS = ("run_id", "series_id", "metric", "idx", "value")
FAILURE_COLUMNS = ("run_id", "series_id", "time", "kind", "message", "exception_type",
                   "traceback_tail", "exit_code", "signal")


def run_rows(run: RunResult) -> RunRows:
    env = run.results[0].environment.model_dump(mode="json") if run.results else None
    series: dict[str, tuple[Any, ...]] = {}
    results: list[tuple[Any, ...]] = []
    measurements: list[tuple[Any, ...]] = []
    samples: list[tuple[Any, ...]] = []
    failures: list[tuple[Any, ...]] = []
    for result in run.results:
        info = series_info(result)
        series[result.series_id] = (
            *(getattr(info, name) for name in SERIES_FIELDS),
            _json(result.spec.model_dump(mode="json")), _json(result.spec.identity()))
        results.append((run.run_id, result.series_id, result.status, result.started_at,
                        result.finished_at, info.task,
                        _json(result.measurement.model_dump(mode="json")
                              if result.measurement else None),
                        _json(result.noise.model_dump(mode="json") if result.noise else None),
                        _json(result.environment.model_dump(mode="json")),
                        spec_hash(result), run.purpose,
                        _json([r.model_dump(mode="json") for r in result.repetitions])
                        if result.repetitions else None))
        for metric, value in sorted(result.metrics.items()):
            measurements.append((result.finished_at, run.run_id, result.series_id, metric,
                                 value, METRICS[metric].unit))
        samples.extend(iter_samples(run.run_id, result))
        if result.failure is not None:
            f = result.failure
            failures.append((run.run_id, result.series_id, result.finished_at, f.kind.value,
                             f.message, f.exception_type, f.traceback_tail, f.exit_code,
                             f.signal))
    return RunRows(
        run=(run.run_id, run.suite, run.host, run.started_at, run.finished_at, run.status,
             run.collector_version, _json(env), run.purpose),
        series=[series[k] for k in sorted(series)],  # one lock order for every writer
        results=results, measurements=measurements, samples=samples, failures=failures)


def measurement_table(run: RunResult) -> str:
    """Where a run's values go: confirmation runs never become points of their series."""
    return "confirmation_measurements" if run.purpose == "confirmation" else "measurements"


def spec_hash(result: BenchmarkResult) -> str:
    """A short hash of the whole spec: it changes with any knob, identity or not."""
    text = _json(result.spec.model_dump(mode="json")) or ""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def iter_samples(run_id: str, result: BenchmarkResult) -> Iterator[tuple[Any, ...]]:
    for metric, values in sorted(result.samples.items()):
        for idx, value in enumerate(values):
            yield (run_id, result.series_id, metric, idx, value)


def parse_time(value: Any) -> datetime:
    """SQLite hands back ISO strings; PostgreSQL datetimes."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
