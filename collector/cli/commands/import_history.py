"""`collector import`: other tools' benchmark history into the store of record.

    collector import results/*.json                      # recognised by their content
    collector import --format guidellm report.json
    collector import --module-database-env MODULE_DB_URL # the benchmark module's tables

Files: optimum-benchmark reports, transformers benchmark_v2 results, `vllm bench serve`
results, guidellm reports, the transformers benchmark module's CSV exports
(collector/adapters/imports/). Its database's URL is read from an environment variable or a
file, never from the command line (it holds a password). Importing twice adds nothing; a
malformed record stops the import before anything is written, with its file and record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.cli import options
from collector.cli.common import open_stores, optional_config, say
from collector.cli.exits import Exit
from collector.domain.errors import command_line_problem, one_line

NAME = "import"
HELP = ("import benchmark history from other tools (optimum-benchmark, benchmark_v2, "
        "vllm bench serve, guidellm, the transformers benchmark module)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from collector.adapters.imports import FORMATS

    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="result files (or a directory of the module's CSV exports)")
    parser.add_argument("--format", dest="import_format",
                        choices=tuple(f.name for f in FORMATS),
                        help="the files' format (default: recognised by content): "
                             + "; ".join(f"{f.name}: {f.what}" for f in FORMATS))
    database = parser.add_mutually_exclusive_group()
    database.add_argument("--module-database-env", metavar="VAR",
                          help="environment variable holding the PostgreSQL URL of the "
                               "transformers benchmark module's database")
    database.add_argument("--module-database-file", metavar="FILE",
                          help="file holding that URL (a Docker or Kubernetes secret)")
    parser.add_argument("--host", type=options.host_name,
                        help="the host of points whose source does not name one (default: "
                             "'imported')")
    parser.add_argument("--no-detect", action="store_true",
                        help="do not scan the imported series for changes afterwards")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and check everything, write nothing")
    options.config(parser, "configuration file for its storage and detection sections "
                           "(optional)")
    options.local_store(parser)


def _database_url(args: argparse.Namespace) -> str | None:
    import os

    from collector.adapters.files import MAX_SECRET_BYTES, ReadFailure, decode, read_bounded
    from collector.adapters.redact import normalise_url, remember_url

    if args.module_database_env:
        raw = os.environ.get(args.module_database_env) or ""
        if not raw.strip():
            raise command_line_problem("--module-database-env",
                                       f"${args.module_database_env} is not set")
    elif args.module_database_file:
        try:
            raw = decode(read_bounded(args.module_database_file, MAX_SECRET_BYTES))
        except ReadFailure as failure:
            raise command_line_problem("--module-database-file",
                                       f"cannot read {args.module_database_file}: "
                                       f"{failure.reason}") from None
    else:
        return None
    remember_url(raw)  # scrubbed from every message this process prints
    return normalise_url(raw)


def run(args: argparse.Namespace) -> int:
    from collector.adapters.config import DetectionSettings, StorageSettings
    from collector.usecases.importing import import_runs, read_sources
    from collector.usecases.scan import ScanSettings

    url = _database_url(args)
    if not args.paths and url is None:
        raise command_line_problem("PATH", "nothing to import: give result files, or "
                                           "--module-database-env/--module-database-file")
    database_points = None
    if url is not None:
        from functools import partial

        from collector.adapters.imports.module_tables import read_database

        database_points = partial(read_database, url)
    runs = read_sources(args.paths, format_name=args.import_format,
                        database_points=database_points, host=args.host)
    points = sum(len(run.results) for run in runs)
    if args.dry_run:
        say(f"checked {points} point(s) in {len(runs)} run(s); nothing written (--dry-run)")
        return Exit.OK
    config = optional_config(args.config)
    stores = open_stores(config.storage if config else StorageSettings(), args.local_store)
    try:
        store = stores.primary()
        detection = config.detection if config else DetectionSettings()
        report = import_runs(store, runs, scan_settings=ScanSettings.from_config(detection),
                             detect=not args.no_detect,
                             pricing=config.pricing if config else None)
    finally:
        stores.close()
    tools = ", ".join(f"{n} from {origin}" for origin, n in report.by_origin.items())
    span = (f", {report.first:%Y-%m-%d} to {report.last:%Y-%m-%d}"
            if report.first and report.last else "")
    lines = [f"imported {report.points} point(s) of {report.series} series "
             f"({tools}{span}): {report.added} new run(s), {report.runs - report.added} "
             "already stored"]
    lines += [f"  {change.status} {change.kind} {change.series_id} {change.metric} "
              f"{change.relative_change:+.1%}"
              + (f": {change.attribution}" if change.attribution else "")
              for change in report.changes]
    sys.stdout.write("".join(one_line(line) + "\n" for line in lines))
    return Exit.OK
