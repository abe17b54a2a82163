"""Markdown: `collector report` (a PR comment, a wiki page) and `compare --format markdown`
/ `--pivot ... --format markdown`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from collector.analysis.compare import Comparison, Pivot, Row, value_text
from collector.domain.catalogue import METRICS, REPORT_COLUMNS, headline
from collector.domain.model import BenchmarkResult
from collector.domain.series import workload_label
from collector.present.documents import verdict_counts
from collector.present.report_data import (
    COST_MEANING,
    HEADLINE_MEANING,
    ReportData,
    cost_text,
    costed,
    latest,
    rates_text,
    run_name,
)
from collector.present.text import (
    all_well_text,
    conditions_line,
    environment_words,
    visible,
)


def cell(value: object) -> str:
    """A data string as a Markdown table cell shows it literally: on one line, invisible
    characters (an ANSI escape sequence's ESC) written as escapes, and markup (HTML tags,
    entities, emphasis, links, code) and the cell's separators backslash-escaped."""
    text = visible(" ".join(str(value).split()))
    return _MARKUP.sub(lambda m: "\\" + m.group(0), text)


_MARKUP = re.compile(r"[\\`*_\[\]|<>~&]")


def _versions(results: Sequence[BenchmarkResult]) -> list[str]:
    lines = []
    for host in sorted({r.environment.host for r in results}):
        env = next(r.environment for r in results if r.environment.host == host)
        parts = environment_words(env) or ["nothing recorded"]
        lines.append(f"- {cell(host)}: " + cell(", ".join(parts)))
    return lines


def _rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _comparison_rows(rows: Sequence[Row]) -> list[list[str]]:
    return [[cell(r.workload), cell(METRICS[r.metric].title), r.text(r.a), r.text(r.b),
             f"{r.ratio:.3f}x", r.interval_text, f"{r.n_a}/{r.n_b}", cell(r.quality),
             f"**{cell(r.word)}**" if r.verdict != "same" else cell(r.word)] for r in rows]


_COMPARED = ("workload", "metric", "A", "B", "B/A", "95% CI", "n A/B", "quality", "verdict")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _summary(data: ReportData) -> list[str]:
    results = data.results
    times = sorted(r.finished_at for r in results)
    marked = data.marked()
    return ["# Benchmark report", "",
            f"{_plural(len(results), 'successful result')} ({len(data.failed)} failed) of "
            f"{_plural(len({workload_label(r) for r in results}), 'workload')} in "
            f"{_plural(len(data.runs), 'run')} from {cell(', '.join(data.sides))}, "
            f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC: "
            + _conditions(data, marked), ""]


def _conditions(data: ReportData, marked: Sequence[object]) -> str:
    imported = sum(r.spec.origin is not None for r in data.results)
    return conditions_line(
        len(data.results), len(marked), imported,
        f"{len(marked)} to read with care (measured on a busy host or not settled)",
        "clean (a quiet host, settled)") + "."


def _changed(data: ReportData) -> list[str]:
    if data.comparison is None:
        return []
    counts = verdict_counts(data.comparison)
    timed, exact = data.comparison.by_size()
    lines = ["## What changed", "",
             f"B = {cell(', '.join(data.sides))} against A = "
             f"{cell(', '.join(data.baseline))}: {counts['worse']} worse, "
             f"{counts['better']} better, {counts['same']} the same (95% intervals; a "
             "change inside the noise or below the metric's threshold is the same). "
             "B/A is the ratio of the values shown. Largest changes first.", ""]
    if timed:
        lines += [*_rows(_COMPARED, _comparison_rows(timed)), ""]
    if exact:
        lines += ["Deterministic metrics (compared as they are):", "",
                  *_rows(_COMPARED, _comparison_rows(exact)), ""]
    return lines


def _wrong(data: ReportData) -> list[str]:
    names = data.run_names()
    lines = [f"- **failed**: {cell(workload_label(r, host=True))} in "
             f"{cell(names[run.run_id])}: {cell(r.failure.kind.value if r.failure else '-')}: "
             f"{cell(r.failure.message if r.failure else '-')}" for run, r in data.failed]
    lines += [f"- **{cell(r.kind)} {r.relative_change:+.1%}** ({cell(r.status)}) of "
              f"{cell(r.metric)} in series {cell(r.series_id[:12])}: "
              f"{cell(r.attribution or 'no attribution')}" for r in data.active_regressions]
    lines += [f"- {cell(workload_label(result, host=True))} in {cell(names[run.run_id])}: "
              f"{cell(reading.quality_text)}" for run, result, reading in data.marked()]
    imported = sum(r.spec.origin is not None for r in data.results)
    return ["## What needs a look", "", *(lines or [
        f"Nothing: {all_well_text(len(data.results), imported)}."]), ""]


