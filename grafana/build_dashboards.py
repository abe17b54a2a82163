"""Generate the Grafana dashboards in grafana/dashboards/ (the committed JSON is what Grafana
loads; tests/integration/test_grafana.py proves it equals this script's output).

    .venv/bin/python grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python grafana/build_dashboards.py --check  # exit 1 if any file is stale

Every panel, template variable and annotation names its datasource by the fixed UIDs of
grafana/provisioning/datasources/collector.yml. Metric names, units and directions come from
the collector's own catalogue (collector/domain/catalogue.py), so a renamed metric changes the
dashboards here, not in a hand-edited JSON file.

SQL conventions (see grafana/README.md): only Grafana macros whose expansion does not depend
on the datasource's `timescaledb` flag ($__timeFilter, $__timeFrom, $__timeTo,
$__interval_ms), so the same queries run on TimescaleDB and on plain PostgreSQL; template
variables are multi-value with "All", which Grafana expands to a quoted list, so every filter
is `column IN ($variable)`.
"""

# ruff: noqa: S608  (this file writes SQL text for Grafana from constants defined here and
# executes nothing; Grafana substitutes the only variable parts, with its own quoting)

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: find the collector

from collector.domain.catalogue import (  # noqa: E402  (needs the path set above)
    BUILD_INFO,
    BUSY_CPU_FRACTION,
    COST_METRICS,
    DEFAULT_SELECTION,
    FAILURES,
    LAST_SUCCESS,
    METRICS,
    NEXT_RUN,
    OUTBOX_PENDING,
    OUTBOX_QUARANTINED,
    P_LATENCY,
    REGRESSION_CHANGE,
    RUNS,
    SCHEDULE_INTERVAL,
    SERVING_PANELS,
    Direction,
    panels,
)
from collector.domain.series import (  # noqa: E402
    DIMENSIONS_BY_NAME,
    SERIES_DIMENSIONS,
    SERIES_LABELS,
)
from collector.domain.serving import SWEEP_SAMPLES  # noqa: E402
from collector.domain.workload import LABEL_PARTS  # noqa: E402

DASHBOARDS_DIR = HERE / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11; later versions migrate it forward on load

POSTGRES_UID = "collector-postgres"
PROMETHEUS_UID = "collector-prometheus"
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": POSTGRES_UID}
PROMETHEUS = {"type": "prometheus", "uid": PROMETHEUS_UID}

# Trend panels read raw measurements while one pixel spans less than an hour, then the hourly
# aggregate, then the daily one: never more points than pixels, and on TimescaleDB the long
# ranges come from the continuous aggregates instead of the raw hypertable.
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

Json = dict[str, Any]


# -- small builders ----------------------------------------------------------------------------

def sql_target(sql: str, fmt: str = "table", ref: str = "A") -> Json:
    return {"refId": ref, "datasource": POSTGRES, "editorMode": "code", "format": fmt,
            "rawQuery": True, "rawSql": sql.strip()}


def prom_target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series",
                ref: str = "A") -> Json:
    target: Json = {"refId": ref, "datasource": PROMETHEUS, "editorMode": "code",
                    "expr": expr.strip(), "format": fmt, "instant": instant,
                    "range": not instant}
    if legend:
        target["legendFormat"] = legend
    return target


def _field_config(unit: str, custom: Json, *, decimals: int | None = None,
                  thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
                  color: str = "palette-classic", no_value: str | None = None) -> Json:
    defaults: Json = {
        "unit": unit,
        "color": {"mode": color},
        "thresholds": {"mode": "absolute",
                       "steps": [{"value": value, "color": name} for value, name in thresholds]},
        "custom": custom,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if no_value is not None:
        defaults["noValue"] = no_value
    return {"defaults": defaults, "overrides": []}


def timeseries(title: str, description: str, targets: list[Json], *, unit: str,
               bars: bool = False, legend_calcs: Sequence[str] = ("lastNotNull", "min", "max"),
               soft_min_zero: bool = True) -> Json:
    custom: Json = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
                    "fillOpacity": 60 if bars else 0, "showPoints": "always", "pointSize": 4,
                    "lineInterpolation": "linear", "spanNulls": True,
                    "axisPlacement": "auto", "gradientMode": "none"}
    if bars:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    if soft_min_zero:
        custom["axisSoftMin"] = 0
    return {"type": "timeseries", "title": title, "description": description,
            "datasource": targets[0]["datasource"], "targets": targets,
            "fieldConfig": _field_config(unit, custom),
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "showLegend": True, "calcs": list(legend_calcs)},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, description: str, target: Json, *, unit: str = "none",
         thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
         decimals: int | None = None) -> Json:
    return {"type": "stat", "title": title, "description": description,
            "datasource": target["datasource"], "targets": [target],
            "fieldConfig": _field_config(unit, {}, decimals=decimals, thresholds=thresholds,
                                         color="thresholds", no_value="0"),
            "options": {"graphMode": "none", "colorMode": "value", "justifyMode": "auto",
                        "textMode": "value", "wideLayout": True, "showPercentChange": False,
                        "percentChangeColorMode": "standard", "orientation": "auto",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False}}}


def table(title: str, description: str, target: Json, *, unit: str = "none",
          sort_by: str | None = None, descending: bool = True) -> Json:
    options: Json = {"frameIndex": 0, "showHeader": True, "cellHeight": "sm",
                     "footer": {"show": False, "reducer": ["sum"], "countRows": False}}
    if sort_by is not None:
        options["sortBy"] = [{"displayName": sort_by, "desc": descending}]
    return {"type": "table", "title": title, "description": description,
            "datasource": target["datasource"], "targets": [target],
            "fieldConfig": _field_config(unit, {"align": "auto", "inspect": True,
                                                "filterable": True}),
            "options": options}


def barchart(title: str, description: str, target: Json, *, x_field: str, unit: str = "none",
             thresholds: Sequence[tuple[float | None, str]] | None = None,
             decimals: int | None = None) -> Json:
    """Horizontal bars, one per row of a table query: the label column `x_field` and one
    numeric column (every numeric column would be a bar series of its own)."""
    custom: Json = {"lineWidth": 1, "fillOpacity": 80, "gradientMode": "none",
                    "axisPlacement": "auto", "axisSoftMin": 0,
                    "hideFrom": {"tooltip": False, "legend": False, "viz": False}}
    field_config = (_field_config(unit, custom, decimals=decimals) if thresholds is None
                    else _field_config(unit, custom, decimals=decimals, thresholds=thresholds,
                                       color="thresholds"))
    return {"type": "barchart", "title": title, "description": description,
            "datasource": target["datasource"], "targets": [target],
            "fieldConfig": field_config,
            "options": {"xField": x_field, "orientation": "horizontal", "barRadius": 0,
                        "xTickLabelRotation": 0, "xTickLabelMaxLength": 60,
                        "stacking": "none", "showValue": "auto", "barWidth": 0.8,
                        "groupWidth": 0.7, "fullHighlight": False,
                        "legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": False, "calcs": []},
                        "tooltip": {"mode": "single", "sort": "none"}}}


