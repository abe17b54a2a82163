"""What Grafana does to a query before a backend sees it, for tests that run dashboard queries
against real PostgreSQL and Prometheus servers (no Grafana server can run here).

Written from Grafana's behaviour (frontend template service and SQL/Prometheus datasources,
backend SQL macro engine), implementing the parts our dashboards use; anything else raises,
as Grafana itself would for an unknown macro:

- template variables `$name` and `${name}` (no `${name:format}`: we use none);
- SQL datasources: a multi-value or "All" variable becomes a list of single-quoted literals
  with quotes doubled (`'a','b''c'`); a single-value variable without multi/All is inserted
  with quotes doubled but unquoted; a custom `allValue` is inserted as is;
- Prometheus: a multi-value or "All" variable becomes regex-escaped values, `(a|b)` for
  several; a custom `allValue` (e.g. `.*`) is inserted as is;
- the SQL backend's global substitutions ($__interval_ms, $__interval, $__unixEpochFrom(),
  $__unixEpochTo()) and then its macros ($__time, $__timeEpoch, $__timeFilter, $__timeFrom,
  $__timeTo, $__timeGroup, $__timeGroupAlias, $__unixEpochFilter), with times in UTC as
  RFC 3339 with nanosecond precision and trailing zeros dropped, like Go's time.RFC3339Nano;
- Prometheus' built-ins $__interval, $__interval_ms, $__rate_interval, $__range, $__range_s,
  $__range_ms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

ALL = "$__all"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Selection:
    """The current value of a template variable: the selected option values (for "All": all
    of the variable's options) and whether "All" is what was selected."""

    values: tuple[str, ...]
    is_all: bool = False


@dataclass(frozen=True)
class Variable:
    """The parts of a dashboard variable that decide how its value is written into a query."""

    name: str
    multi: bool
    include_all: bool
    all_value: str | None

    @classmethod
    def from_json(cls, model: Mapping[str, Any]) -> Variable:
        return cls(name=model["name"], multi=bool(model.get("multi")),
                   include_all=bool(model.get("includeAll")),
                   all_value=model.get("allValue") or None)


Formatter = Callable[[Sequence[str] | str, Variable], str]

# Grafana's template syntax: $name, [[name]] / [[name:format]], ${name} / ${name.field} /
# ${name:format}.
_TEMPLATE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]"
                       r"|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")


def interpolate(text: str, variables: Mapping[str, Variable],
                selections: Mapping[str, Selection], formatter: Formatter) -> str:
    """Replace dashboard template variables as Grafana's template service does with the
    datasource's formatter; names that are not dashboard variables are left alone."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if match.group(3) or match.group(5) or match.group(6):
            raise NotImplementedError(f"variable formats/fields are not implemented: "
                                      f"{match.group(0)}")
        if name not in variables:
            return match.group(0)
        variable = variables[name]
        selection = selections[name]
        if selection.is_all and variable.all_value is not None:
            return variable.all_value  # a custom all value is never formatted
        if variable.multi or variable.include_all:
            return formatter(list(selection.values), variable)
        (value,) = selection.values
        return formatter(value, variable)

    return _TEMPLATE.sub(replace, text)


# -- SQL ---------------------------------------------------------------------------------------

def sql_quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_formatter(value: Sequence[str] | str, variable: Variable) -> str:
    """The SQL datasources' interpolateVariable."""
    if isinstance(value, str):
        if variable.multi or variable.include_all:
            return sql_quote_literal(value)
        return value.replace("'", "''")
    return ",".join(sql_quote_literal(item) for item in value)


