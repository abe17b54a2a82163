"""`collector bisect BENCHMARK --package NAME --good V --bad V`: the first released version
of a package (or of several) that makes a benchmark worse (docs/ab-and-bisect.md).

Exit codes beyond the common ones: 1 the bad end could not be measured; 6 no effect (the
bad version is not worse than the good one).
"""

from __future__ import annotations

import argparse
import sys
import time

from collector.cli import options
from collector.cli.common import say, stderr
from collector.cli.exits import Exit

NAME = "bisect"
HELP = "the first released version of a package that makes a benchmark worse"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.measuring(parser)
    parser.add_argument("--package", action="append", default=[], metavar="NAME",
                        help="a package that changed (repeatable, each with --good/--bad)")
    parser.add_argument("--good", action="append", default=[], metavar="VERSION",
                        help="the package's last known good version")
    parser.add_argument("--bad", action="append", default=[], metavar="VERSION",
                        help="the package's known bad version")
    options.output_format(parser, ("table", "json"),
                          "steps and result as text (default) or one JSON document")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from collector.adapters.measure.scrub import hide_environment
    from collector.analysis.bisect import Step, package_ranges
    from collector.present.documents import bisect_document, dumps
    from collector.present.progress import AbProgress
    from collector.usecases.bisect import bisect_benchmark, versions_between
    from collector.usecases.select import select_spec

    hide_environment()  # its environment holds the secrets: not for its workers to read
    options.check_measuring(args)
    ranges = package_ranges(args.package, args.good, args.bad)
    spec = select_spec(args.config, args.benchmark, args.where)
    cache = options.environment_cache(args)
    versions = versions_between(ranges, pip_args=options.pip_args(args))
    for pack in ranges:
        say(f"{pack.name}: {len(versions[pack.name])} versions from {pack.good} to "
            f"{pack.bad}: {', '.join(versions[pack.name])}")
    good = " ".join(p.pin(p.good) for p in ranges)
    progress = AbProgress(stderr())

    def testing(label: str) -> None:
        say(f"testing {label} against {good} ...")
        progress.last = time.monotonic()

    def show(step: Step) -> None:
        say(f"[{step.role}] {step.text}", style="red" if step.verdict == "worse" else None)

    outcome = bisect_benchmark(spec, ranges, versions, rounds=args.rounds, cache=cache,
                               host=args.host, start_method=args.isolation,
                               budget_s=args.budget, metric=args.metric,
                               threshold=args.threshold, on_test=testing, on_step=show,
                               on_round=progress.round, on_build=progress.built)
    if args.format == "json":
        sys.stdout.write(dumps(bisect_document(f"{spec.suite}/{spec.name}", outcome)))
    else:
        Console(highlight=False, soft_wrap=True).print(outcome.text, markup=False)
    if outcome.outcome == "no_effect":
        return Exit.NO_EFFECT
    if outcome.outcome == "bad_failed":
        return Exit.FAILED
    return Exit.OK