def xychart(title: str, description: str, target: Json, *, split_by: str,
            unit: str = "none") -> Json:
    """Points (x, y) of a table query, one curve per value of its text column `split_by`:
    the query's first numeric column is x, its second y (Grafana's automatic mapping, each
    frame a series once the rows are partitioned by `split_by`). The XY chart of Grafana
    11.3 and later (its options are what Grafana's xychart schema says)."""
    custom: Json = {"show": "points+lines", "pointSize": {"fixed": 6}, "pointShape": "circle",
                    "lineWidth": 1, "fillOpacity": 50, "axisPlacement": "auto",
                    "axisSoftMin": 0,
                    "hideFrom": {"tooltip": False, "legend": False, "viz": False}}
    return {"type": "xychart", "title": title, "description": description,
            "datasource": target["datasource"], "targets": [target],
            "fieldConfig": _field_config(unit, custom),
            "options": {"mapping": "auto", "series": [],
                        "legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True, "calcs": []},
                        "tooltip": {"mode": "single", "sort": "none"}},
            "transformations": [{"id": "partitionByValues",
                                 "options": {"fields": [split_by], "keepFields": False}}]}


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(sections: Sequence[Sequence[tuple[Json, int, int]]]) -> list[Json]:
    """Place panels left to right, line after line: each line is a list of (panel, width,
    height); a row panel takes a full line of height 1. Assigns ids and gridPos."""
    panels: list[Json] = []
    y = 0
    for line in sections:
        x = 0
        tallest = 0
        for source, width, height in line:
            panel = dict(source)
            panel["id"] = len(panels) + 1
            panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
            panels.append(panel)
            x += width
            tallest = max(tallest, height)
        if x > 24:
            raise ValueError(f"line at y={y} is {x} columns wide")
        y += tallest
    return panels


def sql_variable(name: str, label: str, sql: str, *, numeric: bool = False) -> Json:
    return {"type": "query", "name": name, "label": label, "datasource": POSTGRES,
            "query": sql, "definition": sql, "refresh": 1, "multi": True,
            "includeAll": True, "current": {"text": ["All"], "value": ["$__all"]},
            "options": [], "sort": 3 if numeric else 1, "hide": 0, "regex": ""}


def prom_variable(name: str, label: str, query: str) -> Json:
    # allValue ".*": "All" also matches series without the label (up, scrape_duration).
    return {"type": "query", "name": name, "label": label, "datasource": PROMETHEUS,
            "query": query, "definition": query, "refresh": 2, "multi": True,
            "includeAll": True, "allValue": ".*",
            "current": {"text": ["All"], "value": ["$__all"]}, "options": [], "sort": 1,
            "hide": 0, "regex": ""}


def custom_variable(name: str, label: str, values: Sequence[str],
                    default: Sequence[str]) -> Json:
    return {"type": "custom", "name": name, "label": label, "query": ",".join(values),
            "multi": True, "includeAll": True,
            "current": {"text": list(default), "value": list(default)},
            "options": [{"text": value, "value": value, "selected": value in default}
                        for value in values],
            "hide": 0}


def single_custom_variable(name: str, label: str, values: Sequence[str], default: str) -> Json:
    """One value at a time, no "All": Grafana's SQL datasource inserts it unquoted with its
    single quotes doubled, so queries write it inside a literal: '$name'."""
    if default not in values:
        raise ValueError(f"{name}: default {default!r} is not one of {list(values)}")
    return {"type": "custom", "name": name, "label": label, "query": ",".join(values),
            "multi": False, "includeAll": False,
            "current": {"text": default, "value": default},
            "options": [{"text": value, "value": value, "selected": value == default}
                        for value in values],
            "hide": 0}


def sql_annotation(name: str, color: str, sql: str) -> Json:
    return {"name": name, "datasource": POSTGRES, "enable": True, "hide": False,
            "iconColor": color, "target": sql_target(sql, ref="Anno")}


def dashboard(uid: str, title: str, description: str, panels: list[Json], *,
              variables: Sequence[Json] = (), annotations: Sequence[Json] = (),
              time_from: str = "now-30d", refresh: str = "5m") -> Json:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["collector"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "links": [{"title": "Collector dashboards", "type": "dashboards", "icon": "external link",
                   "tooltip": "", "tags": ["collector"], "asDropdown": True,
                   "targetBlank": False, "includeVars": False, "keepTime": True}],
        "templating": {"list": list(variables)},
        "annotations": {"list": list(annotations)},
        "panels": panels,
    }


# -- SQL pieces --------------------------------------------------------------------------------

def column(dimension: str, alias: str = "s") -> str:
    """A series dimension's column (the stores keep `benchmark` as `name`)."""
    return f"{alias}.{DIMENSIONS_BY_NAME[dimension].store_column}"


def columns(*dimensions: str, alias: str = "s") -> str:
    """Series dimensions as SELECT items, each under its dimension's name."""
    items = []
    for dimension in dimensions:
        item = column(dimension, alias)
        if DIMENSIONS_BY_NAME[dimension].store_column != dimension:
            item += f" AS {dimension}"
        items.append(item)
    return ", ".join(items)


def _label_sql() -> str:
    """The workload's label (collector.domain.workload.LABEL_PARTS, as
    BenchmarkSpec.label writes it) and its host, from the series table."""
    parts = []
    for part in LABEL_PARTS:
        value = column(part.dimension)
        prefix, _, suffix = part.template.partition("{}")
        expr = value if not prefix and not suffix else "||".join(
            x for x in (f"'{prefix}'" if prefix else "", value, f"'{suffix}'" if suffix else "")
            if x).replace("||", " || ")
        if part.skip is not None:
            expr = f"nullif({expr}, '{part.template.format(part.skip)}')"
        if part.unused_by:
            tasks = ", ".join(f"'{task}'" for task in sorted(part.unused_by))
            expr = f"CASE WHEN s.task IN ({tasks}) THEN NULL ELSE {expr} END"
        if part.used_by is not None:
            tasks = ", ".join(f"'{task}'" for task in sorted(part.used_by))
            expr = f"CASE WHEN s.task IN ({tasks}) THEN {expr} END"
        parts.append(expr)
    return f"concat_ws(' ', {', '.join(parts)}, '@ ' || s.host)"


SERIES_LABEL = _label_sql()

# Chained filters of the Trends and Compare dashboards, one per series dimension
# (collector.domain.series.SERIES_DIMENSIONS): each variable's query is filtered by the ones
# before it, and every panel by all of them.
TREND_FILTERS: list[tuple[str, str, str, bool]] = [
    # (variable, label, series column, numeric)
    (d.name, d.title, d.store_column, d.numeric) for d in SERIES_DIMENSIONS]


