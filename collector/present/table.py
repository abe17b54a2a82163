"""Terminal tables with rich: run-once's results, comparisons, `--pivot` tables.

`console()` is the standard output console every command prints tables with: as wide as
the terminal or $COLUMNS, else 100 columns; run-once's table is compact unless asked for
(--wide) or the terminal is wide (WIDE_FROM columns)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from collector.analysis.compare import Comparison, Pivot, Row
from collector.analysis.reading import read
from collector.domain import catalogue
from collector.domain.catalogue import BUSY_CPU_FRACTION
from collector.domain.model import BenchmarkResult, RunResult
from collector.domain.series import workload_label
from collector.present.text import visible


def headline_text(result: BenchmarkResult) -> str:
    """The headline metric of a result in a few words: `p50 12.34 ms`, or
    `12.345 M instr per iteration`."""
    name = catalogue.headline(result.metrics)
    column = catalogue.metric(name).column
    assert column is not None  # every headline metric has a table column
    value = column.format.render(result.metrics.get(name))
    if column.format is catalogue.Format.MS:
        return f"p50 {value} ms"
    return f"{value} per iteration" if column.format is catalogue.Format.MEGA else value


def _cell(metrics: dict[str, float], shown: list[catalogue.MetricDef]) -> str:
    """A metric column's cell: the first of its metrics the result has."""
    for definition in shown:
        if definition.name in metrics:
            assert definition.column is not None
            return definition.column.format.render(metrics[definition.name])
    return "-"


WIDE_FROM = 160  # terminals at least this wide get the wide table by default
_QUALITY_STYLE = {"clean": "green", "disturbed": "yellow", "unconverged": "yellow"}


def _headline_header(result: BenchmarkResult) -> str:
    column = catalogue.metric(catalogue.headline(result.metrics)).column
    return column.header if column is not None else "value"


def _quality_cell(result: BenchmarkResult, busy_fraction: float) -> str:
    if result.status != "ok":
        assert result.failure is not None
        return f"[red]failed: {escape(result.failure.kind.value)}[/]"
    reading = read(result, catalogue.headline(result.metrics), busy_fraction=busy_fraction)
    return f"[{_QUALITY_STYLE[reading.quality]}]{escape(reading.quality_text)}[/]"


def results_table(runs: list[RunResult],
                  detectable: dict[tuple[str, str], float] | None = None, *,
                  wide: bool = False, busy_fraction: float = BUSY_CPU_FRACTION) -> Table:
    """run-once's table, one row per result, read as collector.analysis.reading reads it:
    its headline value (the best of its fresh-process repetitions), that value's 95%
    uncertainty and its quality (clean, busy: measured while other processes used the CPU,
    or not settled within its CI target). The compact form fits 100 columns; `wide` adds
    every catalogue column, the task, the repetitions and the detector's MDE
    (`detectable`: (series, metric) -> the smallest change it pages on within a cycle)."""
    effects = detectable or {}
    results = [(run, r) for run in runs for r in run.results]
    suites = {run.suite for run in runs}
    hosts = sorted({run.host for run in runs})
    reps = sorted({max(len(r.repetitions), r.spec.measurement.repetitions) for _, r in results})
    title = (f"Benchmark results: {len(results)} benchmark(s) of suite "
             f"{', '.join(sorted(suites))} on {', '.join(hosts)}"
             + (f", {reps[0]} fresh processes each" if len(reps) == 1 and reps[0] > 1 else ""))
    table = Table(title=title, title_justify="left")
    if len(suites) > 1:
        table.add_column("suite")
    table.add_column("benchmark", overflow="fold")
    ok = [r for _, r in results if r.status == "ok"]
    headers = sorted({_headline_header(r) for r in ok}) or ["p50 ms"]
    # The wide table's metric columns: those at least one result fills (a column of dashes
    # only narrows the workload's column).
    columns = {header: shown for header, shown in catalogue.columns().items()
               if any(d.name in r.metrics for r in ok for d in shown)}
    if wide:
        table.add_column("task")
        for header in columns:
            table.add_column(header, justify="right")
        extra: tuple[str, ...] = ("±", "reps", "MDE %")
    else:
        compact = [catalogue.metric(name) for name in catalogue.TABLE_COMPACT]
        for header in (" / ".join(headers), "±",
                       *(d.column.header if d.column else d.name for d in compact)):
            table.add_column(header, justify="right")
        extra = ()
    for header in extra:
        table.add_column(header, justify="right")
    table.add_column("quality")
    for run, result in results:
        first = [run.suite] if len(suites) > 1 else []
        label = _shown(workload_label(result))
        quality = _quality_cell(result, busy_fraction)
        if result.status != "ok":
            blanks = (len(columns) + 4) if wide else 2 + len(catalogue.TABLE_COMPACT)
            table.add_row(*first, label, *(["-"] * blanks), quality)
            continue
        m = result.metrics
        metric = catalogue.headline(m)
        reading = read(result, metric, busy_fraction=busy_fraction)
        if wide:
            mde = effects.get((result.series_id, metric))
            table.add_row(*first, label, result.resolved_task.value if result.resolved_task
                          else result.spec.task.value,
                          *(_cell(m, shown) for shown in columns.values()),
                          reading.uncertainty_text, str(max(len(result.repetitions), 1)),
                          catalogue.Format.PERCENT.render(mde), quality)
            continue
        cells = [_cell(m, [catalogue.metric(name)]) for name in catalogue.TABLE_COMPACT]
        table.add_row(*first, label, _cell(m, [catalogue.metric(metric)]),
                      reading.uncertainty_text, *cells, quality)
    table.caption = (
        "value: the best of the fresh-process repetitions (interference only ever slows a "
        "run). ±: its 95% interval within the run. quality: clean; busy N% = other "
        "processes used N% of the CPU while it ran (its time is another machine's, and "
        "the detector sets it aside); ±a > ±b = the median did not settle within its "
        "target." + (" MDE %: the smallest change of the headline the detector pages on "
                     "within one cycle, learnt from this series' noise (- before 20 runs)."
                     + _cost_caption(ok, columns) if wide else " --wide: every metric."))
    return table


