"""`collector report --format html`: one self-contained HTML file with charts.

What it holds, from measured data only: a summary (what ran, where, with which versions),
the latest results, comparison tables (models x batch size, backend x dtype, device x model,
the best of each column marked) and charts (latency vs batch size, throughput vs sequence
length, memory vs model size, the headline by model and variant), trends over time with the
changes the detector finds in them marked, stored regressions with their attribution, the
bottleneck findings (collector/analysis/findings.py), failures and the full environment.

Charts are plotly's (its JS inlined once, so the file opens with no network: about 4.8 MB of
the file is plotly.js itself). Plotly rather than Vega-Lite through altair: inlining
Vega-Lite offline needs altair's vl-convert (a 50+ MB native wheel) or three separately
vendored scripts, while plotly ships its one minified bundle in its pure-Python wheel, and
its hover, zoom and legend toggling suit reading many series. Every text is HTML-escaped;
the charts' data goes through plotly's own JSON encoder.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from collector.analysis.compare import Pivot, pivot, value_text
from collector.domain.catalogue import (
    CHART_LATENCY,
    CHART_MEMORY,
    CHART_MODEL_SIZE,
    CHART_THROUGHPUT,
    METRICS,
    REPORT_COLUMNS,
    headline,
)
from collector.domain.errors import InputError
from collector.domain.series import PIVOT_DIMENSIONS, workload_label
from collector.present.text import ab_line
from collector.version import __version__

if TYPE_CHECKING:
    from collector.analysis.findings import Finding
    from collector.domain.history import Regression
    from collector.domain.model import BenchmarkResult

# The dimension pairs laid out as tables (rows x columns), as `compare --pivot` does.
PIVOTS = (("benchmark", "batch_size"), ("backend", "dtype"), ("device", "benchmark"))
MAX_TREND_POINTS = 400  # per series: the newest, so one busy series cannot swell the file

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:0 1.5rem 3rem;color:#1f2328;line-height:1.45}
h1{margin-top:1.5rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:600;background:#dafbe1}.warning{color:#9a6700;font-weight:600}
.worse{color:#cf222e;font-weight:600}.better{color:#1a7f37;font-weight:600}
.muted{color:#59636e}.chart{margin:.5rem 0 1.5rem}nav a{margin-right:.8rem}
code{background:#f6f8fa;padding:0 .2rem}
"""


@dataclass(frozen=True)
class DetectedChange:
    """A change the detector finds in a trend's points: where it starts, and what it is."""

    time: datetime
    value: float
    text: str


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows; the CLI and the Python API gather it."""

    results: Sequence[BenchmarkResult]  # successful results
    findings: Sequence[Finding]
    sides: Sequence[str]  # where the results came from (files, selectors)
    failed: Sequence[BenchmarkResult] = ()
    regressions: Sequence[Regression] = ()  # stored ones for these series
    # The changes the detector finds replaying the trends' points, by (series, metric)
    # (collector.usecases.report computes them).
    detected: Mapping[tuple[str, str], Sequence[DetectedChange]] = field(default_factory=dict)
    store_read: bool = False  # whether a store was asked for them (selectors)
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
           numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; `numeric` columns are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _latest(results: Sequence[BenchmarkResult]) -> dict[str, BenchmarkResult]:
    """The newest result of each workload (and host), by label."""
    latest: dict[str, BenchmarkResult] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        latest[workload_label(result, host=True)] = result
    return dict(sorted(latest.items()))


class _Charts:
    """Plotly figures as HTML fragments (the library's JS is inlined once, in the head)."""

    def __init__(self) -> None:
        try:
            import plotly.graph_objects as go  # only the HTML report needs it
        except ImportError:  # a core dependency: only a broken installation lacks it
            raise InputError("the HTML report needs plotly (pip install plotly)") from None
        self.go = go
        self.count = 0

    def figure(self) -> Any:
        return self.go.Figure()

    def html(self, figure: Any, title: str, x_title: str, y_title: str, *,
             log_x: bool = False, log_y: bool = False) -> str:
        self.count += 1
        figure.update_layout(
            title={"text": title}, template="plotly_white", height=420,
            margin={"l": 70, "r": 20, "t": 50, "b": 60}, hovermode="closest",
            legend={"font": {"size": 10}})
        figure.update_xaxes(title_text=x_title, type="log" if log_x else None)
        figure.update_yaxes(title_text=y_title, type="log" if log_y else None)
        fragment: str = figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"chart-{self.count}",
            config={"displaylogo": False, "responsive": True})
        return f'<div class="chart">{fragment}</div>'

    @staticmethod
    def script() -> str:
        from plotly.offline import get_plotlyjs

        return str(get_plotlyjs())


