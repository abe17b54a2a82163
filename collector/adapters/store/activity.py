"""Aggregations both stores answer with the same SQL (standard SQL, `?`/`%s` placeholders
aside), for the exporter's health metrics."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from collector.adapters.store.rows import parse_time
from collector.domain.history import SeriesActivity, SeriesConditions, SuiteActivity

# Scheduled runs only: confirmation runs are extra repetitions, not the schedule's health.
SERIES_RESULTS = ("SELECT series_id, status, count(*), max(finished_at) FROM results "
                  "WHERE purpose = 'scheduled' GROUP BY series_id, status")
SERIES_FAILURES = "SELECT series_id, kind, count(*) FROM failures GROUP BY series_id, kind"
SUITE_RUNS = ("SELECT suite, host, status, count(*), max(started_at), max(finished_at) "
              "FROM runs WHERE purpose = 'scheduled' GROUP BY suite, host, status")

# The latest scheduled success of each series, with its measurement and noise documents.
SERIES_CONDITIONS = (
    "SELECT r.series_id, r.finished_at, r.measurement, r.noise FROM results r JOIN ("
    "SELECT series_id, max(finished_at) AS finished_at FROM results WHERE purpose = "
    "'scheduled' AND status = 'ok' GROUP BY series_id) l "
    "ON r.series_id = l.series_id AND r.finished_at = l.finished_at "
    "WHERE r.purpose = 'scheduled' AND r.status = 'ok' ORDER BY r.series_id")

Query = Callable[[str], Sequence[Sequence[Any]]]


def series_activity(query: Query) -> list[SeriesActivity]:
    results: dict[str, dict[str, int]] = defaultdict(dict)
    last: dict[str, Any] = {}
    success: dict[str, Any] = {}
    for series_id, status, count, finished_raw in query(SERIES_RESULTS):
        finished = parse_time(finished_raw)
        results[series_id][status] = int(count)
        last[series_id] = max(last.get(series_id, finished), finished)
        if status == "ok":
            success[series_id] = finished
    failures: dict[str, dict[str, int]] = defaultdict(dict)
    for series_id, kind, count in query(SERIES_FAILURES):
        failures[series_id][kind] = int(count)
    return [SeriesActivity(s, last[s], success.get(s), dict(results[s]), dict(failures[s]))
            for s in sorted(results)]


def suite_activity(query: Query) -> list[SuiteActivity]:
    runs: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    started: dict[tuple[str, str], Any] = {}
    finished: dict[tuple[str, str], Any] = {}
    for suite, host, status, count, first_raw, last_raw in query(SUITE_RUNS):
        key = (suite, host)
        runs[key][status] = int(count)
        first, last = parse_time(first_raw), parse_time(last_raw)
        if key not in started or first > started[key]:
            started[key], finished[key] = first, last
    return [SuiteActivity(suite, host, dict(runs[(suite, host)]), started[(suite, host)],
                          finished[(suite, host)]) for suite, host in sorted(runs)]


def _document(raw: Any) -> dict[str, Any]:
    """A JSON column: text in SQLite, already a dict from PostgreSQL's jsonb."""
    if raw is None:
        return {}
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def series_conditions(query: Query) -> list[SeriesConditions]:
    out: dict[str, SeriesConditions] = {}
    for series_id, finished_raw, measurement_raw, noise_raw in query(SERIES_CONDITIONS):
        measurement, noise = _document(measurement_raw), _document(noise_raw)
        converged = measurement.get("converged")
        out[series_id] = SeriesConditions(
            series_id, parse_time(finished_raw), _number(noise.get("other_cpu_fraction")),
            _number(measurement.get("achieved_rel_ci")),
            _number(measurement.get("target_rel_ci")),
            converged if isinstance(converged, bool) else None)
    return list(out.values())