def series_filter(alias: str = "s", upto: int | None = None) -> str:
    used = TREND_FILTERS if upto is None else TREND_FILTERS[:upto]
    return " AND ".join(f"{alias}.{column} IN (${variable})"
                        for variable, _, column, _ in used) or "TRUE"


def human_value(value: str, unit: str) -> str:
    """A SQL expression that renders a measurement with its unit for a table cell (one column
    holds metrics of different units, so Grafana's per-field unit cannot do it)."""
    # Cost and carbon span orders of magnitude (a tiny CPU model's cost per 1M tokens is a
    # few thousandths): three significant digits, as the collector's table shows them, so a
    # small figure never reads 0.00.
    significant = (f"CASE WHEN {value} = 0 THEN '0' ELSE round({value}::numeric, greatest(0, "
                   f"2 - floor(log(abs({value}::numeric)))::int))::text END || ' ' || {unit}")
    derived = "".join(f"WHEN '{METRICS[name].unit}' THEN {significant} "
                      for name in COST_METRICS)
    return (f"CASE {unit} "
            f"WHEN 'seconds' THEN CASE WHEN {value} < 1 "
            f"THEN round(({value} * 1000)::numeric, 3) || ' ms' "
            f"ELSE round({value}::numeric, 3) || ' s' END "
            f"WHEN 'bytes' THEN pg_size_pretty({value}::bigint) "
            f"{derived}"
            f"ELSE round({value}::numeric, 2) || ' ' || {unit} END")


def _percent(value: str) -> str:
    """As collector.analysis.reading writes a share: whole percent from 10%, else one
    decimal."""
    return (f"CASE WHEN {value} >= 0.1 THEN round(100 * {value}::numeric) "
            f"ELSE round(100 * {value}::numeric, 1) END || '%'")


def quality_sql(result: str, metric: str) -> str:
    """The quality of a stored result's metric as collector.analysis.reading.Reading's
    quality_text says it: `busy N%` (other processes used BUSY_CPU_FRACTION of the CPU or
    more while it was measured), `±a > ±b` (its median did not settle within its target;
    never for deterministic metrics), else `clean`. `result`: an alias of the results
    table; `metric`: an SQL expression naming the metric."""
    other = f"({result}.noise ->> 'other_cpu_fraction')::float8"
    achieved = f"({result}.measurement ->> 'achieved_rel_ci')::float8"
    target = f"({result}.measurement ->> 'target_rel_ci')::float8"
    exact = ", ".join(f"'{name}'" for name, m in sorted(METRICS.items()) if m.profile.exact)
    return (f"CASE WHEN {other} >= {BUSY_CPU_FRACTION} THEN 'busy ' || {_percent(other)} "
            f"WHEN {metric} IN ({exact}) THEN 'clean' "
            f"WHEN ({result}.measurement ->> 'converged')::boolean IS FALSE THEN "
            f"CASE WHEN {achieved} IS NOT NULL AND {target} IS NOT NULL THEN "
            f"'±' || {_percent(achieved)} || ' > ±' || {_percent(target)} "
            "ELSE 'unconverged' END ELSE 'clean' END")


def direction_values() -> str:
    """(metric, sign) for every catalogued metric: +1 where higher is worse, -1 where lower
    is worse, 0 for neutral metrics."""
    signs = {Direction.LOWER_IS_BETTER: 1, Direction.HIGHER_IS_BETTER: -1,
             Direction.NEUTRAL: 0}
    rows = ", ".join(f"('{name}', {signs[metric.direction]})"
                     for name, metric in sorted(METRICS.items()))
    return f"(VALUES {rows}) AS d(metric, sign)"


def trend_sql(metrics: Mapping[str, str | None], *, where: str = "TRUE") -> str:
    """Time series (time, metric, value) of the given metrics for every selected series (and
    `where`, a condition on the series `s`), from the raw table, the hourly or the daily
    aggregate depending on $__interval_ms."""
    for name in metrics:
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}: see collector/domain/catalogue.py")
    with_suffix = any(suffix for suffix in metrics.values())
    values = ", ".join(f"('{name}', '{suffix or ''}')" for name, suffix in metrics.items())
    label = (f"concat_ws(' ', {SERIES_LABEL}, nullif(k.suffix, ''))" if with_suffix
             else SERIES_LABEL)
    return f"""
-- Raw points while one pixel spans less than an hour, else the hourly aggregate, else the
-- daily one (continuous aggregates on TimescaleDB, plain views elsewhere).
SELECT p.time AS "time", {label} AS metric, p.value
FROM series s
CROSS JOIN (VALUES {values}) AS k(metric, suffix)
CROSS JOIN LATERAL (
    SELECT m.time, m.value FROM measurements m
    WHERE $__interval_ms < {HOUR_MS}
      AND m.series_id = s.series_id AND m.metric = k.metric AND $__timeFilter(m.time)
    UNION ALL
    SELECT h.bucket, h.avg FROM measurements_hourly h
    WHERE $__interval_ms >= {HOUR_MS} AND $__interval_ms < {DAY_MS}
      AND h.series_id = s.series_id AND h.metric = k.metric AND $__timeFilter(h.bucket)
    UNION ALL
    SELECT d.bucket, d.avg FROM measurements_daily d
    WHERE $__interval_ms >= {DAY_MS}
      AND d.series_id = s.series_id AND d.metric = k.metric AND $__timeFilter(d.bucket)
) AS p
WHERE {where} AND {series_filter()}
ORDER BY 1, 2
"""


# -- Overview ----------------------------------------------------------------------------------

HEADLINE_METRICS = DEFAULT_SELECTION

