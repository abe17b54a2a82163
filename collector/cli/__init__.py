"""Command line: one module per command in collector/cli/commands/, registered there in
COMMANDS, each with its NAME, HELP, `add_arguments(parser)` and `run(args) -> exit code`.
Options several commands share are declared once (options.py), the exit codes in one table
(exits.py), what else they share in common.py.

This package is the only place that turns the domain's errors into messages and exit codes.
A command module imports what it needs when it runs, so `collector --help` stays fast; no
module outside this package imports a command module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from collector.cli.commands import COMMANDS
from collector.cli.common import error, print_problems
from collector.cli.exits import Exit, epilog, for_error
from collector.domain.errors import CollectorError, ConfigError
from collector.version import __version__


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="collector", epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark Hugging Face transformers models and keep the results.")
    root.add_argument("--version", action="version", version=f"collector {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print_problems(exc)
        return Exit.USAGE
    except CollectorError as exc:  # every other documented failure kind
        error(str(exc))
        return for_error(exc)
    except KeyboardInterrupt:
        error("interrupted")
        return Exit.INTERRUPTED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
