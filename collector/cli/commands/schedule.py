"""`collector schedule`: the suites' next run times."""

from __future__ import annotations

import argparse

from collector.cli import options
from collector.cli.common import stdout
from collector.cli.exits import Exit

NAME = "schedule"
HELP = "list the suites' next run times"
MAX_COUNT = 1000  # a yearly schedule's 1,000th run is in the year 3026; Python stops at 9999


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.config(parser)
    parser.add_argument("--count", type=options.integer_between(1, MAX_COUNT), default=3,
                        help=f"run times per suite (at most {MAX_COUNT:,})")


def run(args: argparse.Namespace) -> int:
    from collector.adapters.config import load_config
    from collector.adapters.scheduling import next_fire_times

    config = load_config(args.config)
    out = stdout()
    table = next_fire_times(config, count=args.count)
    for suite in config.suites:
        if suite.schedule is None:
            out.print(f"{suite.name}: not scheduled (run-once only)", markup=False)
            continue
        what = (f"cron '{suite.schedule.cron}'" if suite.schedule.cron
                else f"every {suite.schedule.interval_s:g} s")
        times = ", ".join(t.isoformat(timespec="seconds") for t in table[suite.name])
        out.print(f"{suite.name}: {what} ({suite.schedule.timezone}); next: {times}",
                  markup=False)
    return Exit.OK