LATEST_VS_BASELINE = f"""
-- Latest value of each selected metric per series, against its baseline: the median of the
-- (up to) 20 runs before the latest one, counted from the newest accepted baseline
-- (`baselines.since`, set when a change is marked as expected) when there is one; and the
-- latest value's quality, as the collector's table says it (busy N%, ±a > ±b, clean).
SELECT {columns("host", "benchmark", "model", "task", "backend", "device", "dtype")},
       s.batch_size AS "batch", s.sequence_length AS "seq", k.metric,
       {human_value("l.value", "l.unit")} AS latest,
       {human_value("b.baseline", "l.unit")} AS baseline,
       round((100 * (l.value / nullif(b.baseline, 0) - 1))::numeric, 1) AS "change %",
       round((100 * d.sign * (l.value / nullif(b.baseline, 0) - 1))::numeric, 1)
           AS "worse by %",
       {quality_sql("q", "k.metric")} AS quality,
       b.runs AS "baseline runs", bl.since AS "baseline since", l.time AS "measured at"
FROM series s
CROSS JOIN unnest(ARRAY[$metric]::text[]) AS k(metric)
JOIN {direction_values()} ON d.metric = k.metric
CROSS JOIN LATERAL (
    SELECT m.time, m.value, m.unit, m.run_id FROM measurements m
    WHERE m.series_id = s.series_id AND m.metric = k.metric
    ORDER BY m.time DESC LIMIT 1) AS l
LEFT JOIN results q ON q.run_id = l.run_id AND q.series_id = s.series_id
LEFT JOIN LATERAL (
    SELECT max(x.since) AS since FROM baselines x
    WHERE x.series_id = s.series_id AND x.metric = k.metric) AS bl ON TRUE
LEFT JOIN LATERAL (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY w.value) AS baseline,
           count(*) AS runs
    FROM (SELECT m.value FROM measurements m
          WHERE m.series_id = s.series_id AND m.metric = k.metric AND m.time < l.time
            AND m.time >= coalesce(bl.since, '-infinity')
          ORDER BY m.time DESC LIMIT 20) AS w) AS b ON TRUE
WHERE s.host IN ($host)
ORDER BY "worse by %" DESC NULLS LAST, s.host, {column("benchmark")}, k.metric
"""

ACTIVE_REGRESSIONS = f"""
-- Detected regressions that are not over: suspected (not paging yet), open, acknowledged;
-- host drift (a step with nothing of ours changed behind it: a warning, no page) and
-- changed outputs (collector/detect/outputs.py) too.
SELECT r.start_time AS "since", r.status, r.kind,
       {columns("host", "benchmark", "model", "device", "dtype")},
       s.batch_size AS "batch", s.sequence_length AS "seq", r.metric,
       round((100 * r.relative_change)::numeric, 1) AS "change %",
       r.before_value AS "before", r.after_value AS "after", r.attribution,
       r.detected_at AS "detected", r.acknowledged_by AS "acknowledged by",
       r.confirmation ->> 'verdict' AS "confirmation", r.regression_id AS "id",
       coalesce('A/B failed: ' || (r.ab ->> 'failure'), r.ab ->> 'text') AS "A/B"
FROM regressions r
JOIN series s USING (series_id)
WHERE r.kind IN ('regression', 'host_drift', 'outputs_changed')
  AND r.status IN ('suspected', 'open', 'acknowledged')
  AND s.host IN ($host)
ORDER BY CASE r.status WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END,
         r.start_time DESC
"""

RECENT_FAILURES = f"""
SELECT f.time, {columns("host", "suite", "benchmark", "model")}, f.kind,
       f.exception_type AS "exception",
       f.message
FROM failures f
JOIN series s USING (series_id)
WHERE $__timeFilter(f.time) AND s.host IN ($host)
ORDER BY f.time DESC
LIMIT 200
"""

LAST_RUN_PER_HOST = """
SELECT DISTINCT ON (r.host)
       r.host, r.started_at AS "last run", r.suite, r.status,
       round(extract(epoch FROM r.finished_at - r.started_at)::numeric, 1) AS "duration (s)",
       (SELECT max(ok.started_at) FROM runs ok
        WHERE ok.host = r.host AND ok.status = 'ok') AS "last ok run",
       r.environment ->> 'transformers_version' AS transformers,
       r.environment ->> 'torch_version' AS torch,
       r.collector_version AS collector
FROM runs r
WHERE r.host IN ($host)
ORDER BY r.host, r.started_at DESC
"""


def overview() -> Json:
    stats = [
        (stat("Series", "Benchmark series (one per workload and host) on the selected hosts.",
              sql_target("SELECT count(*) AS series FROM series WHERE host IN ($host)")), 4, 4),
        (stat("Runs in range", "Suite runs started in the time range.",
              sql_target("SELECT count(*) AS runs FROM runs "
                         "WHERE $__timeFilter(started_at) AND host IN ($host)")), 4, 4),
        (stat("Failed benchmarks in range", "Benchmark results that failed in the time range "
              "(exception, crash, timeout, out of memory, unavailable model, aborted).",
              sql_target("SELECT count(*) AS failures FROM failures f JOIN series s "
                         "USING (series_id) WHERE $__timeFilter(f.time) AND s.host IN ($host)"),
              thresholds=((None, "green"), (1, "red"))), 4, 4),
        (stat("Open regressions", "Regressions detected and confirmed, acknowledged or not.",
              sql_target("SELECT count(*) AS regressions FROM regressions r JOIN series s "
                         "USING (series_id) WHERE r.kind = 'regression' "
                         "AND r.status IN ('open', 'acknowledged') AND s.host IN ($host)"),
              thresholds=((None, "green"), (1, "red"))), 4, 4),
        (stat("Targets down", "Scrape targets of the stack Prometheus cannot reach "
              "(collectors, Pushgateway, Alertmanager, itself).",
              prom_target("count(up == 0) or vector(0)", instant=True),
              thresholds=((None, "green"), (1, "red"))), 4, 4),
        (stat("Outbox backlog", "Runs kept in the collectors' local stores that still wait "
              "to be forwarded to PostgreSQL.",
              prom_target(f"sum({OUTBOX_PENDING.sample})", instant=True),
              thresholds=((None, "green"), (1, "orange"), (10, "red"))), 4, 4),
    ]
    panels = layout([
        [(row("Health"), 24, 1)],
        stats,
        [(row("Latest results"), 24, 1)],
        [(table("Latest value vs baseline",
                "One line per series and selected metric: the latest value, its baseline "
                "(median of up to 20 previous runs since the newest accepted baseline), the "
                "change, and the change in the bad direction ('worse by %': positive is "
                "worse, whatever the metric's direction). Sorted worst first.",
                sql_target(LATEST_VS_BASELINE)), 24, 12)],
        [(table("Active regressions", "Detected level changes in the bad direction that are "
                "not resolved: open ones page, suspected ones are still being confirmed. "
                "Attribution is what changed between the last good run and the first bad one; "
                "A/B, where package versions changed and the automatic A/B ran, is the new "
                "versions measured against the old side by side (ratio, 95% interval).",
                sql_target(ACTIVE_REGRESSIONS)), 24, 8)],
        [(table("What a quiet panel means",
                "For the selected metrics of every series: the noise between runs that the "
                "regression detector learnt, and the smallest change it pages on within one "
                "cycle (confirmation runs included) and from scheduled runs alone. Changes "
                "below the MDE cannot be told from this host's noise.",
                sql_target(DETECTABLE.replace(
                    "{where}", "s.host IN ($host) AND d.metric IN ($metric)"))), 24, 8)],
        [(table("Recent failures", "Failed benchmarks in the time range, newest first.",
                sql_target(RECENT_FAILURES)), 14, 9),
         (table("Last run per host", "The newest run of each host, its status and versions, "
                "and when the host last had a fully successful run.",
                sql_target(LAST_RUN_PER_HOST)), 10, 9)],
    ])
    metric_names = sorted(METRICS)
    return dashboard(
        "collector-overview", "Collector / Overview",
        "Where things stand: health, the latest value of every series against its baseline, "
        "active regressions, failures and the last run of each host.",
        panels,
        variables=[
            sql_variable("host", "Host", "SELECT DISTINCT host FROM series ORDER BY 1"),
            custom_variable("metric", "Metric", metric_names, HEADLINE_METRICS),
        ],
        time_from="now-7d")


