"""`collector report --format html`: one self-contained HTML file that answers what a reader
asked, first.

With two sides (`--a`, `--b`): what changed, the verdicts of `collector compare` sorted by
size (deterministic metrics apart). Then, for the results reported: what needs a look
(failures, active regressions, results measured on a busy host or not settled), which
variant of each model is fastest (whatever the benchmarks are called), the findings run by
run, grouped, then charts, trends, every result and the environment.

Everything here is presentation: the findings, the variant tables, the comparison and the
changes the detector finds in the trends are computed by the use case
(collector/usecases/report.py). Every text is HTML-escaped; chart labels too
(collector/present/charts.py).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from collector.analysis.compare import value_text
from collector.analysis.reading import read
from collector.domain.catalogue import (
    CHART_LATENCY,
    CHART_LOAD_LATENCIES,
    CHART_LOAD_THROUGHPUT,
    CHART_MEMORY,
    CHART_MODEL_SIZE,
    CHART_THROUGHPUT,
    METRICS,
    REPORT_COLUMNS,
    headline,
)
from collector.domain.errors import InputError
from collector.domain.series import PIVOT_DIMENSIONS, series_info, workload_label
from collector.domain.serving import SWEEP_SAMPLES
from collector.present.charts import Charts
from collector.present.report_data import (
    COST_MEANING,
    HEADLINE_MEANING,
    ReportData,
    cost_text,
    costed,
    latest,
    rates_text,
    run_name,
    trend_metrics,
    trend_series,
)
from collector.present.text import (
    ab_line,
    all_well_text,
    conditions_line,
    environment_words,
)
from collector.version import __version__

if TYPE_CHECKING:
    from collector.analysis.compare import Row
    from collector.analysis.findings import FindingGroup
    from collector.domain.model import BenchmarkResult

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:0 1.5rem 3rem;color:#1f2328;line-height:1.45}
h1{margin-top:1.5rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
td.best{font-weight:600;background:#dafbe1}.warning{color:#9a6700;font-weight:600}
.worse{color:#cf222e;font-weight:600}.better{color:#1a7f37;font-weight:600}
.muted{color:#59636e}.chart{margin:.5rem 0 1.5rem}nav a{margin-right:.8rem}
code{background:#f6f8fa;padding:0 .2rem}.ok{color:#1a7f37}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
           numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; `numeric` columns are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# -- what the reader asked first --------------------------------------------------------------

def _summary(data: ReportData) -> str:
    results = data.results
    times = sorted(r.finished_at for r in results)
    hosts = sorted({r.environment.host for r in results})
    readings = [read(r, headline(r.metrics), busy_fraction=data.busy_fraction) for r in results]
    busy = sum(r.disturbed for r in readings)
    unsettled = sum(r.quality == "unconverged" for r in readings)
    conditions = conditions_line(
        len(readings), busy + unsettled, sum(r.imported for r in readings),
        f"{_count(busy, 'result')} measured on a busy host, {unsettled} not settled within "
        "their target", "clean (measured on a quiet host, settled)")
    versions = "; ".join(
        f"{host}: " + (", ".join(environment_words(env)) or "nothing recorded")
        for host, env in ((h, max((r for r in results if r.environment.host == h),
                                   key=lambda r: r.finished_at).environment) for h in hosts))
    return "\n".join([
        "<h2 id=\"summary\">Summary</h2>",
        f"<p>{_count(len(results), 'successful result')} ({len(data.failed)} failed) of "
        f"{_count(len({workload_label(r) for r in results}), 'workload')} in "
        f"{_count(len(data.runs), 'run')} on {_count(len(hosts), 'host')}, "
        f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC, from "
        f"{_e(', '.join(data.sides))}: {_e(conditions)}.</p>",
        f"<p class=\"muted\">{_e(versions)} (the rest under Environment).</p>"])


def _row_cells(row: Row) -> list[str]:
    css = {"worse": "worse", "better": "better"}.get(row.verdict, "muted")
    return [_e(row.workload), _e(METRICS[row.metric].title), _e(row.text(row.a)),
            _e(row.text(row.b)), f"{row.ratio:.3f}x", _e(row.interval_text),
            f"{row.n_a}/{row.n_b}", _e(row.quality),
            f'<span class="{css}">{_e(row.word)}</span>']


def _changed(data: ReportData) -> str:
    comparison = data.comparison
    if comparison is None:
        return ""
    from collector.present.documents import verdict_counts

    counts = verdict_counts(comparison)
    timed, exact = comparison.by_size()
    headers = ("workload", "metric", "A", "B", "B/A", "95% CI", "n A/B", "quality", "verdict")
    parts = [
        "<h2 id=\"changed\">What changed</h2>",
        f"<p>B = {_e(', '.join(data.sides))} against A = {_e(', '.join(data.baseline))}: "
        f"{counts['worse']} worse, {counts['better']} better, {counts['same']} the same "
        "(95% intervals; a change inside the noise or below the metric's threshold is the "
        "same). A and B are each side's value (its run's, or its runs' geometric mean); B/A "
        "is their ratio. Largest changes first.</p>"]
    if timed:
        parts.append(_table(headers, map(_row_cells, timed), numeric=(2, 3, 4, 5, 6)))
    if exact:
        parts += ["<h3>Deterministic metrics</h3>",
                  "<p class=\"muted\">Memory, instruction counts and output drift are "
                  "compared as they are (no timing noise applies): the threshold decides."
                  "</p>", _table(headers, map(_row_cells, exact), numeric=(2, 3, 4, 5, 6))]
    for side, missing in (("A", comparison.only_a), ("B", comparison.only_b)):
        if missing:
            parts.append(f"<p class=\"muted\">Only in {side}: {_e(', '.join(missing))}</p>")
    return "\n".join(parts)


def _wrong(data: ReportData) -> str:
    parts = ["<h2 id=\"wrong\">What needs a look</h2>"]
    if data.failed:
        parts.append("<h3>Failures</h3>")
        parts.append(_table(("workload", "run", "kind", "cause"), [
            [_e(workload_label(r, host=True)), _e(run_name(run)),
             _e(r.failure.kind.value if r.failure else "-"),
             _e(r.failure.message if r.failure else "-")] for run, r in data.failed]))
    active = data.active_regressions
    if active:
        labels = {r.series_id: workload_label(r, host=True) for r in data.results}
        parts.append("<h3>Active regressions</h3>")
        parts.append(_table(("workload", "metric", "kind", "status", "change", "attribution"), [
            [_e(labels.get(r.series_id, r.series_id)), _e(r.metric), _e(r.kind), _e(r.status),
             f"{r.relative_change:+.1%}", _e(r.attribution or "-")] for r in active]))
    marked = [[_e(workload_label(result, host=True)), _e(run_name(run)),
               _e(reading.quality_text)] for run, result, reading in data.marked()]
    if marked:
        parts += ["<h3>Results to read with care</h3>",
                  "<p class=\"muted\">busy N%: other processes used N% of the machine's CPU "
                  "while it ran (its time is another machine's); ±a &gt; ±b: its median did "
                  "not settle within its target.</p>",
                  _table(("workload", "run", "quality"), marked)]
    if len(parts) == 1:
        imported = sum(r.spec.origin is not None for r in data.results)
        parts.append("<p class=\"ok\">Nothing: "
                     + _e(all_well_text(len(data.results), imported))
                     + (", and no stored regression is active" if data.store_read else "")
                     + ".</p>")
    return "\n".join(parts)


def _variants(data: ReportData) -> str:
    if not data.variants:
        return ("<h2 id=\"variants\">Fastest variant per model</h2><p class=\"muted\">No model "
                "was measured in two variants (backends, dtypes, quantizations) here.</p>")
    parts = ["<h2 id=\"variants\">Fastest variant per model</h2>",
             "<p class=\"muted\">Each model's variants, whatever the benchmarks that measured "
             "them are called: the latest value and its ratio to the best of its column "
             "(1.00x is the best).</p>"]
    for table in data.variants:
        parts.append(f"<h3>{_e(table.model)} <span class=\"muted\">({_e(table.task)} on "
                     f"{_e(table.device)} of {_e(table.host)}; benchmarks "
                     f"{_e(', '.join(table.benchmarks))}; {_e(METRICS[table.metric].title)})"
                     "</span></h3>")
        rows = []
        for variant, cells in table.rows:
            shown = [_e(variant)]
            for column in table.columns:
                cell = cells.get(column)
                if cell is None:
                    shown.append("-")
                    continue
                quality = read(cell.result, table.metric, busy_fraction=data.busy_fraction)
                mark = "" if quality.quality == "clean" else f" ({_e(quality.quality_text)})"
                best = cell.ratio == 1.0
                shown.append(f'<span class="{"better" if best else ""}">'
                             f"{_e(value_text(table.metric, cell.value))} "
                             f"&middot; {cell.ratio:.2f}x</span>{mark}")
            rows.append(shown)
        parts.append(_table(("variant", *table.columns), rows,
                            numeric=tuple(range(1, 1 + len(table.columns)))))
    return "\n".join(parts)


def _finding_list(groups: Sequence[FindingGroup]) -> str:
    items = []
    for item in groups:
        mark = ('<span class="warning">warning</span>' if item.severity == "warning"
                else '<span class="muted">info</span>')
        if len(item.members) == 1:
            items.append(f"<li>{mark}: {_e(item.text)}</li>")
            continue
        details = "".join(f"<li>{_e(f.text)}</li>" for f in item.members)
        items.append(f"<li>{mark}: <details><summary>{_e(item.text)}</summary><ul>"
                     f"{details}</ul></details></li>")
    return f"<ul>{''.join(items)}</ul>"


def _findings(data: ReportData) -> str:
    by_run = data.findings_by_run()
    if not by_run:
        return "<h2 id=\"findings\">Findings</h2><p>Nothing stands out.</p>"
    parts = ["<h2 id=\"findings\">Findings</h2>",
             "<p class=\"muted\">Run by run (never averaged across runs measured under "
             "different conditions), the newest run of each suite and host first; one line "
             "for a pattern many workloads share (open it for each).</p>"]
    earlier: list[str] = []
    for run, groups, newest in by_run:
        block = f"<h3>{_e(run_name(run))}</h3>{_finding_list(groups)}"
        (parts if newest else earlier).append(block)
    if earlier:
        parts.append(f"<details><summary>Earlier runs: {len(earlier)}</summary>"
                     f"{''.join(earlier)}</details>")
    return "\n".join(parts)


# -- charts ------------------------------------------------------------------------------------

def _headline_bars(charts: Charts, newest: Sequence[BenchmarkResult]) -> list[str]:
    """Each headline metric as bars, one per workload, one colour per model."""
    out = []
    for metric in dict.fromkeys(headline(r.metrics) for r in newest):
        groups: dict[str, list[tuple[str, float, str]]] = {}
        for result in sorted(newest, key=workload_label):
            if headline(result.metrics) != metric:
                continue
            label = workload_label(result, host=len({r.environment.host for r in newest}) > 1)
            reading = read(result, metric)
            groups.setdefault(series_info(result).model, []).append(
                (label, result.metrics[metric],
                 f"{workload_label(result, host=True)} ({reading.quality_text})"))
        out.append(charts.bars(f"{METRICS[metric].title} of each workload", metric, groups))
    return out


def _sweep(charts: Charts, newest: Sequence[BenchmarkResult], dim: str, metric: str,
           title: str) -> str | None:
    """`metric` against `dim` (batch_size or sequence_length), one line per workload that
    was measured at two values of it or more; None when none was."""
    lines: dict[str, list[BenchmarkResult]] = {}
    for result in newest:
        if metric in result.metrics:
            key = json.dumps([{k: v for k, v in result.spec.identity().items() if k != dim},
                              result.environment.host], sort_keys=True)
            lines.setdefault(key, []).append(result)
    lines = {k: v for k, v in lines.items() if len({PIVOT_DIMENSIONS[dim](r) for r in v}) >= 2}
    if not lines:
        return None
    drawn = {}
    for found in lines.values():
        members = sorted(found, key=lambda r: int(PIVOT_DIMENSIONS[dim](r)))
        drawn[workload_label(members[0], host=True, without=(dim,))] = (
            [float(PIVOT_DIMENSIONS[dim](r)) for r in members],
            [r.metrics[metric] for r in members])
    return charts.lines(title, dim.replace("_", " "), metric, drawn, log_x=True)


def _memory_vs_size(charts: Charts, newest: Sequence[BenchmarkResult]) -> str | None:
    groups: dict[str, list[tuple[float, float, str]]] = {}
    for result in newest:
        if CHART_MEMORY in result.metrics and CHART_MODEL_SIZE in result.metrics:
            groups.setdefault(result.spec.backend, []).append(
                (result.metrics[CHART_MODEL_SIZE], result.metrics[CHART_MEMORY],
                 workload_label(result, host=True)))
    if not groups:
        return None
    return charts.scatter("Peak memory against the model's weights", CHART_MODEL_SIZE,
                          CHART_MEMORY, dict(sorted(groups.items())))


def _trends(charts: Charts, data: ReportData) -> str:
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
        lines: dict[str, tuple[list[float | datetime], list[float]]] = {}
        detected: list[tuple[datetime, float, str]] = []
        stored: list[tuple[datetime, float, str]] = []
        for series_id, members in series.items():
            having = [r for r in members if metric in r.metrics]
            if len(having) < 2:
                continue
            label = workload_label(having[-1], host=True)
            lines[label] = ([r.finished_at for r in having],
                            [r.metrics[metric] for r in having])
            detected += [(c.time, c.value, f"{label}: {c.text}")
                         for c in data.detected.get((series_id, metric), ())]
            for record in data.regressions:
                if record.series_id == series_id and record.metric == metric:
                    near = min(having, key=lambda r: abs(
                        (r.finished_at - record.start_time).total_seconds()))
                    stored.append((record.start_time,
                                   near.metrics.get(metric, record.after_value),
                                   f"{label}: {record.kind} {record.relative_change:+.1%} "
                                   f"({record.status}): "
                                   f"{record.attribution or 'no attribution'}"))
        if lines:
            parts.append(charts.lines(f"{METRICS[metric].title} over time", "time", metric,
                                      lines, marks=(("detected change", "x", detected),
                                                    ("stored regression", "diamond", stored))))
    return "\n".join(parts)


def _load_curves(charts: Charts, newest: Sequence[BenchmarkResult]) -> list[str]:
    """Latency against throughput under load: each sweep's points (its samples), and the
    serving workloads that differ only by their load, one point per load."""
    out = []
    for point, metric in CHART_LOAD_LATENCIES:
        lines: dict[str, tuple[Sequence[float | datetime], Sequence[float]]] = {}
        for result in newest:
            xs = result.samples.get(SWEEP_SAMPLES["throughput"], [])
            ys = result.samples.get(SWEEP_SAMPLES[point], [])
            if len(xs) >= 2 and len(xs) == len(ys):
                lines[workload_label(result, host=True)] = (list(xs), list(ys))
        by_workload: dict[str, list[BenchmarkResult]] = {}
        for result in newest:
            if result.spec.serving is not None and metric in result.metrics and (
                    CHART_LOAD_THROUGHPUT in result.metrics):
                ident = result.spec.identity()
                ident["serving"] = {k: v for k, v in ident["serving"].items()
                                    if k != "profile"}
                key = json.dumps([ident, result.environment.host], sort_keys=True)
                by_workload.setdefault(key, []).append(result)
        for members in by_workload.values():
            if len(members) >= 2:
                members.sort(key=lambda r: r.metrics[CHART_LOAD_THROUGHPUT])
                names = list(dict.fromkeys(r.spec.name for r in members))
                label = workload_label(members[0], host=True, without=(
                    "load",) if len(names) == 1 else ("load", "benchmark"))
                if len(names) > 1:
                    label = f"{', '.join(names)}: {label}"
                lines[f"{label} (one point per load)"] = (
                    [r.metrics[CHART_LOAD_THROUGHPUT] for r in members],
                    [r.metrics[metric] for r in members])
        if lines:
            out.append(charts.lines(f"{METRICS[metric].title} against request throughput",
                                    "completed requests per second", metric, lines))
    return out


def _charts(charts: Charts, data: ReportData) -> str:
    newest = list(latest(data.results).values())
    drawn = [*_headline_bars(charts, newest), *_load_curves(charts, newest),
             _sweep(charts, newest, "batch_size", CHART_LATENCY,
                    "Latency against batch size"),
             _sweep(charts, newest, "sequence_length", CHART_THROUGHPUT,
                    "Input tokens per second against sequence length"),
             _memory_vs_size(charts, newest)]
    shown = [c for c in drawn if c is not None]
    note = ("" if len(shown) == len(drawn) else
            "<p class=\"muted\">Sweeps need them in the data: latency against batch size "
            "needs one workload at two batch sizes or more, throughput against sequence "
            "length two sequence lengths; those missing here had none.</p>")
    return "\n".join(["<h2 id=\"charts\">Charts</h2>",
                      "<p class=\"muted\">The latest result of each workload; linear axes "
                      "(bar lengths compare).</p>", *shown, note])


# -- detail ------------------------------------------------------------------------------------

def _results(data: ReportData) -> str:
    rows = []
    runs = {id(r): run for run in data.runs for r in run.results}
    for label, result in latest(data.results).items():
        metric = headline(result.metrics)
        reading = read(result, metric, busy_fraction=data.busy_fraction)
        run = runs.get(id(result))
        rows.append([_e(label), _e(METRICS[metric].title),
                     _e(value_text(metric, result.metrics[metric])),
                     _e(reading.uncertainty_text), _e(reading.quality_text),
                     *[_e(value_text(m, result.metrics[m])) if m in result.metrics else "-"
                       for m in REPORT_COLUMNS],
                     _e(run.run_id[:8] if run else "-")])
    return "\n".join([
        "<h2 id=\"results\">Results</h2>",
        f"<p class=\"muted\">The latest result of each workload: {_e(HEADLINE_MEANING)}</p>",
        _table(("workload", "headline", "value", "±", "quality",
                *(METRICS[m].title for m in REPORT_COLUMNS), "run"),
               rows, numeric=(2, 3, 5, 6, 7))])


def _costs(data: ReportData) -> str:
    """Cost and carbon (collector/analysis/cost.py): nothing where no result has them."""
    shown, having = costed(data.results)
    if not having:
        return ""
    rows = [[_e(label), *(_e(cost_text(result, m)) for m in shown), _e(rates_text(result))]
            for label, result in having.items()]
    return "\n".join([
        "<h2 id=\"costs\">Cost and carbon</h2>",
        f"<p class=\"muted\">{_e(COST_MEANING)}</p>",
        _table(("workload", *(METRICS[m].title for m in shown), "rates"), rows,
               numeric=tuple(range(1, len(shown) + 1)))])


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
        verdict = (record.confirmation or {}).get("verdict", "-")
        css = ("worse" if record.kind == "regression" else "better"
               if record.kind == "improvement" else "")
        rows.append([_e(labels.get(record.series_id, record.series_id)), _e(record.metric),
                     f'<span class="{css}">{_e(record.kind)}</span>', _e(record.status),
                     f"{record.relative_change:+.1%}",
                     _e(f"{value_text(record.metric, record.before_value)} -> "
                        f"{value_text(record.metric, record.after_value)}"),
                     _e(f"{record.start_time:%Y-%m-%d %H:%M}"), _p_text(record.p_value),
                     _e(record.attribution or ("nothing recorded changed (the host drifted)"
                                               if record.kind == "host_drift" else "-")),
                     _e(verdict), _e(ab_line(record.ab) or "-")])
    parts.append(_table(("workload", "metric", "kind", "status", "change", "before -> after",
                         "since", "p", "attribution", "confirmation", "A/B"), rows,
                        numeric=(4, 7)))
    return "\n".join(parts)


def _p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return "&lt;0.0001" if p < 1e-4 else f"{p:.2g}"


def _environment(results: Sequence[BenchmarkResult]) -> str:
    seen: dict[str, dict[str, object]] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        seen[result.environment.host] = result.environment.model_dump(mode="json")
    fields = sorted({k for env in seen.values() for k in env})
    rows = [[_e(name), *(_e(json.dumps(env.get(name)) if isinstance(env.get(name), dict)
                            else env.get(name, "-")) for env in seen.values())]
            for name in fields]
    return ("<h2 id=\"environment\">Environment</h2><p class=\"muted\">Each host's latest "
            "result.</p>" + _table(("field", *seen), rows))


def render(data: ReportData) -> str:
    """The report as one HTML document (UTF-8 text)."""
    if not data.results:
        raise InputError("nothing to report: no successful result")
    charts = Charts()
    sections = [("summary", "Summary", _summary(data)), ("changed", "What changed",
                                                          _changed(data)),
                ("wrong", "What needs a look", _wrong(data)),
                ("variants", "Fastest variants", _variants(data)),
                ("findings", "Findings", _findings(data)), ("charts", "Charts",
                                                           _charts(charts, data)),
                ("trends", "Trends", _trends(charts, data)),
                ("regressions", "Regressions", _regressions(data)),
                ("costs", "Cost and carbon", _costs(data)),
                ("results", "Results", _results(data)),
                ("environment", "Environment", _environment(data.results))]
    shown = [(anchor, title, body) for anchor, title, body in sections if body]
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t, _ in shown)
    # The script's text goes inside <script>: plotly's bundle never contains "</script".
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Benchmark report</title>", f"<style>{_CSS}</style>",
        f"<script>{charts.script()}</script>", "</head><body>",
        "<h1>Benchmark report</h1>", f"<nav>{nav}</nav>",
        *(f'<section class="part" id="part-{anchor}">{body}</section>'
          for anchor, _, body in shown),
        f'<p class="muted">Generated by collector {_e(__version__)} at '
        f"{data.generated_at:%Y-%m-%d %H:%M} UTC. {charts.count} charts.</p>",
        "</body></html>", ""])
