"""`collector report`: from results files or stored runs (the same SIDE arguments as
`collector compare`), what a reader asks first: with two sides (`--a`, `--b`) what changed;
then what needs a look (failures, regressions, results measured on a busy host), the fastest
variant of each model, the bottleneck findings run by run (collector/analysis/findings.py),
then the detail. As Markdown (a PR comment, a wiki page) or as one self-contained HTML file
with charts, trends and the stored regressions (collector/present/html_report.py).

Thresholds of the findings: the command line's, else the config file's `report` section,
else the defaults (collector.adapters.config.ReportSettings: 100 ms, 4096 MiB, 10
samples/s).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from collector.cli import options
from collector.cli.common import optional_config, with_lazy_store
from collector.cli.exits import Exit
from collector.domain.errors import OutputError, command_line_problem

if TYPE_CHECKING:
    from collector.adapters.config import ReportSettings
    from collector.analysis.findings import Thresholds
    from collector.domain.history import Store

NAME = "report"
HELP = "what changed, what needs a look, the fastest variants and findings, as HTML or Markdown"
FORMATS = ("markdown", "html")
THRESHOLD_FIELDS = ("high_latency_ms", "high_memory_mib", "low_throughput")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sides", nargs="*", metavar="SIDE",
                        help="results files and/or selectors of stored runs (as compare's) "
                        "to report; or --a and --b")
    parser.add_argument("--a", nargs="+", default=[], metavar="SIDE",
                        help="a baseline (as compare's --a): the report leads with what "
                        "changed from it to --b")
    parser.add_argument("--b", nargs="+", default=[], metavar="SIDE",
                        help="what is reported, compared with --a")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the report there (default: standard output)")
    parser.add_argument("--format", choices=FORMATS,
                        help="markdown or html (default: html for an --output ending in "
                             ".html or .htm, else markdown)")
    for name, text in (
            ("--high-latency-ms", "p50 latency above this is a finding"),
            ("--high-memory-mib", "peak RSS above this is a finding"),
            ("--low-throughput", "samples/s below this is a finding")):
        parser.add_argument(name, type=options.positive,
                            help=f"{text} (default: the config's report section, else its "
                                 "default)")
    options.config(parser, "configuration file: its storage section (selectors) and report "
                           "section (thresholds)")
    options.local_store(parser)


def run(args: argparse.Namespace) -> int:
    config = optional_config(args.config)  # its report section: the findings' thresholds
    return with_lazy_store(args, lambda a, store: _run(
        a, store, config.report if config is not None else None))


def _thresholds(args: argparse.Namespace, configured: ReportSettings | None) -> Thresholds:
    """The command line's thresholds, else the config's, else the defaults."""
    from collector.adapters.config import ReportSettings
    from collector.analysis.findings import Thresholds

    defaults = configured or ReportSettings()
    values = {}
    for name in THRESHOLD_FIELDS:
        given = getattr(args, name)
        if given is not None and given <= 0:
            raise command_line_problem("--" + name.replace("_", "-"), "must be positive")
        values[name] = given if given is not None else getattr(defaults, name)
    return Thresholds(high_latency_s=values["high_latency_ms"] / 1e3,
                      high_memory_bytes=values["high_memory_mib"] * 2**20,
                      low_throughput=values["low_throughput"])


def _sides(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(the baseline, what is reported): ([], SIDE...) or (--a, --b)."""
    if args.sides and (args.a or args.b):
        raise command_line_problem("SIDE", "give either the sides to report or --a and --b, "
                                   "not both")
    if args.sides:
        return [], list(args.sides)
    if not args.a or not args.b:
        raise command_line_problem("--a/--b", "give the sides to report, or both --a and --b")
    return list(args.a), list(args.b)


def _run(args: argparse.Namespace, store: Callable[[], Store],
         configured: ReportSettings | None = None) -> int:
    """`configured`: the config file's report section (None: no config file)."""
    from collector.adapters.files import write_atomic
    from collector.present import markdown
    from collector.present.html_report import render
    from collector.usecases.report import report_data
    from collector.usecases.select import is_selector, load_sides

    limits = _thresholds(args, configured)
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"cannot write the report to {output}: directory {output.parent} "
                          "does not exist")
    form = args.format or ("html" if output is not None
                           and output.suffix.lower() in (".html", ".htm") else "markdown")
    if form == "html" and output is None and sys.stdout.isatty():
        raise command_line_problem("--format", "an HTML report goes to a file: add "
                                   "--output FILE.html (or redirect standard output)")
    baseline, sides = _sides(args)
    runs = load_sides(sides, store)
    baseline_runs = load_sides(baseline, store) if baseline else None
    stored = any(is_selector(side) for side in sides)
    data = report_data(runs, sides, baseline_runs=baseline_runs, baseline=baseline,
                       store=store() if stored else None, thresholds=limits)
    text = render(data) if form == "html" else markdown.report(data)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text, what="the report")
    return Exit.OK