# -- Trends ------------------------------------------------------------------------------------

# One trend panel per catalogue panel (collector/domain/catalogue.py): title, description, unit and
# each metric with its legend.
TREND_PANELS: list[tuple[str, str, str, dict[str, str | None]]] = [
    (panel.title, panel.description, panel.unit, {d.name: d.legend for d in members})
    for panel, members in panels()]

DETECTABLE = f"""
-- What the regression detector learnt of each selected series' metric at its latest scan:
-- the noise between runs and the smallest change it pages on at its false-alarm rate
-- (within one cycle with confirmation runs, and from scheduled runs alone). A quiet panel
-- means no change above that size.
SELECT {SERIES_LABEL} AS series, d.metric, d.runs,
       round((100 * d.noise)::numeric, 2) AS "noise %",
       round((100 * d.confirm_min_detectable_effect)::numeric, 1) AS "MDE in one cycle %",
       round((100 * d.min_detectable_effect)::numeric, 1) AS "MDE from schedule %",
       d.updated_at AS "updated"
FROM series s
JOIN detection_state d ON d.series_id = s.series_id
WHERE {{where}}
ORDER BY 1, 2
"""

REGRESSION_ANNOTATIONS = f"""
-- Detected changes (regressions and improvements) of the selected series, from their first
-- run to their resolution (or now). Dismissed excursions are left out.
SELECT a.time, a."timeEnd", a.text, a.tags
FROM regression_annotations a
WHERE a.time <= $__timeTo() AND a."timeEnd" >= $__timeFrom() AND a.status <> 'dismissed'
  AND {series_filter("a")}
ORDER BY a.time
"""

VERSION_CHANGE_ANNOTATIONS = """
-- transformers or torch version changed between two consecutive runs of a host.
SELECT v.time, concat_ws(', ',
         CASE WHEN v.transformers IS DISTINCT FROM v.prev_transformers
              THEN 'transformers ' || coalesce(v.prev_transformers, '?') || ' → '
                   || coalesce(v.transformers, '?') END,
         CASE WHEN v.torch IS DISTINCT FROM v.prev_torch
              THEN 'torch ' || coalesce(v.prev_torch, '?') || ' → ' || coalesce(v.torch, '?')
         END) || ' on ' || v.host AS text,
       'version-change,' || v.host AS tags
FROM (SELECT r.started_at AS time, r.host,
             r.environment ->> 'transformers_version' AS transformers,
             r.environment ->> 'torch_version' AS torch,
             lag(r.environment ->> 'transformers_version') OVER w AS prev_transformers,
             lag(r.environment ->> 'torch_version') OVER w AS prev_torch,
             row_number() OVER w AS n
      FROM runs r
      WHERE r.environment IS NOT NULL AND r.host IN ($host) AND r.started_at <= $__timeTo()
      WINDOW w AS (PARTITION BY r.host ORDER BY r.started_at)) AS v
WHERE v.n > 1 AND v.time >= $__timeFrom()
  AND (v.transformers IS DISTINCT FROM v.prev_transformers
       OR v.torch IS DISTINCT FROM v.prev_torch)
ORDER BY v.time
"""


def trend_variables(where: str = "") -> list[Json]:
    """The chained series filters of TREND_FILTERS: each variable's choices are filtered by
    the ones before it (and by `where`, a condition on the series `s` ending in AND)."""
    variables = []
    for index, (name, label, column, numeric) in enumerate(TREND_FILTERS):
        sql = (f"SELECT DISTINCT s.{column} FROM series s "
               f"WHERE {where}{series_filter(upto=index)} ORDER BY 1")
        variables.append(sql_variable(name, label, sql, numeric=numeric))
    return variables


def trends() -> Json:
    lines: list[list[tuple[Json, int, int]]] = []
    pair: list[tuple[Json, int, int]] = []
    for title, description, unit, metrics in TREND_PANELS:
        panel = timeseries(title, description, [sql_target(trend_sql(metrics), "time_series")],
                           unit=unit)
        if title == P_LATENCY.title:
            lines.append([(panel, 24, 10)])
            continue
        pair.append((panel, 12, 9))
        if len(pair) == 2:
            lines.append(pair)
            pair = []
    if pair:
        lines.append(pair)
    lines.append([(table(
        "What the detector can see", "Per series and metric: the noise between runs the "
        "regression detector learnt, and the minimum detectable effect (MDE): the smallest "
        "change it pages on at its false-alarm rate, within one cycle (with confirmation "
        "runs) and from scheduled runs alone. A quiet trend means no step above that size; "
        "below it, nothing can be told from noise.",
        sql_target(DETECTABLE.replace("{where}", series_filter()))), 24, 8)])
    return dashboard(
        "collector-trends", "Collector / Trends",
        "Every measured quantity over time for the selected series, with detected regressions "
        "and library version changes as annotations. Long ranges read the hourly and daily "
        "aggregates.",
        layout(lines), variables=trend_variables(),
        annotations=[sql_annotation("Regressions", "red", REGRESSION_ANNOTATIONS),
                     sql_annotation("Version changes", "blue", VERSION_CHANGE_ANNOTATIONS)])


# -- Compare -----------------------------------------------------------------------------------

# Series columns the Compare dashboard can group by (its variable `group_by`).
COMPARE_GROUPS = ("model", "backend", "dtype", "device", "batch_size", "quantization",
                  "attn_implementation")
COMPARE_DEFAULT_METRIC = DEFAULT_SELECTION[0]  # the median latency
# Ratio to best: above this a bar turns orange, above the next one red.
RATIO_THRESHOLDS: tuple[tuple[float | None, str], ...] = (
    (None, "green"), (1.05, "yellow"), (1.25, "orange"), (2.0, "red"))


