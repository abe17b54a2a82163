"""`collector envs list|prune`: the package environments that A/B runs, bisect and rerun
build (collector/adapters/envs.py), and their upkeep by age and size.

The cache grows by one virtual environment per pin set (a transformers release is about
130 MB beside the reused torch); nothing prunes it behind the user's back, since a prune
while a benchmark runs in an environment would remove it under the worker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.cli import options
from collector.cli.exits import Exit
from collector.domain.errors import command_line_problem

if TYPE_CHECKING:
    from collector.adapters.envs import CacheEntry, EnvironmentCache


NAME = "envs"
HELP = "the cached package environments: list, prune"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="envs_command", metavar="ACTION", required=True)
    for name, text in (("list", "each environment: pins, size, last use"),
                       ("prune", "remove environments unused for a while or past a size")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--env-cache", metavar="DIR",
                            help="the cache (default: $COLLECTOR_ENV_CACHE, else "
                                 "~/.cache/collector/envs)")
        options.output_format(action, ("table", "json"))
        if name == "prune":
            action.add_argument("--max-age-days", type=options.non_negative, metavar="DAYS",
                                help="remove those unused for longer")
            action.add_argument("--max-size-gib", type=options.non_negative, metavar="GIB",
                                help="then remove the least recently used until the rest "
                                     "fit")


def _cache(args: argparse.Namespace) -> EnvironmentCache:
    from collector.adapters.envs import EnvironmentCache

    return EnvironmentCache(Path(args.env_cache) if args.env_cache else None)


def _as_dict(entry: CacheEntry) -> dict[str, Any]:
    return {"key": entry.key, "pins": [str(p) for p in entry.pins],
            "size_bytes": entry.size_bytes, "last_used": entry.last_used.isoformat(),
            "path": str(entry.path), "versions": entry.versions}


def _print(entries: list[CacheEntry], form: str, title: str) -> None:
    if form == "json":
        sys.stdout.write(json.dumps([_as_dict(e) for e in entries], indent=2) + "\n")
        return
    from rich.table import Table

    from collector.present.table import console

    table = Table(title=title)
    for header in ("key", "pins", "size MiB", "last used (UTC)"):
        table.add_column(header, justify="right" if header == "size MiB" else "left")
    for entry in entries:
        table.add_row(entry.key, " ".join(str(p) for p in entry.pins),
                      f"{entry.size_bytes / 2**20:,.1f}", f"{entry.last_used:%Y-%m-%d %H:%M}")
    console().print(table)


def run(args: argparse.Namespace) -> int:
    cache = _cache(args)
    if args.envs_command == "list":
        entries = cache.entries()
        _print(entries, args.format, f"{len(entries)} environments in {cache.root}, "
               f"{sum(e.size_bytes for e in entries) / 2**20:,.1f} MiB")
        return Exit.OK
    if args.max_age_days is None and args.max_size_gib is None:
        raise command_line_problem("prune", "give --max-age-days and/or --max-size-gib")
    for name in ("max_age_days", "max_size_gib"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise command_line_problem("--" + name.replace("_", "-"), "must not be negative")
    removed = cache.prune(
        max_age_days=args.max_age_days,
        max_bytes=None if args.max_size_gib is None else int(args.max_size_gib * 2**30))
    _print(removed, args.format, f"removed {len(removed)} environments, "
           f"{sum(e.size_bytes for e in removed) / 2**20:,.1f} MiB")
    return Exit.OK
