"""Terminal tables with rich: run-once's results, comparisons, `--pivot` tables.

`console()` is the standard output console every command prints tables with: off a
terminal (pipes, logs) wide enough that ids and labels are never folded."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from collector.analysis.compare import Comparison, Pivot, Row
from collector.domain import catalogue
from collector.domain.model import BenchmarkResult, RunResult


def headline_text(result: BenchmarkResult) -> str:
    """The headline metric of a result in a few words: `p50 12.34 ms`, or
    `12.345 M instr per iteration`."""
    name = catalogue.headline(result.metrics)
    column = catalogue.metric(name).column
    assert column is not None  # every headline metric has a table column
    value = column.format.render(result.metrics.get(name))
    return f"p50 {value} ms" if column.format is catalogue.Format.MS else f"{value} per iteration"


def _cell(metrics: dict[str, float], shown: list[catalogue.MetricDef]) -> str:
    """A metric column's cell: the first of its metrics the result has."""
    for definition in shown:
        if definition.name in metrics:
            assert definition.column is not None
            return definition.column.format.render(metrics[definition.name])
    return "-"


def results_table(runs: list[RunResult],
                  detectable: dict[tuple[str, str], float] | None = None) -> Table:
    """The summary table: the catalogue's table columns (collector/domain/catalogue.py), then the
    measurement's precision. `detectable`: (series, metric) -> the smallest change the
    detector pages on within one cycle, shown for each result's headline metric."""
    effects = detectable or {}
    columns = catalogue.columns()
    table = Table(title="Benchmark results", title_justify="left")
    for header in ("suite", "benchmark", "task", "status"):
        table.add_column(header)
    for header in (*columns, "CI ±%", "reps", "MDE %"):
        table.add_column(header, justify="right")
    blank = ["-"] * (len(columns) + 3)
    for run in runs:
        for result in run.results:
            m = result.metrics
            spec = result.spec
            if result.status != "ok":
                assert result.failure is not None
                table.add_row(run.suite, spec.label, spec.task.value,
                              f"[red]{result.failure.kind.value}[/]", *blank)
                continue
            info = result.measurement
            ci = "-"
            if info is not None and info.achieved_rel_ci is not None:
                ci = f"{info.achieved_rel_ci * 100:.1f}" + ("" if info.converged else "*")
            mde = effects.get((result.series_id, catalogue.headline(m)))
            table.add_row(
                run.suite, spec.label,
                result.resolved_task.value if result.resolved_task else spec.task.value,
                "[green]ok[/]", *(_cell(m, shown) for shown in columns.values()),
                ci, str(max(len(result.repetitions), 1)),
                catalogue.Format.PERCENT.render(mde))
    table.caption = ("CI ±%: achieved 95% CI half-width of the median (with repetitions: "
                     "also their spread); * = target not reached. reps: fresh-process "
                     "repetitions. MDE %: smallest change of the p50 (or instructions) the "
                     "detector pages on within one cycle, learnt from this series' noise; "
                     "- until it has 20 runs")
    return table


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
                counts: Callable[[Row], str]) -> Table:
    """Comparison rows: the workload (headed `headers[0]`) and metric, then the 5 numbers
    the other headers name (both values, the ratio, its interval, how many values:
    `counts`), then the verdict."""
    table = Table(title=title, title_justify="left")
    for header in (headers[0], "metric"):
        table.add_column(header)
    for header in headers[1:]:
        table.add_column(header, justify="right")
    table.add_column("verdict")
    for row in rows:
        table.add_row(row.workload, row.metric, row.text(row.a), row.text(row.b),
                      f"{row.ratio:.3f}x", row.interval_text, counts(row),
                      f"[{_VERDICT_COLOUR[row.verdict]}]{row.word}[/]")
    return table


def comparison_table(result: Comparison, names: tuple[str, str]) -> Table:
    """`collector compare` on the terminal: one row per workload and metric."""
    table = _rows_table(f"A = {names[0]}   B = {names[1]}",
                        ("workload", "A", "B", "B/A", "95% CI", "n A/B"), result.rows,
                        lambda row: f"{row.n_a}/{row.n_b}")
    notes = ["95% interval of B/A: Welch's t over the runs when both sides have several, a "
             "prediction interval when one side has a single run, and with one run a side "
             "its repetitions (or raw samples) plus the assumed run-to-run noise "
             "(--run-noise). n: runs (repetitions with one run a side). A change inside the "
             "interval or below the metric's threshold is same."]
    for side, missing in (("A", result.only_a), ("B", result.only_b)):
        if missing:
            notes.append(f"only in {side}: " + ", ".join(missing))
    table.caption = " ".join(notes)
    return table


def previous_table(rows: list[Row]) -> Table:
    """After run-once's table: each result against its series' previous runs."""
    table = _rows_table("Against the previous runs of each series",
                        ("benchmark", "before", "now", "now/before", "95% CI", "runs"), rows,
                        lambda row: str(row.n_a))
    table.caption = ("before: median of up to 10 previous runs of the series. 95% CI: "
                     "where this run would fall if nothing had changed, from those runs' "
                     "spread (after a single previous run: the detector's learnt run-to-run "
                     "noise, else 5%). same: inside the noise or below the metric's "
                     "threshold. The detector, not this table, decides what pages.")
    return table


def pivot_table(table: Pivot) -> Table:
    """`collector compare --pivot`: one side's metric by two dimensions."""
    title = table.metric + (f"  ({table.group})" if table.group else "")
    out = Table(title=title, title_justify="left")
    out.add_column("")
    for column in table.columns:
        out.add_column(column, justify="right")
    for row in table.rows:
        out.add_row(row, *(f"[bold green]{text}[/]" if (row, column) in table.best else text
                           for column in table.columns
                           for text in [escape(table.cell_text(row, column))]))
    out.caption = "* = the best of its column (median over the results in the cell)"
    return out


def console() -> Console:
    """Standard output for tables and lines (no highlighting of numbers or paths)."""
    import sys

    return Console(width=200 if not sys.stdout.isatty() else None, highlight=False)