def _unit_scale(metric: str) -> tuple[float, str]:
    """Charts show seconds as ms and bytes as MiB, as the tables do."""
    unit = METRICS[metric].unit
    if unit == "seconds":
        return 1e3, "ms"
    if unit == "bytes":
        return 1 / 2**20, "MiB"
    return 1.0, unit


def _axis(metric: str) -> str:
    return f"{metric} ({_unit_scale(metric)[1]})"


def _key_without(result: BenchmarkResult, *dims: str) -> str:
    """The workload identity without `dims` (and its host kept): one line of a chart."""
    identity = {k: v for k, v in result.spec.identity().items() if k not in dims}
    return json.dumps([identity, result.environment.host], sort_keys=True)


def _sweep(charts: _Charts, latest: Sequence[BenchmarkResult], dim: str, metric: str,
           title: str) -> str | None:
    """`metric` against `dim` (batch_size or sequence_length), one line per workload that
    was measured at two values of it or more; None when none was."""
    lines: dict[str, list[BenchmarkResult]] = {}
    for result in latest:
        if metric in result.metrics:
            lines.setdefault(_key_without(result, dim), []).append(result)
    lines = {k: v for k, v in lines.items() if len({PIVOT_DIMENSIONS[dim](r) for r in v}) >= 2}
    if not lines:
        return None
    scale, _ = _unit_scale(metric)
    figure = charts.figure()
    for line in lines.values():
        members = sorted(line, key=lambda r: int(PIVOT_DIMENSIONS[dim](r)))
        figure.add_trace(charts.go.Scatter(
            x=[int(PIVOT_DIMENSIONS[dim](r)) for r in members],
            y=[r.metrics[metric] * scale for r in members], mode="lines+markers",
            name=workload_label(members[0], host=True, without=(dim,))))
    return charts.html(figure, title, dim.replace("_", " "), _axis(metric), log_x=True,
                       log_y=True)


def _memory_vs_size(charts: _Charts, latest: Sequence[BenchmarkResult]) -> str | None:
    points = [r for r in latest if CHART_MEMORY in r.metrics and CHART_MODEL_SIZE in r.metrics]
    if not points:
        return None
    figure = charts.figure()
    by_backend: dict[str, list[BenchmarkResult]] = {}
    for result in points:
        by_backend.setdefault(result.spec.backend, []).append(result)
    for backend, members in sorted(by_backend.items()):
        figure.add_trace(charts.go.Scatter(
            x=[r.metrics[CHART_MODEL_SIZE] / 2**20 for r in members],
            y=[r.metrics[CHART_MEMORY] / 2**20 for r in members], mode="markers",
            name=backend, text=[workload_label(r, host=True) for r in members],
            hovertemplate="%{text}<br>weights %{x:.1f} MiB<br>peak %{y:.1f} MiB"
                          "<extra></extra>"))
    return charts.html(figure, "Peak memory against model size", _axis(CHART_MODEL_SIZE),
                       _axis(CHART_MEMORY), log_x=True, log_y=True)


