"""`collector compare`: two sides of results files, a verdict per workload and metric
(collector/analysis/compare.py), as a terminal table, JSON or Markdown for a PR comment.

A side is one or more results documents (`run-once --output`), so CI can compare a pull
request's runs with main's without a database, or a selector of stored runs (two run ids,
two suites, two time windows, two environments such as transformers_version=5.23.0 vs
5.24.0) read from the history of record. With `--fail-on-regression [F]` the command
exits 5 when a workload's metric is judged worse (by at least F when given).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.domain.errors import InputError, command_line_problem

if TYPE_CHECKING:  # the command's own imports wait until it runs: the CLI starts fast
    from collector.analysis.compare import Comparison, Pivot
    from collector.domain.history import Store
    from collector.domain.model import BenchmarkResult

EXIT_REGRESSION = 5
COMPARISON_FORMAT = "collector-comparison"
COMPARISON_FORMAT_VERSION = 1


def add_parser(commands: Any, default_config: str) -> None:
    compare_cmd = commands.add_parser(
        "compare", help="compare two sets of results: ratio, 95%% interval and verdict per "
        "workload and metric")
    compare_cmd.add_argument("files", nargs="*", metavar="SIDE",
                             help="A B: the two sides (or use --a and --b); each a results "
                             "file or a selector of stored runs (see --a)")
    compare_cmd.add_argument("--a", nargs="+", default=[], metavar="SIDE",
                             help="side A (the baseline): results files and/or selectors "
                             "of stored runs, KEY=VALUE[,KEY=VALUE...] with keys run (an id "
                             "or prefix), suite, host, since, until (ISO times), last (the "
                             "newest N matching runs, default 10) and any environment field "
                             "(e.g. transformers_version=5.23.0)")
    compare_cmd.add_argument("--b", nargs="+", default=[], metavar="SIDE",
                             help="side B (the candidate), as --a")
    compare_cmd.add_argument("--pivot", metavar="ROWS:COLUMNS",
                             help="one side's metric as a table by two dimensions (model, "
                             "backend, dtype, device, batch_size, sequence_length, "
                             "quantization, attn_implementation, host), best per column "
                             "marked, e.g. --pivot model:batch_size or backend:dtype")
    compare_cmd.add_argument("--config", "-c", default=default_config,
                             help="configuration file for its storage section (selectors)")
    compare_cmd.add_argument("--local-store", metavar="PATH",
                             help="SQLite file of the local store (selectors)")
    compare_cmd.add_argument("--metric", action="append", default=[],
                             help="a metric to compare (repeatable; default: the headline "
                             "metrics each result has)")
    compare_cmd.add_argument("--all-metrics", action="store_true",
                             help="every judged metric both sides have")
    compare_cmd.add_argument("--threshold", type=float, metavar="F",
                             help="smallest relative change that counts (default: the "
                             "detector's minimum effect of each metric)")
    compare_cmd.add_argument("--run-noise", type=float, metavar="SD",
                             help="run-to-run noise assumed when each side is one run (a "
                             "relative sd; default 0.05; about 0.2 on busy shared VMs): the "
                             "repetitions of one run cannot show it")
    compare_cmd.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    compare_cmd.add_argument("--fail-on-regression", nargs="?", type=float, const=0.0,
                             default=None, metavar="F",
                             help=f"exit {EXIT_REGRESSION} when a metric is judged worse "
                             "(by at least F, e.g. 0.05, when given)")


def load_side(side: str, store: Callable[[], Store]) -> list[BenchmarkResult]:
    """A SIDE argument's results: a selector of stored runs, else a results file."""
    from collector.present.results_file import load_results

    return select_stored(side, store()) if is_selector(side) else load_results(side)