def compare_sql(select: str, order: str) -> str:
    """The latest point of the picked metric ($metric) per selected series in the time range,
    with its group (the series column picked by $group_by) and its ratio to the best series
    of that group, then `select` from those rows."""
    group = "CASE '$group_by' " + " ".join(
        f"WHEN '{column}' THEN s.{column}::text" for column in COMPARE_GROUPS) + " END"
    return f"""
-- The latest value of the picked metric per selected series in the time range, and its
-- ratio to the best series of its group (the series that share the group-by column): 1.0
-- is the best; value / best where lower is better, best / value where higher is better, so
-- above 1 is always worse. Neutral metrics have no best: no ratio.
WITH latest AS (
    SELECT {group} AS "group", {SERIES_LABEL} AS series, s.host, l.value, l.unit,
           l.time, d.sign
    FROM series s
    JOIN {direction_values()} ON d.metric = '$metric'
    CROSS JOIN LATERAL (
        SELECT m.time, m.value, m.unit FROM measurements m
        WHERE m.series_id = s.series_id AND m.metric = d.metric AND $__timeFilter(m.time)
        ORDER BY m.time DESC LIMIT 1) AS l
    WHERE {series_filter()}
), ranked AS (
    SELECT x.*, CASE x.sign
                    WHEN 1 THEN x.value / nullif(min(x.value) OVER g, 0)
                    WHEN -1 THEN max(x.value) OVER g / nullif(x.value, 0)
                END AS ratio
    FROM latest x
    WINDOW g AS (PARTITION BY x."group")
)
SELECT {select}
FROM ranked r
ORDER BY {order}
"""


COMPARE_LABEL = "r.\"group\" || ' | ' || r.series"
COMPARE_VALUES = compare_sql(f'{COMPARE_LABEL} AS "series", r.value AS "value"',
                             'r."group", r.value, r.series')
COMPARE_RATIOS = compare_sql(f'{COMPARE_LABEL} AS "series", '
                             'round(r.ratio::numeric, 4) AS "ratio to best"',
                             'r."group", r.ratio NULLS LAST, r.series')
COMPARE_TABLE = compare_sql(
    f'r."group", r.series, {human_value("r.value", "r.unit")} AS "value", r.unit, '
    'round(r.ratio::numeric, 4) AS "ratio to best", r.time AS "measured at", r.host',
    'r."group", r.ratio NULLS LAST, r.series')


def compare() -> Json:
    panels = layout([
        [(barchart("Latest $metric", "The latest value of the picked metric for every "
                   "selected series in the time range, grouped by the group-by column (its "
                   "value starts each label). Values are in the metric's own unit (the "
                   "table writes it out).", sql_target(COMPARE_VALUES), x_field="series"),
          12, 14),
         (barchart("Ratio to the best in its group", "Each series' latest value against the "
                   "best one of its group: 1.0 is the best (lowest latency, highest "
                   "throughput), 1.25 is 25% worse. Neutral metrics (sizes, spreads) have no "
                   "best and no bar.", sql_target(COMPARE_RATIOS), x_field="series",
                   thresholds=RATIO_THRESHOLDS, decimals=2), 12, 14)],
        [(table("Latest values", "The same rows: value with its unit, ratio to the best of "
                "the group, when it was measured and on which host.",
                sql_target(COMPARE_TABLE)), 24, 10)],
    ])
    variables = [
        *trend_variables(),
        single_custom_variable("metric", "Metric", sorted(METRICS), COMPARE_DEFAULT_METRIC),
        single_custom_variable("group_by", "Group by", COMPARE_GROUPS, "model"),
    ]
    return dashboard(
        "collector-compare", "Collector / Compare",
        "The latest value of one metric across the selected series, side by side: which "
        "backend, dtype, device or batch size is best per model (ratio to the best, 1.0 is "
        "the best), with the same series filters as Trends.",
        panels, variables=variables, time_from="now-30d")


# -- Runs --------------------------------------------------------------------------------------

RUN_FILTER = ("$__timeFilter(r.started_at) AND r.host IN ($host) AND r.suite IN ($suite) "
              "AND r.status IN ($status)")

RUN_HISTORY = f"""
SELECT r.started_at AS "started", r.host, r.suite, r.status, r.purpose,
       round(extract(epoch FROM r.finished_at - r.started_at)::numeric, 1) AS "duration (s)",
       count(res.series_id) AS results, count(f.series_id) AS failed,
       r.environment ->> 'transformers_version' AS transformers,
       r.environment ->> 'torch_version' AS torch,
       r.environment ->> 'python_version' AS python,
       r.collector_version AS collector,
       string_agg({column("benchmark")} || ' (' || f.kind || '): ' || f.message, E'\\n'
                  ORDER BY {column("benchmark")})
           AS failures,
       r.run_id::text AS "run id"
FROM runs r
LEFT JOIN results res ON res.run_id = r.run_id
LEFT JOIN failures f ON f.run_id = res.run_id AND f.series_id = res.series_id
LEFT JOIN series s ON s.series_id = f.series_id
WHERE {RUN_FILTER}
GROUP BY r.run_id
ORDER BY r.started_at DESC
LIMIT 1000
"""

RUN_FAILURES = f"""
SELECT f.time, {columns("host", "suite", "benchmark", "model")}, f.kind,
       f.exception_type AS "exception",
       f.message, f.exit_code AS "exit code", f.signal, f.traceback_tail AS traceback,
       f.run_id::text AS "run id"
FROM failures f
JOIN runs r USING (run_id)
JOIN series s ON s.series_id = f.series_id
WHERE $__timeFilter(f.time) AND r.host IN ($host) AND r.suite IN ($suite)
  AND r.status IN ($status)
ORDER BY f.time DESC
LIMIT 1000
"""

RUNS_PER_DAY = f"""
SELECT date_trunc('day', r.started_at) AS "time", r.status AS metric, count(*) AS value
FROM runs r
WHERE {RUN_FILTER}
GROUP BY 1, 2
ORDER BY 1, 2
"""

RUN_DURATION = f"""
SELECT r.started_at AS "time", r.host || ' ' || r.suite AS metric,
       extract(epoch FROM r.finished_at - r.started_at) AS value
FROM runs r
WHERE {RUN_FILTER}
ORDER BY 1, 2
"""


