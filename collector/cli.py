"""Command line. The only module that turns domain errors into messages and exit codes.

Exit codes (also in the README):
  0  every benchmark succeeded
  1  one or more benchmarks failed (the others ran; all results are printed and written)
  2  invalid configuration or command line
  3  results could not be written to --output
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector import __version__
from collector.errors import CollectorError, ConfigError, OutputError

if TYPE_CHECKING:
    from rich.console import Console

    from collector.model import RunResult

EXIT_OK = 0
EXIT_BENCHMARK_FAILED = 1
EXIT_USAGE = 2
EXIT_OUTPUT = 3
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = "configs/default.yml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="Benchmark Hugging Face transformers models and keep the results.")
    parser.add_argument("--version", action="version", version=f"collector {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run-once", help="run benchmark suites now and print the results")
    run.add_argument("--config", "-c", default=os.environ.get("COLLECTOR_CONFIG", DEFAULT_CONFIG),
                     help=f"configuration file (default: $COLLECTOR_CONFIG or {DEFAULT_CONFIG})")
    run.add_argument("--suite", "-s", action="append", metavar="NAME",
                     help="run only this suite (repeatable)")
    run.add_argument("--benchmark", "-b", action="append", metavar="PATTERN",
                     help="run only benchmarks whose name matches this glob (repeatable)")
    run.add_argument("--output", "-o", metavar="FILE.json",
                     help="also write all results to this file (versioned JSON format)")
    run.add_argument("--format", choices=("table", "json"), default="table",
                     help="print a table (default) or the JSON results document")
    run.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver",
                     help="how workers start: fork from a server that imported torch once "
                          "(default), or a brand new interpreter per benchmark")
    run.add_argument("--host", help="host name recorded in results (default: this machine's)")
    run.add_argument("--no-progress", action="store_true", help="no live progress on stderr")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", help="configuration file")
    return parser


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _error(message: str) -> None:
    from rich.markup import escape

    _stderr().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _print_problems(error: ConfigError) -> None:
    console = _stderr()
    console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    for problem in error.problems:
        console.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)


def _check_config(args: argparse.Namespace) -> int:
    from collector.config import load_config

    config = load_config(args.file)
    out = _stderr()
    for note in config.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    from rich.console import Console

    console = Console()
    console.print(f"{config.path}: OK, {len(config.suites)} suite(s), "
                  f"{config.benchmark_count} benchmark(s)", highlight=False, markup=False)
    for suite in config.suites:
        console.print(f"  {suite.name}: {len(suite.benchmarks)} benchmark(s)", highlight=False,
                      markup=False)
    return EXIT_OK


def _write_output(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"cannot write results to {path}: {exc.strerror or exc}") from None


def _run_once(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from collector.config import load_config
    from collector.model import results_document
    from collector.report import RichReporter, failures_text, results_table
    from collector.service import Selection, run_once

    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"cannot write results to {output}: directory "
                          f"{output.parent} does not exist")
    config = load_config(args.config)
    err = _stderr()
    reporter = None if args.no_progress else RichReporter(err)
    runs: list[RunResult] = run_once(
        config, selection=Selection(args.suite, args.benchmark), reporter=reporter,
        start_method=args.isolation, host=args.host)
    document = results_document(runs)
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        Console(width=200 if not sys.stdout.isatty() else None).print(results_table(runs))
    failures = failures_text(runs)
    for line in failures:
        err.print(f"[red]failed:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if output is not None:
        _write_output(output, document)
        err.print(f"results written to {output}", highlight=False, markup=False)
    return EXIT_BENCHMARK_FAILED if failures else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args)
        return _run_once(args)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    except CollectorError as exc:  # every other documented failure kind
        _error(str(exc))
        return EXIT_OUTPUT if isinstance(exc, OutputError) else EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
