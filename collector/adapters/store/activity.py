"""Aggregations both stores answer with the same SQL (standard SQL, `?`/`%s` placeholders
aside), for the exporter's health metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from collector.adapters.store.rows import parse_time
from collector.domain.history import SeriesActivity, SuiteActivity

# Scheduled runs only: confirmation runs are extra repetitions, not the schedule's health.
SERIES_RESULTS = ("SELECT series_id, status, count(*), max(finished_at) FROM results "
                  "WHERE purpose = 'scheduled' GROUP BY series_id, status")
SERIES_FAILURES = "SELECT series_id, kind, count(*) FROM failures GROUP BY series_id, kind"
SUITE_RUNS = ("SELECT suite, host, status, count(*), max(started_at), max(finished_at) "
              "FROM runs WHERE purpose = 'scheduled' GROUP BY suite, host, status")

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