def runs() -> Json:
    stats = [
        (stat("Runs", "Suite runs started in the range.",
              sql_target(f"SELECT count(*) AS runs FROM runs r WHERE {RUN_FILTER}")), 6, 4),
        (stat("Fully successful", "Share of runs in which every benchmark succeeded.",
              sql_target("SELECT avg((r.status = 'ok')::int) AS ok FROM runs r "
                         f"WHERE {RUN_FILTER}"),
              unit="percentunit", decimals=1,
              thresholds=((None, "red"), (0.9, "orange"), (0.99, "green"))), 6, 4),
        (stat("Failed benchmarks", "Failed benchmark results in the range.",
              sql_target("SELECT count(*) AS failed FROM failures f JOIN runs r USING (run_id) "
                         f"WHERE {RUN_FILTER}"),
              thresholds=((None, "green"), (1, "red"))), 6, 4),
        (stat("Median run duration", "Median wall time of a suite run.",
              sql_target("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY "
                         "extract(epoch FROM r.finished_at - r.started_at)) AS duration "
                         f"FROM runs r WHERE {RUN_FILTER}"),
              unit="s"), 6, 4),
    ]
    panels = layout([
        stats,
        [(timeseries("Runs per day by status", "Suite runs per UTC day.",
                     [sql_target(RUNS_PER_DAY, "time_series")], unit="short", bars=True,
                     legend_calcs=("sum",)), 12, 8),
         (timeseries("Run duration", "Wall time of each suite run.",
                     [sql_target(RUN_DURATION, "time_series")], unit="s"), 12, 8)],
        [(table("Run history", "Every run in the range: status, duration, library versions "
                "and the failure messages of its failed benchmarks.",
                sql_target(RUN_HISTORY)), 24, 12)],
        [(table("Failures", "Every failed benchmark in the range, with the exception and the "
                "end of its traceback.", sql_target(RUN_FAILURES)), 24, 10)],
    ])
    return dashboard(
        "collector-runs", "Collector / Runs",
        "Run history: status, duration, versions and failure messages.",
        panels,
        variables=[
            sql_variable("host", "Host", "SELECT DISTINCT host FROM runs ORDER BY 1"),
            sql_variable("suite", "Suite",
                         "SELECT DISTINCT suite FROM runs WHERE host IN ($host) ORDER BY 1"),
            custom_variable("status", "Status", ("ok", "partial", "failed", "aborted"),
                            ("ok", "partial", "failed", "aborted")),
        ])


# -- Collector health --------------------------------------------------------------------------

JOB = 'job=~"$job"'
JOB_HOST = 'job=~"$job", host=~"$host"'
SERIES_BY = ", ".join(SERIES_LABELS)


def health() -> Json:
    panels = layout([
        [(stat("Targets up", "Scrape targets answering (collectors, Pushgateway, "
               "Alertmanager, Prometheus itself).",
               prom_target(f"sum(up{{{JOB}}})", instant=True),
               thresholds=((None, "red"), (1, "green"))), 4, 4),
         (stat("Targets down", "Scrape targets Prometheus cannot reach.",
               prom_target(f"count(up{{{JOB}}} == 0) or vector(0)", instant=True),
               thresholds=((None, "green"), (1, "red"))), 4, 4),
         (stat("Outbox backlog", "Runs waiting in the local stores to be forwarded to "
               "PostgreSQL.", prom_target(f"sum({OUTBOX_PENDING.sample}{{{JOB}}})",
                                          instant=True),
               thresholds=((None, "green"), (1, "orange"), (10, "red"))), 5, 4),
         (stat("Outbox quarantined", "Runs PostgreSQL refuses (a value out of a column's "
               "range, a document that no longer validates): kept in the local store, not "
               "forwarded, while the runs behind them are. Any is a problem. On the "
               "collector's host run `collector db status` to see each run and its reason, "
               "fix the cause (schema, config or collector version), then "
               "`collector db retry-quarantined` puts them back in line.",
               prom_target(f"sum({OUTBOX_QUARANTINED.sample}{{{JOB}}})", instant=True),
               thresholds=((None, "green"), (1, "red")), decimals=0), 5, 4),
         (stat("Benchmark failures in range", "Failed benchmark results counted over the "
               "time range.",
               prom_target(f"sum(increase({FAILURES.sample}"
                           f"{{{JOB_HOST}}}[$__range]))", instant=True),
               thresholds=((None, "green"), (1, "red")), decimals=0), 6, 4)],
        [(timeseries("Target up", "1 while Prometheus can scrape the target.",
                     [prom_target(f"up{{{JOB}}}", "{{job}} {{instance}}")], unit="short",
                     legend_calcs=("lastNotNull", "min")), 12, 8),
         (timeseries("Scrape duration", "How long a scrape of each target takes (the "
                     "collector renders stored results once per new run).",
                     [prom_target(f"scrape_duration_seconds{{{JOB}}}",
                                  "{{job}} {{instance}}")], unit="s"), 12, 8)],
        [(timeseries("Time since last success (oldest series per host)",
                     "Age of the least recently successful series of each host: it grows "
                     "while a benchmark keeps failing or the host stops running.",
                     [prom_target("time() - min by (host) "
                                  f"({LAST_SUCCESS.sample}"
                                  f"{{{JOB_HOST}}})", "{{host}}")], unit="s"), 12, 8),
         (timeseries("Benchmark failures per hour", "Failed benchmark results by host and "
                     "failure kind.",
                     [prom_target(f"sum by (host, kind) (rate({FAILURES.sample}"
                                  f"{{{JOB_HOST}}}[$__rate_interval])) * 3600",
                                  "{{host}} {{kind}}")], unit="short"), 12, 8)],
        [(timeseries("Outbox backlog", "Runs waiting to be forwarded to PostgreSQL, per "
                     "collector: it grows while the database is unreachable.",
                     [prom_target(f"{OUTBOX_PENDING.sample}{{{JOB}}}",
                                  "{{instance}}")], unit="short"), 12, 8),
         (timeseries("Suite runs per hour by status", "Suite runs by host, suite and status.",
                     [prom_target(f"sum by (host, suite, status) (rate({RUNS.sample}"
                                  f"{{{JOB_HOST}}}[$__rate_interval])) * 3600",
                                  "{{host}} {{suite}} {{status}}")], unit="short"), 12, 8)],
        [(table("Time since last success per series",
                "Seconds since each series last succeeded, oldest first.",
                prom_target("sort_desc(time() - max by (" + SERIES_BY + ") "
                            f"({LAST_SUCCESS.sample}"
                            f"{{{JOB_HOST}}}))", instant=True, fmt="table"),
                unit="s", sort_by="Value", descending=True), 24, 9)],
        [(table("Runs overdue against their schedule",
                "Time since the last success of each series, in units of its suite's "
                "schedule interval: above 1, a scheduled run did not succeed.",
                prom_target("(time() - max by (job, instance, " + SERIES_BY + ") "
                            f"({LAST_SUCCESS.sample}"
                            f"{{{JOB_HOST}}})) / on (job, instance, suite) group_left () "
                            f"{SCHEDULE_INTERVAL.sample}{{{JOB}}}",
                            instant=True, fmt="table"),
                sort_by="Value", descending=True), 12, 8),
         (table("Next scheduled run", "Seconds until each suite's next run; a negative "
                "value means the scheduler is late or stuck.",
                prom_target(f"{NEXT_RUN.sample}{{{JOB}}} - time()",
                            instant=True, fmt="table"),
                unit="s", sort_by="Value", descending=False), 12, 8)],
        [(table("Active regressions (exporter)", "Detected changes the collectors export, "
                "with their relative change (after/before - 1) and attribution.",
                prom_target(f"{REGRESSION_CHANGE.sample}{{{JOB_HOST}}}",
                            instant=True, fmt="table"),
                unit="percentunit", sort_by="Value", descending=True), 12, 8),
         (table("Versions", "Collector and library versions each collector reports.",
                prom_target(f"{BUILD_INFO.sample}{{{JOB}}}", instant=True, fmt="table")),
          12, 8)],
    ])
    return dashboard(
        "collector-health", "Collector / Health",
        "The collectors themselves, from Prometheus: scrape targets, last successes, failures, "
        "the outbox backlog, scheduling and scrape cost.",
        panels,
        variables=[prom_variable("job", "Job", "label_values(up, job)"),
                   prom_variable("host", "Host",
                                 f'label_values({RUNS.sample}{{job=~"$job"}}, host)')],
        time_from="now-24h", refresh="1m")


