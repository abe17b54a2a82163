"""`collector check-config FILE`: validate a configuration file and say what it expands to."""

from __future__ import annotations

import argparse

from collector.cli.common import stderr
from collector.cli.exits import Exit

NAME = "check-config"
HELP = "validate a configuration file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="configuration file")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from collector.adapters.config import load_config

    config = load_config(args.file)
    out = stderr()
    for note in config.notes:
        out.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    console = Console()
    console.print(f"{config.path}: OK, {len(config.suites)} suite(s), "
                  f"{config.benchmark_count} benchmark(s)", highlight=False, markup=False)
    for suite in config.suites:
        console.print(f"  {suite.name}: {len(suite.benchmarks)} benchmark(s)", highlight=False,
                      markup=False)
    return Exit.OK