def _by_model(charts: _Charts, latest: Sequence[BenchmarkResult], metric: str) -> str | None:
    """The headline of every workload, grouped by model, one bar colour per variant
    (backend, dtype, device, batch size and sequence length)."""
    points = [r for r in latest if metric in r.metrics]
    if not points:
        return None
    scale, _ = _unit_scale(metric)
    variants: dict[str, list[BenchmarkResult]] = {}
    for result in points:
        spec = result.spec
        name = (f"{spec.backend} {spec.dtype.value} {spec.device} "
                f"bs={spec.batch_size} seq={spec.sequence_length}")
        variants.setdefault(name, []).append(result)
    figure = charts.figure()
    for name, members in sorted(variants.items()):
        figure.add_trace(charts.go.Bar(
            x=[r.spec.name for r in members], y=[r.metrics[metric] * scale for r in members],
            name=name, text=[workload_label(r, host=True) for r in members],
            hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"))
    figure.update_layout(barmode="group")
    return charts.html(figure, f"{metric} by model and variant", "model", _axis(metric),
                       log_y=True)


def _pivot_html(table: Pivot) -> str:
    title = f"<b>{_e(table.metric)}</b>" + (f" ({_e(table.group)})" if table.group else "")
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for column in table.columns:
            value = table.cells.get((row, column))
            best = (row, column) in table.best
            text = "-" if value is None else _e(value_text(table.metric, value))
            cells.append(f'<td class="num{" best" if best else ""}">{text}'
                         f'{" &#9733;" if best else ""}</td>')
        body.append(f"<tr><th>{_e(row)}</th>{''.join(cells)}</tr>")
    return (f"<p>{title}: &#9733; = best of its column</p><table><thead><tr><th></th>{head}"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _comparisons(charts: _Charts, results: Sequence[BenchmarkResult]) -> str:
    latest = list(_latest(results).values())
    metric = headline(latest[0].metrics)
    parts = ["<h2 id=\"compare\">Comparisons</h2>",
             "<p class=\"muted\">From the latest result of each workload; tables give the "
             "median where a cell has several hosts' results.</p>"]
    for rows, columns in PIVOTS:
        ok = [r for r in latest if metric in r.metrics]
        if len({PIVOT_DIMENSIONS[rows](r) for r in ok}) * len({PIVOT_DIMENSIONS[columns](r)
                                                          for r in ok}) < 2:
            continue  # one cell: nothing to compare in this layout
        tables = [t for t in pivot(ok, rows, columns, metric) if len(t.cells) >= 2]
        if tables:  # a table of one cell compares nothing
            parts.append(f"<h3>{_e(rows)} &times; {_e(columns)}</h3>")
            parts += [_pivot_html(t) for t in tables]
    charts_html = [
        _by_model(charts, latest, metric),
        _sweep(charts, latest, "batch_size", CHART_LATENCY, "Latency against batch size"),
        _sweep(charts, latest, "sequence_length", CHART_THROUGHPUT,
               "Throughput against sequence length"),
        _memory_vs_size(charts, latest)]
    shown = [c for c in charts_html if c is not None]
    if len(shown) < len(charts_html):
        parts.append("<p class=\"muted\">Charts need their sweep in the data: latency vs "
                     "batch size needs one workload at two batch sizes or more, throughput "
                     "vs sequence length two sequence lengths; those missing here had "
                     "none.</p>")
    return "\n".join(parts + shown)


@dataclass(frozen=True)
class _Mark:
    time: datetime
    value: float
    text: str
    stored: bool


def _trend_marks(series: list[BenchmarkResult], metric: str, data: ReportData) -> list[_Mark]:
    """Changes in a series: those the detector finds replaying these points, and the
    stored regressions of the series (with their attribution)."""
    marks = [_Mark(c.time, c.value, c.text, stored=False)
             for c in data.detected.get((series[0].series_id, metric), ())]
    regressions = data.regressions
    by_time = sorted(series, key=lambda r: r.finished_at)
    for record in regressions:
        if record.series_id != series[0].series_id or record.metric != metric:
            continue
        near = min(by_time, key=lambda r: abs((r.finished_at - record.start_time)
                                                .total_seconds()))
        text = (f"{record.kind} {record.relative_change:+.1%} ({record.status}): "
                f"{record.attribution or 'no attribution'}")
        marks.append(_Mark(record.start_time, near.metrics.get(metric, record.after_value),
                           text, stored=True))
    return marks


def trend_series(results: Sequence[BenchmarkResult]) -> dict[str, list[BenchmarkResult]]:
    """The series the Trends section draws (two results or more), each its newest points,
    oldest first."""
    series: dict[str, list[BenchmarkResult]] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        series.setdefault(result.series_id, []).append(result)
    return {k: v[-MAX_TREND_POINTS:] for k, v in series.items() if len(v) >= 2}


def trend_metrics(series: dict[str, list[BenchmarkResult]]) -> list[str]:
    """The metrics the Trends section draws: each series' headline, and peak memory."""
    metrics: list[str] = []
    for members in series.values():
        for metric in (headline(members[-1].metrics), CHART_MEMORY):
            if metric not in metrics:
                metrics.append(metric)
    return metrics


def _trends(charts: _Charts, data: ReportData) -> str:
    series = trend_series(data.results)
    parts = ["<h2 id=\"trends\">Trends</h2>"]
    if not series:
        return parts[0] + ("<p>No workload has two results or more here: trends need the "
                           "history (stored runs over a time range, or several results "
                           "files).</p>")
    parts.append("<p class=\"muted\">Each workload's values over time. &#10005; marks a change "
                 "the regression detector finds in these points; &#9670; a stored regression "
                 "(hover for its attribution).</p>")
    for metric in trend_metrics(series):
        scale, _ = _unit_scale(metric)
        figure = charts.figure()
        marks: list[tuple[_Mark, str]] = []
        for members in series.values():
            having = [r for r in members if metric in r.metrics]
            if len(having) < 2:
                continue
            label = workload_label(having[-1], host=True)
            figure.add_trace(charts.go.Scatter(
                x=[r.finished_at for r in having], y=[r.metrics[metric] * scale for r in having],
                mode="lines+markers", name=label))
            marks += [(m, label) for m in _trend_marks(having, metric, data)]
        for stored, symbol, name in ((False, "x", "detected change"),
                                     (True, "diamond", "stored regression")):
            chosen = [(m, label) for m, label in marks if m.stored is stored]
            if chosen:
                figure.add_trace(charts.go.Scatter(
                    x=[m.time for m, _ in chosen], y=[m.value * scale for m, _ in chosen],
                    mode="markers", name=name, marker={"symbol": symbol, "size": 13,
                                                       "color": "#cf222e"},
                    text=[f"{label}<br>{m.text}" for m, label in chosen],
                    hovertemplate="%{text}<extra></extra>"))
        parts.append(charts.html(figure, f"{metric} over time", "time", _axis(metric),
                                 log_y=True))
    return "\n".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _header(metric: str) -> str:
    """A metric's column header in the terminal table (e.g. "peak RSS MiB"), else its name."""
    column = METRICS[metric].column
    return _e(column.header if column is not None else metric)


def _summary(data: ReportData) -> str:
    results = data.results
    times = sorted(r.finished_at for r in results)
    suites = sorted({r.spec.suite for r in results})
    hosts = sorted({r.environment.host for r in results})
    workloads = {workload_label(r) for r in results}
    rows = []
    for host in hosts:
        env = max((r for r in results if r.environment.host == host),
                  key=lambda r: r.finished_at).environment
        gpu = f"{env.gpu_name} (driver {env.gpu_driver}, CUDA {env.cuda_version})" \
            if env.gpu_name else "-"
        packages = ", ".join(f"{k} {v}" for k, v in sorted(env.packages.items())) or "-"
        rows.append([_e(host), _e(env.torch_version or "-"),
                     _e(env.transformers_version or "-"), _e(env.python_version),
                     _e(packages), _e(f"{env.cpu_model or 'CPU ?'} ({env.cpu_logical_cores} "
                                      "logical cores)"), _e(gpu)])
    return "\n".join([
        "<h2 id=\"summary\">Summary</h2>",
        f"<p>{_count(len(results), 'successful result')} ({len(data.failed)} failed) of "
        f"{_count(len(workloads), 'workload')} in {_count(len(suites), 'suite')} "
        f"({_e(', '.join(suites))}) on {_count(len(hosts), 'host')}, "
        f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC, "
        f"from {_e(', '.join(data.sides))}.</p>",
        _table(("host", "torch", "transformers", "Python", "other packages", "CPU", "GPU"),
               rows)])


def _results(results: Sequence[BenchmarkResult]) -> str:
    rows = []
    for label, result in _latest(results).items():
        metric = headline(result.metrics)
        task = result.resolved_task.value if result.resolved_task else result.spec.task.value
        cells = [_e(value_text(m, result.metrics[m])) if m in result.metrics else "-"
                 for m in REPORT_COLUMNS]
        between = result.measurement.between_rel_sd if result.measurement else None
        rows.append([_e(label), _e(task), _e(metric),
                     _e(value_text(metric, result.metrics[metric])), *cells,
                     "-" if between is None else f"{between:.1%}"])
    return "\n".join([
        "<h2 id=\"results\">Results</h2>",
        "<p class=\"muted\">The latest result of each workload.</p>",
        _table(("workload", "task", "headline", "value", *map(_header, REPORT_COLUMNS),
                "sd between repetitions"),
               rows, numeric=tuple(range(3, 5 + len(REPORT_COLUMNS))))])


def _regressions(data: ReportData) -> str:
    parts = ["<h2 id=\"regressions\">Regressions</h2>"]
    if not data.regressions:
        where = ("the store has none for these series" if data.store_read
                 else "results files carry none: report stored runs for them")
        return parts[0] + (f"<p>No stored regression ({_e(where)}); the trends mark what "
                           "the detector finds in the report's own points.</p>")
    labels = {r.series_id: workload_label(r, host=True) for r in data.results}
    rows = []
    for record in data.regressions:
        ab_text = ab_line(record.ab) or "-"
        verdict = (record.confirmation or {}).get("verdict", "-")
        css = "worse" if record.kind == "regression" else "better" \
            if record.kind == "improvement" else ""
        rows.append([_e(labels.get(record.series_id, record.series_id)), _e(record.metric),
                     f'<span class="{css}">{_e(record.kind)}</span>', _e(record.status),
                     f"{record.relative_change:+.1%}",
                     _e(f"{value_text(record.metric, record.before_value)} -> "
                        f"{value_text(record.metric, record.after_value)}"),
                     _e(f"{record.start_time:%Y-%m-%d %H:%M}"),
                     _p_text(record.p_value), _e(_attribution(record)), _e(verdict),
                     _e(ab_text)])
    parts.append(_table(("workload", "metric", "kind", "status", "change", "before -> after",
                         "since", "p", "attribution", "confirmation", "A/B"), rows,
                        numeric=(4, 7)))
    return "\n".join(parts)


def _p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return "&lt;0.0001" if p < 1e-4 else f"{p:.2g}"


def _attribution(record: Regression) -> str:
    if record.attribution:
        return record.attribution
    if record.kind == "host_drift":
        return "nothing recorded changed (the host drifted)"
    return "-"


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<h2 id=\"findings\">Findings</h2><p>Nothing stands out.</p>"
    items = [f'<li><span class="{"warning" if f.severity == "warning" else "muted"}">'
             f"{_e(f.severity)}</span> ({_e(f.kind)}): {_e(f.text)}</li>" for f in findings]
    return "<h2 id=\"findings\">Findings</h2><ul>" + "".join(items) + "</ul>"


def _failures(failed: Sequence[BenchmarkResult]) -> str:
    if not failed:
        return ""
    rows = [[_e(workload_label(r, host=True)), _e(f"{r.finished_at:%Y-%m-%d %H:%M}"),
             _e(r.failure.kind.value if r.failure else "-"),
             _e(r.failure.message if r.failure else "-")] for r in failed]
    return "<h2 id=\"failures\">Failures</h2>" + _table(("workload", "when", "kind", "cause"),
                                                        rows)


def _environment(results: Sequence[BenchmarkResult]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        seen[result.environment.host] = result.environment.model_dump(mode="json")
    fields = sorted({k for env in seen.values() for k in env})
    rows = [[_e(name), *(_e(json.dumps(env.get(name)) if isinstance(env.get(name), dict)
                            else env.get(name, "-")) for env in seen.values())]
            for name in fields]
    return ("<h2 id=\"environment\">Environment</h2><p class=\"muted\">Each host's latest "
            "result.</p>" + _table(("field", *map(_e, seen)), rows))


def render(data: ReportData) -> str:
    """The report as one HTML document (UTF-8 text)."""
    if not data.results:
        raise InputError("nothing to report: no successful result")
    charts = _Charts()
    body = [_summary(data), _results(data.results), _comparisons(charts, data.results),
            _trends(charts, data), _regressions(data),
            _findings(data.findings), _failures(data.failed), _environment(data.results)]
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("summary", "Summary"), ("results", "Results"), ("compare", "Comparisons"),
        ("trends", "Trends"), ("regressions", "Regressions"), ("findings", "Findings"),
        ("environment", "Environment")))
    # The script's text goes inside <script>: plotly's bundle never contains "</script".
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Benchmark report</title>", f"<style>{_CSS}</style>",
        f"<script>{charts.script()}</script>", "</head><body>",
        "<h1>Benchmark report</h1>", f"<nav>{nav}</nav>", *body,
        f'<p class="muted">Generated by collector {_e(__version__)} at '
        f"{data.generated_at:%Y-%m-%d %H:%M} UTC. {charts.count} charts.</p>",
        "</body></html>", ""])
