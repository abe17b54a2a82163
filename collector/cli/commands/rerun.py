"""`collector rerun RUN_ID`: a stored run's results measured again now (optionally in an
environment pinned to the package versions they recorded) and compared with their stored
values, printed as `collector compare` prints.

Exit codes beyond the common ones: 1 a rerun failed or its environment could not be built;
5 with --fail-on-regression, the rerun is judged worse than the stored value.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.cli import options
from collector.cli.common import say, stderr, with_lazy_store
from collector.cli.exits import Exit

if TYPE_CHECKING:
    from collector.domain.history import Store
    from collector.domain.model import BenchmarkResult

NAME = "rerun"
HELP = "measure a stored run's results again now and compare them with the stored values"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="a stored run's id (or a prefix)")
    parser.add_argument("--benchmark", "-b", metavar="NAME",
                        help="only the results whose benchmark name matches this glob")
    parser.add_argument("--same-environment", action="store_true",
                        help="in an environment pinned to the package versions the stored "
                             "result recorded (built with pip, cached)")
    options.config(parser, "configuration file for its storage section")
    options.local_store(parser)
    options.output_format(parser)
    options.fail_on_regression(parser, "the rerun is judged worse than the stored value")
    options.environments(parser)


def run(args: argparse.Namespace) -> int:
    from collector.adapters.measure.scrub import hide_environment

    hide_environment()  # its environment holds the secrets: not for its workers to read
    return with_lazy_store(args, _run)


def _run(args: argparse.Namespace, store: Callable[[], Store]) -> int:
    """`store`: the history of record (opened on first use)."""
    from rich.markup import escape

    from collector.present.comparison import print_comparison
    from collector.present.documents import rerun_document
    from collector.usecases.rerun import rerun

    started = time.monotonic()

    def show(result: BenchmarkResult) -> None:
        state = "ok" if result.status == "ok" else f"failed: {result.failure.message}" \
            if result.failure else "failed"
        say(f"  reran {result.spec.suite}/{result.spec.name}: {state} "
            f"[{time.monotonic() - started:.0f} s]")

    result = rerun(store(), args.run_id, benchmark=args.benchmark,
                   same_environment=args.same_environment,
                   cache=options.environment_cache(args) if args.same_environment else None,
                   host=args.host, start_method=args.isolation, on_result=show)
    where = (" ".join(str(p) for p in result.pins) if result.pins
             else "this interpreter's packages")
    names = (f"stored run {result.run.run_id[:12]} ({result.run.started_at:%Y-%m-%d %H:%M})",
             f"rerun now ({where})")
    lines = [f"reran {len(result.fresh)} result(s) of run {result.run.run_id} in "
             f"{time.monotonic() - started:.0f} s ({where})"]
    print_comparison(result.comparison, names, args.format,
                     rerun_document(result.run, result.pins, result.failure, result.fresh),
                     lines)
    failed = [r for r in result.fresh if r.status != "ok"]
    if result.failure is not None or failed:
        message = (result.failure.message if result.failure is not None
                   else f"{len(failed)} rerun(s) failed")
        stderr().print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                       soft_wrap=True)
        return Exit.FAILED
    if result.comparison.regressed(args.fail_on_regression):
        return Exit.REGRESSION
    return Exit.OK
