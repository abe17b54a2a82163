"""`collector detect --input FILE`: the regression detector over a series from a CSV or
JSON file, the changes printed as JSON (collector-detect v1)."""

from __future__ import annotations

import argparse
import sys

from collector.cli.exits import Exit
from collector.domain.errors import ConfigError, ConfigProblem

NAME = "detect"
HELP = ("run the regression detector over a series from a CSV or JSON file and print the "
        "changes as JSON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", "-i", required=True, metavar="FILE",
                        help="CSV (header: value[,time,samples,contaminated]) or JSON "
                             "(list of {time, value, samples?, contaminated?})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--metric", help="catalogue metric: sets the direction and the "
                                        "defaults (memory metrics use thresholds)")
    which.add_argument("--direction", choices=("lower", "higher"), default=None,
                       help="which way is better (default: lower, as for latency)")
    parser.add_argument("--min-effect", type=float, metavar="FRACTION",
                        help="smallest relative change to report (default 0.03)")


def run(args: argparse.Namespace) -> int:
    from collector.adapters.files import read_text
    from collector.detect.offline import detect_series
    from collector.domain.catalogue import METRICS, Direction
    from collector.domain.detection import DetectorSettings, settings_for
    from collector.present.documents import detect_document, dumps
    from collector.present.series_input import parse_series

    if args.metric is not None:
        if args.metric not in METRICS or METRICS[args.metric].direction is Direction.NEUTRAL:
            raise ConfigError([ConfigProblem("(command line)", None, "--metric",
                                             f"{args.metric!r} is not a metric with a better "
                                             "direction")])
        direction = METRICS[args.metric].direction
        settings = settings_for(args.metric)
    else:
        direction = (Direction.HIGHER_IS_BETTER if args.direction == "higher"
                     else Direction.LOWER_IS_BETTER)
        settings = DetectorSettings()
    if args.min_effect is not None:
        if not 0 <= args.min_effect < 10:
            raise ConfigError([ConfigProblem("(command line)", None, "--min-effect",
                                             "expected a fraction between 0 and 10")])
        from dataclasses import replace

        settings = replace(settings, min_effect=args.min_effect)
    points = parse_series(read_text(args.input, what="series file"), args.input)
    changes = detect_series(points, direction, settings)
    sys.stdout.write(dumps(detect_document(points, changes, direction=direction.value,
                                           settings=settings, source=args.input,
                                           metric=args.metric)))
    if len(points) < settings.min_history:
        from collector.cli.common import say

        say(f"note: {len(points)} points: the detector judges a series from its "
            f"{settings.min_history}th point on (it learns the noise from them), so it "
            "found nothing yet")
    return Exit.OK