def _cost_caption(ok: list[BenchmarkResult],
                  columns: dict[str, list[catalogue.MetricDef]]) -> str:
    """What the wide table's cost and carbon columns are in, where it shows them."""
    shown = [d for members in columns.values() for d in members
             if d.name in catalogue.COST_METRICS]
    parts = []
    if any(d.unit.startswith(catalogue.CURRENCY) for d in shown):
        currencies = sorted({r.environment.cost_currency for r in ok
                             if r.environment.cost_currency})
        parts.append(f"cost: in {_shown(', '.join(currencies)) or 'the cost section currency'}"
                     " at the host's hourly price (config cost), per 1M output tokens and "
                     "per 1k requests")
    if any(not d.unit.startswith(catalogue.CURRENCY) for d in shown):
        parts.append("gCO2e: grams CO2e per 1M output tokens at the grid's carbon intensity")
    return " " + "; ".join(parts) + "." if parts else ""


def failures_text(runs: list[RunResult]) -> list[str]:
    lines = []
    for run in runs:
        for result in run.results:
            if result.failure is not None:
                f = result.failure
                lines.append(f"{run.suite}/{result.spec.label}: {f.kind.value}: {f.message}")
    return lines


_VERDICT_COLOUR = {"worse": "red", "better": "green", "same": "dim"}


def _rows_table(title: str, headers: tuple[str, ...], rows: list[Row],
                counts: Callable[[Row], str], quality: Callable[[Row], str]) -> Table:
    """Comparison rows: the workload (headed `headers[0]`) and metric, then the 5 numbers
    the other headers name (both values, the ratio of those values, its interval, how many
    values: `counts`), the sides' quality (`quality`) and the verdict."""
    table = Table(title=title, title_justify="left")
    table.add_column(headers[0], overflow="fold")
    table.add_column("metric", overflow="fold")
    for header in headers[1:]:
        table.add_column(header, justify="right")
    table.add_column("quality")
    table.add_column("verdict")
    for row in rows:
        table.add_row(_shown(row.workload), catalogue.METRICS[row.metric].title,
                      row.text(row.a), row.text(row.b),
                      f"{row.ratio:.3f}x", row.interval_text, counts(row),
                      _shown(quality(row)), f"[{_VERDICT_COLOUR[row.verdict]}]{row.word}[/]")
    return table


def _sides_quality(row: Row) -> str:
    if row.quality_a == row.quality_b:
        return row.quality_a
    return f"A {row.quality_a}, B {row.quality_b}"


