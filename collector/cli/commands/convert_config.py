"""`collector convert-config OLD.yml`: a file in the transformers benchmark module's format
as the collector's own configuration, each value commented with where it came from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.cli.common import say
from collector.cli.exits import Exit

NAME = "convert-config"
HELP = "write a transformers benchmark module config (benchmarks:) in the collector's format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="OLD.yml",
                        help="a config of the transformers benchmark module")
    parser.add_argument("--output", "-o", metavar="NEW.yml",
                        help="write it here (default: standard output)")
    parser.add_argument("--synthetic", action="store_true",
                        help="a tiny synthetic model of the same architecture in place of "
                             "each Hub model of a known family, to try it offline")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"),
                        help="this device for every benchmark, whatever the file says")


def run(args: argparse.Namespace) -> int:
    from collector.adapters.config import legacy, load_document, parse_config
    from collector.adapters.files import write_atomic
    from collector.domain.errors import ConfigError, ConfigProblem

    root = parse_config(args.file)
    load_document(root, args.file)  # every problem of the old file, as check-config says it
    translation = legacy.translate(root, args.file, synthetic=args.synthetic,
                                   device=args.device)
    if translation is None:
        raise ConfigError([ConfigProblem(args.file, 1, "", "already in the collector's own "
                                         "format (no top-level benchmarks: list of "
                                         "model_name_or_path entries): nothing to convert")])
    for note in translation.notes:
        say(f"note: {note}")
    text = legacy.render(translation)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(Path(args.output), text, what="the converted configuration")
        say(f"written to {args.output}")
    return Exit.OK