# -- Serving -----------------------------------------------------------------------------------

# A series under load: continuous batching in the worker or a serving benchmark
# (collector.domain.series.SeriesInfo.load is '' for the others).
UNDER_LOAD = "s.load <> ''"

# The trend panels of the Serving dashboard (catalogue SERVING_PANELS), in that order.
SERVING_TRENDS = [(title, description, unit, members) for title, description, unit, members
                  in TREND_PANELS if title in {p.title for p in SERVING_PANELS}]
SERVING_TRENDS.sort(key=lambda t: [p.title for p in SERVING_PANELS].index(t[0]))

_SWEEP_COLUMNS = ",\n           ".join(
    f"max(x.value) FILTER (WHERE x.metric = '{name}') AS \"{what}\""
    for what, name in SWEEP_SAMPLES.items())
_SWEEP_NAMES = ", ".join(f"'{name}'" for name in SWEEP_SAMPLES.values())

LATEST_SWEEP = f"""
-- The latest sweep of each selected series under load in the time range (a result holding
-- the curve as raw samples, aligned: index i is point i) and its points, in the order run.
WITH latest AS (
    SELECT DISTINCT ON (s.series_id) s.series_id, {SERIES_LABEL} AS series, r.run_id,
           r.started_at
    FROM series s
    JOIN results r ON r.series_id = s.series_id
    WHERE {UNDER_LOAD} AND {series_filter()} AND r.status = 'ok'
      AND $__timeFilter(r.started_at)
      AND EXISTS (SELECT 1 FROM samples x
                  WHERE x.run_id = r.run_id AND x.series_id = r.series_id
                    AND x.metric = '{SWEEP_SAMPLES["offered rate"]}')
    ORDER BY s.series_id, r.started_at DESC
), points AS (
    SELECT l.series, l.started_at, x.idx,
           {_SWEEP_COLUMNS}
    FROM latest l
    JOIN samples x ON x.run_id = l.run_id AND x.series_id = l.series_id
    WHERE x.metric IN ({_SWEEP_NAMES})
    GROUP BY l.series, l.started_at, x.idx
)
SELECT {{select}}
FROM points p
ORDER BY p.series, p.idx
"""

SWEEP_TTFT_CURVE = LATEST_SWEEP.replace(
    "{select}", 'p.series, p."throughput", p."p99 TTFT"')
SWEEP_GOODPUT_CURVE = LATEST_SWEEP.replace(
    "{select}", 'p.series, p."offered rate", p."goodput"')
SWEEP_POINTS = LATEST_SWEEP.replace(
    "{select}", 'p.series, p.idx + 1 AS "point", '
    'round(p."offered rate"::numeric, 3) AS "offered rate (req/s)", '
    'round(p."throughput"::numeric, 3) AS "throughput (req/s)", '
    'round(p."goodput"::numeric, 3) AS "goodput (req/s)", '
    + ", ".join(f'round((1000 * p."{what}")::numeric, 1) AS "{what} (ms)"'
                for what in ("p99 TTFT", "p50 TPOT", "p99 request latency"))
    + ', p.started_at AS "swept at"')


def serving() -> Json:
    lines: list[list[tuple[Json, int, int]]] = []
    pair: list[tuple[Json, int, int]] = []
    for title, description, unit, metrics in SERVING_TRENDS:
        pair.append((timeseries(title, description, [sql_target(
            trend_sql(metrics, where=UNDER_LOAD), "time_series")], unit=unit), 12, 9))
        if len(pair) == 2:
            lines.append(pair)
            pair = []
    if pair:
        lines.append(pair)
    curve = [
        [(row("Latency-throughput curve of the latest sweep"), 24, 1)],
        [(xychart("p99 TTFT against throughput", "The latest sweep of each selected series "
                  "in the time range, one point per offered rate: the requests per second "
                  "the server completed (x) and the 99th percentile time to the first token "
                  "(y). Where the curve turns up, queueing starts: the server is saturated.",
                  sql_target(SWEEP_TTFT_CURVE), split_by="series", unit="s"), 12, 10),
         (xychart("Goodput against offered rate", "The same sweep: the requests per second "
                  "that met every SLO (y) at each offered rate (x). Goodput follows the "
                  "offered rate until the SLOs break; the highest rate that still met them is "
                  "slo_max_rate_per_second.", sql_target(SWEEP_GOODPUT_CURVE),
                  split_by="series", unit="reqps"), 12, 10)],
        [(table("Points of the latest sweep", "Every point of the latest sweep of each "
                "selected series: the offered rate, what the server completed and what met "
                "the SLOs, and the latencies at that rate.", sql_target(SWEEP_POINTS)),
          24, 8)],
    ]
    trends_row = [[(row("Under load, over time"), 24, 1)]]
    return dashboard(
        "collector-serving", "Collector / Serving",
        "LLM inference under load (continuous batching in the worker, serving benchmarks "
        "against an OpenAI-compatible server): latency percentiles, goodput, throughput and "
        "errors over time per series and load, and the latency-throughput curve of the "
        "latest sweep.",
        layout([*trends_row, *lines, *curve]),
        variables=trend_variables(f"{UNDER_LOAD} AND "),
        annotations=[sql_annotation("Regressions", "red", REGRESSION_ANNOTATIONS)])


# -- output ------------------------------------------------------------------------------------

BUILDERS = {"collector-overview.json": overview, "collector-trends.json": trends,
            "collector-runs.json": runs, "collector-health.json": health,
            "collector-compare.json": compare, "collector-serving.json": serving}


def render() -> dict[str, str]:
    """File name -> the JSON text Grafana loads."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in BUILDERS.items()}


def stale_files(directory: Path = DASHBOARDS_DIR) -> Iterator[str]:
    """Names of files that differ from the generated ones, are missing, or are extra."""
    wanted = render()
    present = {path.name for path in directory.glob("*.json")}
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            yield name
    yield from sorted(present - set(wanted))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed dashboard differs from the generated one")
    args = parser.parse_args(argv)
    if args.check:
        stale = list(stale_files())
        for name in stale:
            sys.stderr.write(f"stale: grafana/dashboards/{name} "
                             "(run .venv/bin/python grafana/build_dashboards.py)\n")
        return 1 if stale else 0
    DASHBOARDS_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (DASHBOARDS_DIR / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