def _sides(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    if args.pivot is not None:
        one = args.files or args.a
        if not one or args.b or (args.files and args.a):
            raise command_line_problem("--pivot", "give one side: SIDE... or --a SIDE...")
        return list(one), []
    if args.files and (args.a or args.b):
        raise command_line_problem("FILE", "give either two files or --a and --b, not both")
    if args.files:
        if len(args.files) != 2:
            raise command_line_problem("FILE", f"give two files, A and B (got {len(args.files)})")
        return [args.files[0]], [args.files[1]]
    if not args.a or not args.b:
        raise command_line_problem("--a/--b", "give results files for both sides")
    return list(args.a), list(args.b)


SELECTOR_KEYS = ("run", "suite", "host", "since", "until", "last")
DEFAULT_LAST = 10


def is_selector(side: str) -> bool:
    return "=" in side and not Path(side).exists()


def parse_selector(side: str) -> dict[str, str]:
    """`KEY=VALUE[,KEY=VALUE...]` -> {key: value}, keys checked (environment fields too)."""
    from collector.domain.model import Environment

    known = (*SELECTOR_KEYS, *Environment.model_fields)
    parsed: dict[str, str] = {}
    for part in side.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise command_line_problem(side, f"expected KEY=VALUE, got {part!r}")
        if key not in known:
            raise command_line_problem(side, f"unknown key {key!r}: use "
                                       f"{', '.join(SELECTOR_KEYS)} or an environment "
                                       "field (e.g. transformers_version)")
        parsed[key] = value.strip()
    return parsed


def _when(side: str, key: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise command_line_problem(side, f"{key}: expected an ISO time such as 2026-11-30 "
                                   f"or 2026-11-30T12:00Z, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def select_stored(side: str, store: Store) -> list[BenchmarkResult]:
    """The results of the stored runs a selector names (newest `last` of those matching)."""
    wanted = parse_selector(side)
    try:
        last = int(wanted.get("last", DEFAULT_LAST))
    except ValueError:
        raise command_line_problem(
            side, f"last: expected a number of runs, got {wanted['last']!r}") from None
    if last < 1:
        raise command_line_problem(side, "last: at least 1 run")
    runs = store.runs(suite=wanted.get("suite"), host=wanted.get("host"),
                      since=_when(side, "since", wanted.get("since")),
                      until=_when(side, "until", wanted.get("until")),
                      run_id_prefix=wanted.get("run"))
    environment = {k: v for k, v in wanted.items() if k not in SELECTOR_KEYS}
    runs = [r for r in runs
            if all(str(r.environment.get(k)) == v for k, v in environment.items())][:last]
    if not runs:
        raise InputError(f"{side}: no stored scheduled run matches")
    return store.stored_results(runs)


def run_compare(args: argparse.Namespace, store: Callable[[], Store]) -> int:
    """`store`: the history of record, opened on first use (only selectors need it)."""
    from collector.analysis.compare import DEFAULT_RUN_NOISE, compare
    from collector.domain.catalogue import METRICS

    files_a, files_b = _sides(args)
    for metric in args.metric:
        if metric not in METRICS:
            raise command_line_problem("--metric", f"unknown metric {metric!r}")
    if args.threshold is not None and not 0 <= args.threshold < 10:
        raise command_line_problem("--threshold", "expected a relative change such as 0.05")
    side_a = [r for side in files_a for r in load_side(side, store)]
    if args.pivot is not None:
        return _pivot(args, side_a)
    side_b = [r for side in files_b for r in load_side(side, store)]
    if args.run_noise is not None and not 0 <= args.run_noise < 5:
        raise command_line_problem("--run-noise", "expected a relative sd such as 0.05")
    noise = DEFAULT_RUN_NOISE if args.run_noise is None else args.run_noise
    result = compare(side_a, side_b, metrics=args.metric or None, threshold=args.threshold,
                     all_metrics=args.all_metrics, run_noise=noise)
    print_comparison(result, (", ".join(files_a), ", ".join(files_b)), args.format)
    if not result.rows:
        raise InputError("nothing to compare: no workload has results on both sides")
    return EXIT_REGRESSION if regressed(result, args.fail_on_regression) else 0


def print_comparison(comparison: Comparison, names: tuple[str, str], fmt: str,
                     extra: dict[str, Any] | None = None, lines: Sequence[str] = ()) -> None:
    """A comparison on standard output as a table, JSON or Markdown; commands built on it
    (ab, rerun) add their own keys to the JSON (`extra`) and lines after the others."""
    if fmt == "json":
        sys.stdout.write(json.dumps({**to_json(comparison, names), **(extra or {})},
                                    indent=2) + "\n")
        return
    if fmt == "markdown":
        sys.stdout.write(to_markdown(comparison, names))
        sys.stdout.write("".join(f"\n{line}\n" for line in lines))
        return
    from rich.console import Console

    from collector.present.table import comparison_table

    console = Console(width=200 if not sys.stdout.isatty() else None, highlight=False)
    console.print(comparison_table(comparison, names))
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


def regressed(comparison: Comparison, fail_on: float | None) -> bool:
    """--fail-on-regression [F]: a row judged worse (by at least F when F is given)."""
    return fail_on is not None and bool(comparison.worse(fail_on or None))


def _pivot(args: argparse.Namespace, results: list[BenchmarkResult]) -> int:
    from collector.analysis.compare import DIMENSIONS, pivot
    from collector.domain.catalogue import headline

    rows, sep, columns = str(args.pivot).partition(":")
    if not sep or rows not in DIMENSIONS or columns not in DIMENSIONS or rows == columns:
        raise command_line_problem("--pivot",
                                   f"expected ROWS:COLUMNS, two of {', '.join(DIMENSIONS)}")
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        raise InputError("nothing to lay out: no successful result")
    metric = args.metric[0] if args.metric else headline(ok[0].metrics)
    tables = pivot(ok, rows, columns, metric)
    if not tables:
        raise InputError(f"no result has {metric}")
    if args.format == "json":
        sys.stdout.write(json.dumps({"format": "collector-pivot", "format_version": 1,
                                     "tables": [pivot_json(p) for p in tables]}, indent=2)
                         + "\n")
    elif args.format == "markdown":
        sys.stdout.write("\n".join(pivot_markdown(p) for p in tables))
    else:
        from rich.console import Console

        from collector.present.table import pivot_table

        console = Console(width=200 if not sys.stdout.isatty() else None)
        for table in tables:
            console.print(pivot_table(table))
    return 0


def pivot_json(table: Pivot) -> dict[str, Any]:
    return {"metric": table.metric, "group": table.group, "rows": table.rows,
            "columns": table.columns,
            "cells": [{"row": r, "column": c, "value": v, "best": (r, c) in table.best}
                      for (r, c), v in sorted(table.cells.items())]}


def pivot_markdown(table: Pivot) -> str:
    title = f"**{table.metric}**" + (f" ({table.group})" if table.group else "")
    lines = [title + ": * = best of its column", "",
             "| | " + " | ".join(table.columns) + " |",
             "|---|" + "---|" * len(table.columns)]
    for row in table.rows:
        lines.append(f"| {row} | " + " | ".join(table.cell_text(row, c)
                                               for c in table.columns) + " |")
    return "\n".join(lines) + "\n"


def to_json(result: Comparison, names: tuple[str, str]) -> dict[str, Any]:
    return {"format": COMPARISON_FORMAT, "format_version": COMPARISON_FORMAT_VERSION,
            "a": names[0], "b": names[1], "rows": [r.as_dict() for r in result.rows],
            "only_a": result.only_a, "only_b": result.only_b,
            "summary": summary(result)}


def summary(result: Comparison) -> dict[str, int]:
    counts = {"worse": 0, "better": 0, "same": 0}
    for row in result.rows:
        counts[row.verdict] += 1
    return counts


def to_markdown(result: Comparison, names: tuple[str, str]) -> str:
    counts = summary(result)
    lines = [f"**collector compare**: A = `{names[0]}`, B = `{names[1]}`: "
             f"{counts['worse']} worse, {counts['better']} better, {counts['same']} same "
             "(95% intervals; a change inside the noise or below the threshold is *same*)",
             "", "| workload | metric | A | B | B/A | 95% CI | n A/B | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result.rows:
        verdict = f"**{row.word}**" if row.verdict != "same" else row.word
        lines.append(f"| {row.workload} | {row.metric} | {row.text(row.a)} | "
                     f"{row.text(row.b)} | {row.ratio:.3f}x | {row.interval_text} | "
                     f"{row.n_a}/{row.n_b} | {verdict} |")
    for side, missing in (("A", result.only_a), ("B", result.only_b)):
        if missing:
            lines.append("")
            lines.append(f"Only in {side}: " + ", ".join(missing))
    return "\n".join(lines) + "\n"
