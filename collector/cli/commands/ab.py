"""`collector ab BENCHMARK --a PINS --b PINS`: one benchmark of the config in two package
environments, interleaved rounds, printed as `collector compare` prints (table, JSON,
Markdown) with the A/B summary line (docs/ab-and-bisect.md).

Exit codes beyond the common ones: 1 the A/B could not be measured (an environment could
not be built, a side's run failed); 5 with --fail-on-regression, B is judged worse.
"""

from __future__ import annotations

import argparse

from collector.cli import options
from collector.cli.common import say, stderr
from collector.cli.exits import Exit
from collector.domain.errors import command_line_problem

NAME = "ab"
HELP = "one benchmark in two package environments, interleaved: ratio, 95%% interval and verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.measuring(parser)
    parser.add_argument("--a", nargs="+", default=[], metavar="PIN",
                        help="side A's pins (the baseline), NAME==VERSION ... (none: this "
                             "interpreter's packages)")
    parser.add_argument("--b", nargs="+", default=[], metavar="PIN",
                        help="side B's pins (the candidate), as --a")
    options.output_format(parser)
    options.fail_on_regression(parser, "B is judged worse")


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from collector.adapters.measure.scrub import hide_environment
    from collector.analysis.ab import ab_summary, side_label
    from collector.domain.packages import parse_pins
    from collector.present.comparison import print_comparison
    from collector.present.documents import ab_document
    from collector.present.progress import AbProgress
    from collector.usecases.ab import rejudged, run_ab
    from collector.usecases.select import select_spec

    hide_environment()  # its environment holds the secrets: not for its workers to read
    options.check_measuring(args)
    a, b = parse_pins(args.a), parse_pins(args.b)
    if not a and not b:
        raise command_line_problem("--a/--b", "pin at least one side, e.g. --a "
                                   "transformers==5.23.0 --b transformers==5.24.0")
    if a == b:
        raise command_line_problem("--a/--b", "the two sides have the same pins")
    spec = select_spec(args.config, args.benchmark, args.where)
    say(f"A/B of {spec.suite}/{spec.label}: A = {side_label(a, b)}, B = {side_label(b, a)}; "
        f"up to {args.rounds} round(s), the first side alternating (A B, B A, ...)")
    progress = AbProgress(stderr())
    result = rejudged(run_ab(spec, a, b, rounds=args.rounds, cache=options.environment_cache(args),
                             host=args.host, start_method=args.isolation,
                             budget_s=args.budget, on_round=progress.round,
                             on_build=progress.built), args.metric, args.threshold)
    summary = ab_summary(result, args.metric)
    hits = ["cached" if hit else "built" for hit in result.cache_hits]
    lines = [summary.text if summary is not None else "A/B: no comparison",
             f"environments: A {hits[0]}, B {hits[1]} in {result.build_s:.1f} s; "
             f"{result.rounds} round(s) ({' '.join(o.upper() for o in result.order)}); "
             f"total {result.elapsed_s:.0f} s"]
    print_comparison(result.comparison, (result.label_a, result.label_b), args.format,
                     ab_document(result, summary), lines)
    if result.failure is not None:
        stderr().print(f"[bold red]error:[/] A/B failed: {escape(result.failure.message)}",
                       highlight=False, soft_wrap=True)
        return Exit.FAILED
    if result.comparison.regressed(args.fail_on_regression):
        return Exit.REGRESSION
    return Exit.OK
