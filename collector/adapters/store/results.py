"""Stored runs read back as results (both stores, psycopg-style placeholders): what
`collector compare` needs to compare runs, suites, time windows and environments from the
history instead of files.

Results come back as BenchmarkResult objects with their metrics, repetitions, environment
and the raw samples that have a metric as their median; their spec is the one the series
was first recorded with (the identity is the same; measurement knobs may have moved).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from collector.adapters.store.regressions import Query, decoded, text_id
from collector.adapters.store.rows import parse_time
from collector.domain.catalogue import METRICS, SAMPLE_MEDIANS
from collector.domain.history import ResultsOfRun, StoredRun, flatten
from collector.domain.model import BenchmarkResult

MAX_RUNS = 5000  # runs read to filter by environment: far more than a comparison wants


def select_runs(query: Query, *, suite: str | None = None, host: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                run_id_prefix: str | None = None) -> list[StoredRun]:
    """Scheduled runs, newest first, filtered by suite, host, start time and run id."""
    sql = ("SELECT run_id, suite, host, started_at, environment FROM runs "
           "WHERE purpose = 'scheduled'")
    params: list[Any] = []
    for column, value in (("suite", suite), ("host", host)):
        if value is not None:
            sql += f" AND {column} = %s"
            params.append(value)
    if since is not None:
        sql += " AND started_at >= %s"
        params.append(since)
    if until is not None:
        sql += " AND started_at < %s"
        params.append(until)
    rows = query(sql + " ORDER BY started_at DESC LIMIT %s", (*params, MAX_RUNS))
    found = [StoredRun(text_id(r[0]) or "", r[1], r[2], parse_time(r[3]), decoded(r[4]) or {})
             for r in rows]
    if run_id_prefix is not None:
        wanted = run_id_prefix.replace("-", "").lower()
        found = [r for r in found if r.run_id.startswith(wanted)]
    return found


def select_results(query: Query, runs: Sequence[StoredRun]) -> list[BenchmarkResult]:
    """The successful results of `runs` in their order (then by series), with their
    metrics and the raw samples behind median metrics."""
    return flatten(select_results_of_runs(query, runs))


def select_results_of_runs(query: Query, runs: Sequence[StoredRun]) -> list[ResultsOfRun]:
    """select_results, run by run (runs without a successful result left out)."""
    if not runs:
        return []
    ids = [r.run_id for r in runs]
    marks = ", ".join(["%s"] * len(ids))
    rows = query(
        "SELECT r.run_id, r.series_id, r.started_at, r.finished_at, r.resolved_task, "  # noqa: S608 - placeholders only
        "r.measurement, r.noise, r.environment, r.repetitions, s.spec FROM results r "
        f"JOIN series s ON s.series_id = r.series_id WHERE r.run_id IN ({marks}) "
        "AND r.status = 'ok'", ids)
    if not rows:
        return []
    start = min(parse_time(r[2]) for r in rows)
    end = max(parse_time(r[3]) for r in rows) + timedelta(seconds=1)
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    for run_id, series_id, metric, value in query(
            "SELECT run_id, series_id, metric, value FROM measurements "  # noqa: S608 - placeholders only
            f"WHERE run_id IN ({marks}) AND time >= %s AND time <= %s", (*ids, start, end)):
        if metric in METRICS:  # a metric an older collector had and this one dropped
            metrics.setdefault((text_id(run_id) or "", series_id), {})[metric] = float(value)
    names = sorted(set(SAMPLE_MEDIANS.values()))
    samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    name_marks = ", ".join(["%s"] * len(names))
    for run_id, series_id, name, value in query(
            "SELECT run_id, series_id, metric, value FROM samples "  # noqa: S608 - placeholders only
            f"WHERE run_id IN ({marks}) AND metric IN ({name_marks}) "
            "ORDER BY run_id, series_id, metric, idx", (*ids, *names)):
        key = (text_id(run_id) or "", series_id)
        samples.setdefault(key, {}).setdefault(name, []).append(float(value))
    order = {run_id: index for index, run_id in enumerate(ids)}
    rows = sorted(rows, key=lambda row: (order[text_id(row[0]) or ""], row[1]))
    results: dict[str, list[BenchmarkResult]] = {}
    for (run_id, series_id, started, finished, task, measurement, noise, environment,
         repetitions, spec) in rows:
        key = (text_id(run_id) or "", series_id)
        results.setdefault(key[0], []).append(BenchmarkResult.model_validate({
            "spec": decoded(spec), "series_id": series_id, "status": "ok",
            "resolved_task": task, "started_at": parse_time(started),
            "finished_at": parse_time(finished), "environment": decoded(environment),
            "metrics": metrics.get(key, {}), "samples": samples.get(key, {}),
            "measurement": decoded(measurement), "noise": decoded(noise),
            "repetitions": _repetitions(decoded(repetitions))}))
    return [ResultsOfRun(run.run_id, run.suite, run.host, run.started_at,
                         tuple(results[run.run_id])) for run in runs if run.run_id in results]


def _repetitions(raw: Any) -> list[dict[str, Any]]:
    """Stored repetitions, without metrics this collector no longer knows."""
    return [{**r, "metrics": {k: v for k, v in r.get("metrics", {}).items() if k in METRICS}}
            for r in raw or []]