def comparison_table(result: Comparison, names: tuple[str, str]) -> Table:
    """`collector compare` on the terminal: one row per workload and metric."""
    table = _rows_table(f"A = {_shown(names[0])}   B = {_shown(names[1])}",
                        ("workload", "A", "B", "B/A", "95% CI", "n A/B"), result.rows,
                        lambda row: f"{row.n_a}/{row.n_b}", _sides_quality)
    notes = ["A, B: each side's value (its run's, or its runs' geometric mean); B/A is their "
             "ratio. 95% interval of B/A: Welch's t over the runs when both sides have "
             "several, a prediction interval when one side has a single run, and with one "
             "run a side its repetitions (or raw samples) plus the assumed run-to-run noise "
             "(--run-noise). exact: a deterministic metric (memory, instructions, output "
             "drift), compared as it is. n: runs (repetitions with one run a side). A change "
             "inside the interval or below the metric's threshold is same."]
    for side, missing in (("A", result.only_a), ("B", result.only_b)):
        if missing:
            notes.append(f"only in {side}: " + _shown(", ".join(missing)))
    table.caption = " ".join(notes)
    return table


def previous_table(rows: list[Row]) -> list[Table | str]:
    """After run-once's table: each result against its series' previous runs. Series not
    judged yet (too few runs) or not judged (a busy host) are said in one line each; the
    judged ones get a table (its metric column only where they differ)."""
    too_few = [row for row in rows if row.note and row.note.startswith("too few runs")]
    busy = [row for row in rows if row.note and not row.note.startswith("too few runs")]
    judged = [row for row in rows if row.note is None]
    out: list[Table | str] = []
    if too_few:
        counts = sorted({row.n_a for row in too_few})
        span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        out.append(f"Against the previous runs: {len(too_few)} series not judged yet, "
                   f"{span} previous run(s) of the 20 the detector learns a series' noise "
                   "from (about a day at an hourly schedule).")
    if busy:
        out.append(f"Against the previous runs: {len(busy)} result(s) not judged, measured on "
                   "a busy host: " + _shown(", ".join(
                       f"{row.workload} ({row.quality_b})" for row in busy)) + ".")
    if not judged:
        return out
    table = Table(title="Against the previous runs of each series", title_justify="left")
    table.add_column("benchmark", overflow="fold")
    metrics = len({row.metric for row in judged}) > 1
    if metrics:
        table.add_column("metric", overflow="fold")
    for header in ("before", "now", "now/before", "normal range", "runs"):
        table.add_column(header, justify="right")
    table.add_column("verdict")
    for row in judged:
        table.add_row(_shown(row.workload), *([row.metric] if metrics else []),
                      row.text(row.a), row.text(row.b), f"{row.ratio:.3f}x",
                      row.interval_text, str(row.n_a),
                      f"[{_VERDICT_COLOUR[row.verdict]}]{row.word}[/]")
    table.caption = ("before: the median of the series' previous runs (up to 40). normal "
                     "range: where now/before falls when nothing changed (the detector's "
                     "alarm threshold times the series' learnt noise). same: inside it, or "
                     "below the metric's threshold. The detector, not this table, decides "
                     "what pages.")
    out.append(table)
    return out


def pivot_table(table: Pivot) -> Table:
    """`collector compare --pivot`: one side's metric by two dimensions."""
    # Rows, columns and the group are data (benchmark names, model ids, hosts from a results
    # file): shown as they are, never as rich markup or terminal escape sequences.
    title = _shown(table.metric + (f"  ({table.group})" if table.group else ""))
    out = Table(title=title, title_justify="left")
    out.add_column("")
    for column in table.columns:
        out.add_column(_shown(column), justify="right")
    for row in table.rows:
        out.add_row(_shown(row), *(f"[bold green]{text}[/]" if (row, column) in table.best
                                   else text for column in table.columns
                                   for text in [_shown(table.cell_text(row, column))]))
    out.caption = "* = the best of its column (median over the results in the cell)"
    return out


def _shown(text: str) -> str:
    """Data in a rich table: as it is (no markup, no terminal escape sequences)."""
    return escape(visible(text))


def console() -> Console:
    """Standard output for tables and lines (no highlighting of numbers or paths): as wide
    as the terminal, or $COLUMNS, else (a pipe, a log) 100 columns."""
    import os
    import sys

    wide_enough = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(width=None if wide_enough else 100, highlight=False)