def _variants(data: ReportData) -> list[str]:
    lines = ["## Fastest variant per model", ""]
    if not data.variants:
        lines += ["No model was measured in two variants here.", ""]
    for table in data.variants:
        lines += [f"**{cell(table.model)}** ({cell(table.task)} on {cell(table.device)} of "
                  f"{cell(table.host)}; {cell(METRICS[table.metric].title)}; 1.00x is the "
                  "best of its column)", ""]
        shown = [[cell(variant), *(
            f"{value_text(table.metric, cells[c].value)} ({cells[c].ratio:.2f}x)"
            if c in cells else "-" for c in table.columns)] for variant, cells in table.rows]
        lines += [*_rows(("variant", *map(cell, table.columns)), shown), ""]
    return lines


def _findings(data: ReportData) -> list[str]:
    lines = ["## Findings", ""]
    by_run = data.findings_by_run()
    if not by_run:
        lines += ["Nothing stands out.", ""]
    for run, groups, newest in by_run:
        if not newest:
            continue
        lines += [f"In {cell(run_name(run))}:", ""]
        for item in groups:
            mark = "**warning**" if item.severity == "warning" else "info"
            lines.append(f"- {mark}: {cell(item.text)}")
            if len(item.members) > 1 and item.severity == "warning":
                lines += [f"  - {cell(f.text)}" for f in item.members]
        lines.append("")
    earlier = sum(not newest for _, _, newest in by_run)
    if earlier:
        lines += [f"(and findings in {_plural(earlier, 'earlier run')}: the HTML report lists "
                  "them)", ""]
    return lines


def _costs(data: ReportData) -> list[str]:
    """Cost and carbon (collector/analysis/cost.py), only where some result has them."""
    shown, having = costed(data.results)
    if not having:
        return []
    rows = [[cell(label), *(cell(cost_text(result, m)) for m in shown),
             cell(rates_text(result))] for label, result in having.items()]
    return ["## Cost and carbon", "", cell(COST_MEANING), "",
            *_rows(("workload", *(cell(METRICS[m].title) for m in shown), "rates"), rows), ""]


def _results(data: ReportData) -> list[str]:
    rows = []
    for label, result in latest(data.results).items():
        metric = headline(result.metrics)
        reading = data.reading(result)
        rows.append([cell(label), cell(METRICS[metric].title),
                     value_text(metric, result.metrics[metric]), cell(reading.uncertainty_text),
                     cell(reading.quality_text),
                     *(value_text(m, result.metrics[m]) if m in result.metrics else "-"
                       for m in REPORT_COLUMNS)])
    return ["## Results", "", f"The latest result of each workload: {HEADLINE_MEANING}", "",
            *_rows(("workload", "headline", "value", "±", "quality", *REPORT_COLUMNS), rows),
            "", "## Where", "", *_versions(data.results)]


def report(data: ReportData) -> str:
    """`collector report --format markdown`: the HTML report's sections without charts."""
    return "\n".join([*_summary(data), *_changed(data), *_wrong(data), *_variants(data),
                      *_findings(data), *_costs(data), *_results(data)]) + "\n"


def comparison(result: Comparison, names: tuple[str, str]) -> str:
    """`compare --format markdown`: the verdict counts and one row per workload and metric."""
    counts = verdict_counts(result)
    lines = [f"**collector compare**: A = {cell(names[0])}, B = {cell(names[1])}: "
             f"{counts['worse']} worse, {counts['better']} better, {counts['same']} same "
             "(95% intervals; a change inside the noise or below the threshold is *same*; "
             "B/A is the ratio of the values shown)", "",
             *_rows(_COMPARED, _comparison_rows(result.rows))]
    for side, missing in (("A", result.only_a), ("B", result.only_b)):
        if missing:
            lines.append("")
            lines.append(f"Only in {side}: " + cell(", ".join(missing)))
    return "\n".join(lines) + "\n"


def pivot(table: Pivot) -> str:
    """One `--pivot` table."""
    title = f"**{table.metric}**" + (f" ({cell(table.group)})" if table.group else "")
    lines = [title + ": \\* = best of its column", "",
             "| | " + " | ".join(map(cell, table.columns)) + " |",
             "|---|" + "---|" * len(table.columns)]
    for row in table.rows:
        lines.append(f"| {cell(row)} | " + " | ".join(cell(table.cell_text(row, c))
                                                     for c in table.columns) + " |")
    return "\n".join(lines) + "\n"
