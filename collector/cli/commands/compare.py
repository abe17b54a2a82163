"""`collector compare`: two sides of results, a verdict per workload and metric
(collector/analysis/compare.py), as a terminal table, JSON or Markdown for a PR comment.

A side is one or more results documents (`run-once --output`), so CI can compare a pull
request's runs with main's without a database, or a selector of stored runs (two run ids,
two suites, two time windows, two environments such as transformers_version=5.23.0 vs
5.24.0) read from the history of record. With `--fail-on-regression [F]` the command
exits 5 when a workload's metric is judged worse (by at least F when given).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.cli import options
from collector.cli.common import with_lazy_store
from collector.cli.exits import Exit
from collector.domain.errors import InputError, command_line_problem

if TYPE_CHECKING:  # the command's own imports wait until it runs: the CLI starts fast
    from collector.domain.history import Store
    from collector.domain.model import BenchmarkResult

NAME = "compare"
HELP = "compare two sets of results: ratio, 95%% interval and verdict per workload and metric"
PIVOT_BY = ("benchmark, model, backend, dtype, device, batch_size, sequence_length, "
            "quantization, attn_implementation, host")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="SIDE",
                        help="A B: the two sides (or use --a and --b); each a results "
                        "file or a selector of stored runs (see --a)")
    parser.add_argument("--a", nargs="+", default=[], metavar="SIDE",
                        help="side A (the baseline): results files and/or selectors "
                        "of stored runs, KEY=VALUE[,KEY=VALUE...] with keys run (an id "
                        "or prefix), suite, host, since, until (ISO times), last (the "
                        "newest N matching runs, default 10) and any environment field "
                        "(e.g. transformers_version=5.23.0)")
    parser.add_argument("--b", nargs="+", default=[], metavar="SIDE",
                        help="side B (the candidate), as --a")
    parser.add_argument("--pivot", metavar="ROWS:COLUMNS",
                        help=f"one side's metric as a table by two dimensions ({PIVOT_BY}), "
                        "best per column marked, e.g. --pivot benchmark:batch_size or "
                        "backend:dtype")
    options.config(parser, "configuration file for its storage section (selectors)")
    options.local_store(parser)
    parser.add_argument("--metric", action="append", default=[],
                        help="a metric to compare (repeatable; default: the headline "
                        "metrics each result has)")
    parser.add_argument("--all-metrics", action="store_true",
                        help="every judged metric both sides have")
    options.threshold(parser)
    parser.add_argument("--run-noise", type=options.non_negative, metavar="SD",
                        help="run-to-run noise assumed when each side is one run (a "
                        "relative sd; default 0.05; about 0.2 on busy shared VMs): the "
                        "repetitions of one run cannot show it")
    options.output_format(parser)
    options.fail_on_regression(parser, "a metric is judged worse")


def run(args: argparse.Namespace) -> int:
    return with_lazy_store(args, _run)


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


def _run(args: argparse.Namespace, store: Callable[[], Store]) -> int:
    """`store`: the history of record, opened on first use (only selectors need it)."""
    from collector.analysis.compare import DEFAULT_RUN_NOISE, compare
    from collector.cli.common import say
    from collector.domain.catalogue import METRICS
    from collector.domain.history import flatten
    from collector.present.comparison import print_comparison
    from collector.usecases.select import load_sides, refuse_shared_runs

    files_a, files_b = _sides(args)
    for metric in args.metric:
        if metric not in METRICS:
            raise command_line_problem("--metric", f"unknown metric {metric!r}")
    threshold = options.checked_threshold(args.threshold)
    notes_a: list[str] = []
    runs_a = load_sides(files_a, store, notes_a)
    for note in notes_a:
        say(f"note: side A: {note}")
    if args.pivot is not None:
        return _pivot(args, flatten(runs_a))
    notes_b: list[str] = []
    runs_b = load_sides(files_b, store, notes_b)
    for note in notes_b:
        say(f"note: side B: {note}")
    refuse_shared_runs(runs_a, runs_b, (", ".join(files_a), ", ".join(files_b)))
    side_a, side_b = flatten(runs_a), flatten(runs_b)
    if args.run_noise is not None and not 0 <= args.run_noise < 5:
        raise command_line_problem("--run-noise", "expected a relative sd such as 0.05")
    noise = DEFAULT_RUN_NOISE if args.run_noise is None else args.run_noise
    result = compare(side_a, side_b, metrics=args.metric or None, threshold=threshold,
                     all_metrics=args.all_metrics, run_noise=noise)
    print_comparison(result, (", ".join(files_a), ", ".join(files_b)), args.format)
    if not result.rows:
        raise InputError("nothing to compare: no workload has results on both sides")
    return Exit.REGRESSION if result.regressed(args.fail_on_regression) else Exit.OK


def _pivot(args: argparse.Namespace, results: list[BenchmarkResult]) -> int:
    from collector.analysis.compare import pivot
    from collector.domain.catalogue import headline
    from collector.domain.series import PIVOT_DIMENSIONS
    from collector.present import markdown
    from collector.present.documents import dumps, pivot_document
    from collector.present.table import console, pivot_table

    rows, sep, columns = str(args.pivot).partition(":")
    if (not sep or rows not in PIVOT_DIMENSIONS or columns not in PIVOT_DIMENSIONS
            or rows == columns):
        raise command_line_problem("--pivot", "expected ROWS:COLUMNS, two of "
                                   f"{', '.join(PIVOT_DIMENSIONS)}")
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        raise InputError("nothing to lay out: no successful result")
    metric = args.metric[0] if args.metric else headline(ok[0].metrics)
    tables = pivot(ok, rows, columns, metric)
    if not tables:
        raise InputError(f"no result has {metric}")
    if args.format == "json":
        sys.stdout.write(dumps(pivot_document(tables)))
    elif args.format == "markdown":
        sys.stdout.write("\n".join(markdown.pivot(p) for p in tables))
    else:
        out = console()
        for table in tables:
            out.print(pivot_table(table))
    return Exit.OK