def go_rfc3339_nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fractional seconds without trailing zeros."""
    utc = moment.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += ("." + f"{utc.microsecond:06d}").rstrip("0")
    return text + "Z"


def format_interval(interval: timedelta) -> str:
    """gtime.FormatInterval: the interval in its largest whole unit."""
    units = [(timedelta(days=365), "y"), (timedelta(days=1), "d"), (timedelta(hours=1), "h"),
             (timedelta(minutes=1), "m"), (timedelta(seconds=1), "s"),
             (timedelta(milliseconds=1), "ms")]
    for unit, suffix in units:
        if interval >= unit:
            return f"{interval // unit}{suffix}"
    return "1ms"


_GTIME = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_GTIME_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1),
                "m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
                "w": timedelta(weeks=1), "y": timedelta(days=365)}


def parse_interval(text: str) -> timedelta:
    """gtime.ParseInterval for the plain forms (`30s`, `5m`, `1h`, `1d`, `1w`, `1y`)."""
    match = _GTIME.match(text.strip().strip("'"))
    if match is None:
        raise ValueError(f"error parsing interval {text}")
    return int(match.group(1)) * _GTIME_UNITS[match.group(2)]


# The backend macro engine: $name(args) where args contain no ')'.
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def expand_sql(sql: str, time_range: TimeRange, interval: timedelta, *,
               timescaledb: bool = False) -> str:
    """The PostgreSQL datasource backend: global substitutions, then its macros."""
    sql = sql.replace("$__interval_ms", str(interval // timedelta(milliseconds=1)))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_range.start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(time_range.end.timestamp())))
    start = go_rfc3339_nano(time_range.start)
    end = go_rfc3339_nano(time_range.end)

    def evaluate(name: str, args: list[str]) -> str:
        if name in {"__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter"}:
            if not args or not args[0]:
                raise ValueError(f"missing time column argument for macro {name}")
            column = args[0]
            return {"__time": f'{column} AS "time"',
                    "__timeEpoch": f'extract(epoch from {column}) as "time"',
                    "__timeFilter": f"{column} BETWEEN '{start}' AND '{end}'",
                    "__unixEpochFilter": (f"{column} >= {int(time_range.start.timestamp())} "
                                          f"AND {column} <= {int(time_range.end.timestamp())}"),
                    }[name]
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in {"__timeGroup", "__timeGroupAlias"}:
            if len(args) < 2:
                raise ValueError(f"macro {name} needs time column and interval and optional "
                                 "fill value")
            if len(args) == 3:
                raise NotImplementedError("fill modes of $__timeGroup are not implemented")
            seconds = parse_interval(args[1]).total_seconds()
            if timescaledb:
                group = f"time_bucket('{seconds:.3f}s',{args[0]})"
            else:
                # Go's %v of a float64: shortest representation, no trailing ".0"
                number = f"{seconds:g}" if seconds != math.floor(seconds) else f"{int(seconds)}"
                group = f"floor(extract(epoch from {args[0]})/{number})*{number}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        raise ValueError(f"unknown macro {name!r}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        # Grafana: $__timeGroup(...) directly followed by ',' means the pre-5.3 alias form.
        if name == "__timeGroup" and sql[match.end():match.end() + 1] == ",":
            name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        return evaluate(name, args)

    return _MACRO.sub(replace, sql)


# -- Prometheus --------------------------------------------------------------------------------

def prometheus_regular_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def prometheus_special_regex_escape(value: str) -> str:
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda match: "\\\\" + match.group(0), value)


def prometheus_formatter(value: Sequence[str] | str, variable: Variable) -> str:
    """The Prometheus datasource's interpolateQueryExpr."""
    if not variable.multi and not variable.include_all:
        if not isinstance(value, str):
            raise TypeError(f"{variable.name}: a single-value variable holds one value")
        return prometheus_regular_escape(value)
    if isinstance(value, str):
        return prometheus_special_regex_escape(value)
    escaped = [prometheus_special_regex_escape(item) for item in value]
    if len(escaped) == 1:
        return escaped[0]
    return "(" + "|".join(escaped) + ")"


def prometheus_duration(duration: timedelta) -> str:
    milliseconds = duration // timedelta(milliseconds=1)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    return f"{milliseconds // 1000}s"


def rate_interval(interval: timedelta, scrape_interval: timedelta) -> timedelta:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(interval + scrape_interval, 4 * scrape_interval)


def expand_promql(expr: str, time_range: TimeRange, interval: timedelta,
                  scrape_interval: timedelta) -> str:
    range_ms = int((time_range.end - time_range.start) / timedelta(milliseconds=1))
    range_s = round(range_ms / 1000)
    built_ins = {
        "__rate_interval": prometheus_duration(rate_interval(interval, scrape_interval)),
        "__interval_ms": str(interval // timedelta(milliseconds=1)),
        "__interval": prometheus_duration(interval),
        "__range_ms": str(range_ms),
        "__range_s": str(range_s),
        "__range": f"{range_s}s",
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return built_ins.get(name, match.group(0))

    return re.sub(r"\$(\w+)|\$\{(\w+)\}", replace, expr)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*?)\s*,\s*)?([a-zA-Z_]\w*)\s*\)\s*$",
                           re.S)


def parse_label_values(query: str) -> tuple[str | None, str]:
    """`label_values(selector, label)` or `label_values(label)` -> (selector, label)."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise NotImplementedError(f"only label_values() variable queries are implemented: "
                                  f"{query}")
    return match.group(1), match.group(2)
