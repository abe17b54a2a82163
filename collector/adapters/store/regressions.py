"""Regressions, baselines and detection history: one set of queries for both stores.

Queries are written with `%s` placeholders (psycopg) and converted for SQLite by its store.
The caller supplies `query(sql, params) -> rows` and the two dialect differences: how
JSON comes back (text or already decoded) and how run ids come back (hex text or UUID).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from collector.adapters.store.rows import parse_time
from collector.domain.history import (
    REGRESSION_STATUSES,
    Baseline,
    DetectionState,
    Regression,
    RunPoint,
    SeriesHistory,
)

Query = Callable[[str, Sequence[Any]], list[Any]]

REGRESSION_COLUMNS = (
    "regression_id", "series_id", "metric", "kind", "status", "start_run_id", "start_time",
    "last_good_run_id", "last_good_time", "detected_run_id", "detected_at", "confirmed_at",
    "before_value", "after_value", "relative_change", "statistic", "p_value", "method",
    "environment_diff", "attribution", "resolved_at", "resolved_run_id", "acknowledged_at",
    "acknowledged_by", "note", "confirmation", "ab")
_RUN_ID_COLUMNS = {"start_run_id", "last_good_run_id", "detected_run_id", "resolved_run_id"}
_JSON_COLUMNS = {"environment_diff", "confirmation", "ab"}
_TIME_COLUMNS = {"start_time", "last_good_time", "detected_at", "confirmed_at", "resolved_at",
                 "acknowledged_at"}



def upsert_regression(columns: Sequence[str] = REGRESSION_COLUMNS) -> str:
    """Insert or replace a regression by id (`columns` in regression_params' order)."""
    return (f"INSERT INTO regressions ({', '.join(columns)}, updated_at) "  # noqa: S608 (column names are constants)
            f"VALUES ({', '.join(['%s'] * len(columns))}, %s) "
            "ON CONFLICT (regression_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in (*columns[1:], "updated_at")))


UPSERT_REGRESSION = upsert_regression()

BASELINE_COLUMNS = ("series_id", "metric", "since", "run_id", "reason")
INSERT_BASELINE = ("INSERT INTO baselines (series_id, metric, since, run_id, reason) "
                   "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (series_id, metric, since) "
                   "DO UPDATE SET run_id = excluded.run_id, reason = excluded.reason")


def text_id(value: Any) -> str | None:
    """A run id as text (PostgreSQL's uuid as 32 hex digits, like the collector's)."""
    if value is None:
        return None
    return value.hex if hasattr(value, "hex") and not isinstance(value, (str, bytes)) else str(
        value)


def decoded(value: Any) -> Any:
    """A JSON column's value (SQLite: text; PostgreSQL: already decoded)."""
    return json.loads(value) if isinstance(value, str) else value


def regression_params(reg: Regression, *, encode_time: Callable[[datetime], Any],
                      encode_json: Callable[[Any], Any], now: datetime) -> list[Any]:
    params: list[Any] = []
    for column in REGRESSION_COLUMNS:
        value = getattr(reg, column)
        if column in _TIME_COLUMNS and value is not None:
            value = encode_time(value)
        elif column in _JSON_COLUMNS:
            value = None if value is None else encode_json(value)
        params.append(value)
    params.append(encode_time(now))
    return params


def select_regressions(query: Query, statuses: tuple[str, ...] | None, series_id: str | None,
                       metric: str | None) -> list[Regression]:
    if statuses is not None:
        unknown = sorted(set(statuses) - set(REGRESSION_STATUSES))
        if unknown:
            raise ValueError(f"unknown regression status(es): {', '.join(unknown)}")
    wanted = list(statuses or REGRESSION_STATUSES)
    marks = ", ".join(["%s"] * len(wanted))
    sql = (f"SELECT {', '.join(REGRESSION_COLUMNS)} FROM regressions "  # noqa: S608 (constants and placeholders only)
           f"WHERE status IN ({marks})")
    params: list[Any] = list(wanted)
    if series_id is not None:
        sql += " AND series_id = %s"
        params.append(series_id)
    if metric is not None:
        sql += " AND metric = %s"
        params.append(metric)
    rows = query(sql + " ORDER BY detected_at DESC, regression_id", params)
    return [_regression(row) for row in rows]


def _column(column: str, value: Any) -> Any:
    if column in _RUN_ID_COLUMNS:
        return text_id(value)
    if column in _TIME_COLUMNS and value is not None:
        return parse_time(value)
    if column == "environment_diff":
        return decoded(value) or {}
    if column in ("confirmation", "ab"):
        return decoded(value)
    if column in ("before_value", "after_value", "relative_change", "statistic"):
        return float(value)
    return value


def _regression(row: Sequence[Any]) -> Regression:
    return Regression(**{column: _column(column, value)
                         for column, value in zip(REGRESSION_COLUMNS, row, strict=True)})


def select_baselines(query: Query, series_id: str | None) -> list[Baseline]:
    sql = "SELECT series_id, metric, since, run_id, reason FROM baselines"
    params: list[Any] = []
    if series_id is not None:
        sql += " WHERE series_id = %s"
        params.append(series_id)
    rows = query(sql + " ORDER BY since DESC", params)
    return [Baseline(s, m, parse_time(t), text_id(r), why) for s, m, t, r, why in rows]


def series_history(query: Query, series_id: str, limit: int) -> SeriesHistory:
    """The latest `limit` successful results of a series, oldest first, with all their
    measurements: one query for the results, one for the values."""
    results = query(
        "SELECT run_id, finished_at, noise, environment, spec_hash FROM results "
        "WHERE series_id = %s AND status = 'ok' AND purpose = 'scheduled' "
        "ORDER BY finished_at DESC LIMIT %s",
        (series_id, limit))
    runs: list[RunPoint] = []
    for run_id, finished, noise, environment, spec_hash in reversed(results):
        probe = decoded(noise) or {}
        fraction = probe.get("other_cpu_fraction")
        runs.append(RunPoint(text_id(run_id) or "", parse_time(finished),
                             float(fraction) if fraction is not None else None,
                             decoded(environment) or {}, spec_hash))
    values: dict[str, dict[str, float]] = {}
    if runs:
        rows = query("SELECT metric, run_id, value FROM measurements WHERE series_id = %s "
                     "AND time >= %s", (series_id, runs[0].time))
        wanted = {r.run_id for r in runs}
        for metric, run_id, value in rows:
            key = text_id(run_id) or ""
            if key in wanted:
                values.setdefault(metric, {})[key] = float(value)
    return SeriesHistory(runs, values)


def latest_samples(query: Query, series_id: str,
                   names: Sequence[str]) -> dict[str, list[float]]:
    """The raw samples `names` of the series' latest scheduled, successful result that has
    any of them ({} when none has, or they were pruned)."""
    marks = ", ".join(["%s"] * len(names))
    latest = query(
        "SELECT r.run_id FROM results r WHERE r.series_id = %s AND r.status = 'ok' "  # noqa: S608 - placeholders only
        "AND r.purpose = 'scheduled' AND EXISTS (SELECT 1 FROM samples s WHERE "
        f"s.run_id = r.run_id AND s.series_id = r.series_id AND s.metric IN ({marks})) "
        "ORDER BY r.finished_at DESC LIMIT 1", (series_id, *names))
    if not latest:
        return {}
    rows = query(
        "SELECT metric, value FROM samples WHERE run_id = %s AND series_id = %s "  # noqa: S608 - placeholders only
        f"AND metric IN ({marks}) ORDER BY metric, idx", (latest[0][0], series_id, *names))
    found: dict[str, list[float]] = {}
    for metric, value in rows:
        found.setdefault(metric, []).append(float(value))
    return found


DETECTION_STATE_COLUMNS = ("series_id", "metric", "runs", "noise", "min_detectable_effect",
                           "confirm_min_detectable_effect")
UPSERT_DETECTION_STATE = (
    f"INSERT INTO detection_state ({', '.join(DETECTION_STATE_COLUMNS)}, updated_at) "  # noqa: S608 (column names are constants)
    f"VALUES ({', '.join(['%s'] * len(DETECTION_STATE_COLUMNS))}, %s) "
    "ON CONFLICT (series_id, metric) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*DETECTION_STATE_COLUMNS[2:], "updated_at")))


def detection_state_params(state: DetectionState, now: Any) -> tuple[Any, ...]:
    return (state.series_id, state.metric, state.runs, state.noise,
            state.min_detectable_effect, state.confirm_min_detectable_effect, now)


def select_detection_states(query: Query) -> list[DetectionState]:
    rows = query(f"SELECT {', '.join(DETECTION_STATE_COLUMNS)} FROM detection_state "  # noqa: S608 (constants)
                 "ORDER BY series_id, metric", ())
    return [DetectionState(str(s), str(m), int(n), float(noise), float(mde),
                           None if cmde is None else float(cmde))
            for s, m, n, noise, mde, cmde in rows]
