"""Options several commands share, declared once."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from collector.cli.exits import Exit
from collector.domain.errors import command_line_problem

if TYPE_CHECKING:
    from collector.adapters.envs import EnvironmentCache

DEFAULT_CONFIG = "configs/default.yml"
CONFIG_ENV = "COLLECTOR_CONFIG"
FORMATS = ("table", "json", "markdown")


def config(parser: argparse.ArgumentParser, what: str = "configuration file") -> None:
    """--config/-c, default $COLLECTOR_CONFIG, else configs/default.yml."""
    parser.add_argument("--config", "-c", default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
                        help=f"{what} (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})")


def local_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local-store", metavar="PATH",
                        help="SQLite file of the local store and outbox (default: "
                             "storage.local_path, else $COLLECTOR_DATA_DIR/collector.db, else "
                             "~/.local/share/collector/collector.db)")


def output_format(parser: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS,
                  text: str | None = None) -> None:
    parser.add_argument("--format", choices=choices, default=choices[0], help=text)


def host(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", type=host_name,
                        help="host name recorded in results (default: this machine's; at "
                             "most 200 characters)")


def host_name(value: str) -> str:
    """--host, bounded like the config's names: it is part of every series' identity and
    an indexed column of the history database."""
    from collector.adapters.config.bounds import MAX_NAME_CHARS, identifier_problem

    problem = identifier_problem(value, MAX_NAME_CHARS)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def isolation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver",
                        help="how workers start: fork from a server that imported torch once "
                             "(default), or a brand new interpreter per benchmark")


def fail_on_regression(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--fail-on-regression", nargs="?", type=non_negative, const=0.0,
                        default=None, metavar="F",
                        help=f"exit {Exit.REGRESSION.value} when {what} (by at least F, e.g. "
                             "0.05, when given)")


def threshold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=non_negative, metavar="F",
                        help="smallest relative change that counts (default: the detector's "
                             "minimum effect of each metric)")


# Numbers on the command line are finite: `nan` compares false with everything, so a gate
# or a threshold given as nan would never fire (and inf would never be passed), silently.

def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative(text: str) -> float:
    """An option's number, finite and at least 0 (argparse reports anything else)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text!r}")
    return value


def positive(text: str) -> float:
    """An option's number, finite and above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def integer_between(low: int, high: int) -> Callable[[str], int]:
    """An option's integer in [low, high]: `schedule --count 100000000` would ask for run
    times past the year 9999, a port above 65535 does not exist."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low:,} to "
                                             f"{high:,}, got {text!r}")
        return value

    return parse


def checked_threshold(value: float | None) -> float | None:
    if value is not None and not 0 <= value < 10:
        raise command_line_problem("--threshold", "expected a relative change such as 0.05")
    return value


def environments(parser: argparse.ArgumentParser) -> None:
    """Where package environments are built and from which index (ab, bisect, rerun)."""
    parser.add_argument("--env-cache", metavar="DIR",
                        help="where built environments are kept (default: "
                             "$COLLECTOR_ENV_CACHE, else ~/.cache/collector/envs)")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR",
                        help="pip --find-links: a directory (or URL) of wheels (repeatable)")
    parser.add_argument("--index-url", metavar="URL", help="pip --index-url")
    parser.add_argument("--no-index", action="store_true",
                        help="pip --no-index: only --find-links (no network)")
    parser.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver",
                        help="how workers start in each environment")
    host(parser)


def pip_args(args: argparse.Namespace) -> list[str]:
    """pip arguments from --index-url, --no-index and --find-links."""
    found: list[str] = []
    if args.index_url:
        found += ["--index-url", args.index_url]
    if args.no_index:
        found.append("--no-index")
    for link in args.find_links:
        if "://" not in link and not Path(link).is_dir():
            raise command_line_problem("--find-links", f"{link}: no such directory")
        found += ["--find-links", str(Path(link).absolute()) if "://" not in link else link]
    return found


DEFAULT_ROUNDS = 3


def measuring(parser: argparse.ArgumentParser) -> None:
    """The options of a measured comparison of one benchmark (ab, bisect)."""
    parser.add_argument("benchmark", metavar="BENCHMARK",
                        help="the benchmark's name in the config (a glob matching one)")
    parser.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                        help="pick one benchmark of a matrix by a field (repeatable), e.g. "
                             "--where sequence_length=32 --where backend=eager")
    config(parser)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help="rounds of A and B, each the benchmark's own repetitions in "
                             f"fresh processes (default {DEFAULT_ROUNDS}; at least 2 for an "
                             "interval over runs)")
    parser.add_argument("--budget", type=positive, metavar="SECONDS",
                        help="stop after the round that a further round would take past "
                             "this (builds included; never before 2 rounds)")
    parser.add_argument("--metric", help="the metric the verdict and summary use (default: "
                                         "the result's headline metric)")
    threshold(parser)
    environments(parser)


def check_measuring(args: argparse.Namespace) -> None:
    from collector.domain.catalogue import METRICS

    if args.rounds < 1:
        raise command_line_problem("--rounds", "at least 1 round (2 or more for an interval "
                                               "over runs)")
    if args.budget is not None and args.budget <= 0:
        raise command_line_problem("--budget", "expected a positive number of seconds")
    if args.metric is not None and args.metric not in METRICS:
        raise command_line_problem("--metric", f"unknown metric {args.metric!r}")
    checked_threshold(args.threshold)


def environment_cache(args: argparse.Namespace) -> EnvironmentCache:
    from collector.adapters.envs import EnvironmentCache

    return EnvironmentCache(Path(args.env_cache) if args.env_cache else None,
                            pip_args=pip_args(args))
