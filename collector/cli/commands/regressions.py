"""`collector regressions ...`: list detected changes; acknowledge, accept as baseline,
scan every stored series now."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from collector.cli import options
from collector.cli.common import open_stores, optional_config
from collector.cli.exits import Exit
from collector.domain.errors import ConfigError, ConfigProblem, NotFoundError

if TYPE_CHECKING:
    from collector.adapters.config import DetectionSettings
    from collector.domain.history import Regression, Store
    from collector.domain.series import SeriesInfo

NAME = "regressions"
HELP = "list detected changes; acknowledge, accept as baseline, scan"
KINDS = ("regression", "improvement", "host_drift", "outputs_changed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list detected changes (the default action)")
    ack = actions.add_parser("ack", help="acknowledge a regression: it stops paging and "
                                         "still resolves by itself")
    ack.add_argument("id", help="regression id (or a unique prefix of at least 4 characters)")
    ack.add_argument("--by", default=os.environ.get("USER"), help="who (default: $USER)")
    ack.add_argument("--note", help="why, for the record")
    baseline = actions.add_parser("baseline", help="accept a series' metric's change as "
                                                   "expected: detection restarts from it")
    baseline.add_argument("series", help="series id (or a unique prefix)")
    baseline.add_argument("metric", help="metric name, e.g. latency_p50_seconds")
    baseline.add_argument("--reason", help="why the change is expected")
    actions.add_parser("scan", help="run detection over every stored series now")
    for each in (parser, listing, ack, baseline, actions.choices["scan"]):
        options.config(each, "configuration file for its storage section (optional)")
        options.local_store(each)
    for each in (parser, listing):
        each.add_argument("--status", action="append", metavar="STATUS",
                          help="suspected, open, acknowledged, resolved, expected, "
                               "dismissed (repeatable; default: the active ones)")
        each.add_argument("--all", action="store_true", help="every status")
        each.add_argument("--series", help="series id or prefix")
        each.add_argument("--metric", help="metric name")
        each.add_argument("--model", help="model label")
        each.add_argument("--host", help="host label")
        each.add_argument("--kind", choices=KINDS)
        options.output_format(each, ("table", "json"))


def run(args: argparse.Namespace) -> int:
    from collector.adapters.config import DetectionSettings, StorageSettings

    config = optional_config(args.config)
    stores = open_stores(config.storage if config else StorageSettings(), args.local_store)
    try:
        return _dispatch(args, stores.primary(),
                         config.detection if config else DetectionSettings())
    finally:
        stores.close()


def _dispatch(args: argparse.Namespace, store: Store, detection: DetectionSettings) -> int:
    action = args.action or "list"
    if action == "ack":
        return _ack(store, args)
    if action == "baseline":
        return _baseline(store, args)
    if action == "scan":
        return _scan(store, detection)
    return _list(store, args)


def _console() -> Any:
    from collector.present.table import console

    out = console()
    out.soft_wrap = True
    return out


def _find_series(store: Store, prefix: str) -> SeriesInfo:
    matches = [s for s in store.list_series() if s.series_id.startswith(prefix)]
    if len(matches) != 1:
        raise NotFoundError(f"no series {prefix!r}" if not matches else
                            f"series prefix {prefix!r} is ambiguous: "
                            f"{', '.join(s.series_id for s in matches[:5])}")
    return matches[0]


def _find_regression(store: Store, prefix: str) -> Regression:
    if len(prefix) < 4:
        raise NotFoundError("give at least 4 characters of the regression id")
    matches = [r for r in store.regressions() if r.regression_id.startswith(prefix)]
    if len(matches) != 1:
        raise NotFoundError(f"no regression {prefix!r}" if not matches else
                            f"regression prefix {prefix!r} is ambiguous")
    return matches[0]


def _ack(store: Store, args: argparse.Namespace) -> int:
    from dataclasses import replace
    from datetime import datetime, timezone

    record = _find_regression(store, args.id)
    if record.status not in ("suspected", "open", "acknowledged"):
        raise NotFoundError(f"regression {record.regression_id} is {record.status}: only "
                            "active ones can be acknowledged")
    store.save_regression(replace(record, status="acknowledged",
                                  acknowledged_at=datetime.now(timezone.utc),
                                  acknowledged_by=args.by, note=args.note or record.note))
    _console().print(f"acknowledged {record.regression_id}: {record.metric} "
                     f"{record.relative_change:+.1%} (it resolves by itself when the level "
                     "returns)", markup=False)
    return 0


def _baseline(store: Store, args: argparse.Namespace) -> int:
    from collector.domain.catalogue import METRICS
    from collector.usecases.scan import accept_as_baseline

    if args.metric not in METRICS:
        raise ConfigError([ConfigProblem("(command line)", None, "metric",
                                         f"unknown metric {args.metric!r}")])
    info = _find_series(store, args.series)
    try:
        baseline, expected = accept_as_baseline(store, info.series_id, args.metric,
                                                reason=args.reason)
    except LookupError as exc:
        raise NotFoundError(str(exc)) from None
    _console().print(f"baseline for {info.series_id} {args.metric} from "
                     f"{baseline.since.isoformat()}; {len(expected)} change(s) marked "
                     "expected", markup=False)
    return 0


def _scan(store: Store, detection: DetectionSettings) -> int:
    from collector.usecases.scan import ScanSettings, scan

    settings = ScanSettings.from_config(detection)
    report = scan(store, settings=settings)
    _console().print(f"scanned {report.series} series ({report.metrics} metrics): "
                     f"{len(report.new)} new change(s), {len(report.changed)} changed "
                     "status", markup=False)
    for record in report.new + report.changed:
        _console().print(f"  {record.regression_id} {record.status:<12} {record.kind:<11} "
                         f"{record.metric} {record.relative_change:+.1%}", markup=False)
    return 0


def _list(store: Store, args: argparse.Namespace) -> int:
    from collector.domain.history import ACTIVE_STATUSES

    statuses = None if args.all else tuple(args.status) if args.status else ACTIVE_STATUSES
    try:
        records = store.regressions(statuses, metric=args.metric)
    except ValueError as exc:
        raise ConfigError([ConfigProblem("(command line)", None, "--status", str(exc))]) from None
    series = {s.series_id: s for s in store.list_series()}
    rows = []
    for record in records:
        info = series.get(record.series_id)
        if info is None or (args.series and not record.series_id.startswith(args.series)):
            continue
        if (args.model and info.model != args.model) or (args.host and info.host != args.host):
            continue
        if args.kind and record.kind != args.kind:
            continue
        rows.append((record, info))
    if args.format == "json":
        from collector.present.documents import dumps, regression_entry

        sys.stdout.write(dumps([regression_entry(r, i) for r, i in rows]))
        return Exit.OK
    console = _console()
    console.print(_table(rows))
    for line in _ab_lines(rows):
        console.print(line, markup=False)
    if not rows:
        console.print(_empty(store), markup=False)
    return 0


def _empty(store: Store) -> str:
    """What an empty list means: nothing changed, or too few runs to judge yet."""
    from collector.domain.detection import DetectorSettings

    needed = DetectorSettings().min_history
    runs = {a.series_id: a.results.get("ok", 0) for a in store.series_activity()}
    judged = sum(count >= needed for count in runs.values())
    if not runs:
        return "No change: nothing stored yet."
    text = (f"No change found. The detector judges a series from its {needed}th scheduled "
            f"success on (it learns the series' noise from those runs; about a day at an "
            f"hourly schedule): {judged} of {len(runs)} series have that many")
    short = [count for count in runs.values() if count < needed]
    if short:
        text += f"; the others have {min(short)} to {max(short)}"
    return text + "."


def _table(rows: list[tuple[Regression, SeriesInfo]]) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(rows)} change(s)")
    for column in ("id", "status", "kind", "series", "metric", "change", "before -> after",
                   "since", "what changed"):
        table.add_column(column, overflow="fold")
    for record, info in rows:
        table.add_row(record.regression_id, record.status, record.kind,
                      f"{info.benchmark} ({info.host}, {info.series_id[:8]})", record.metric,
                      f"{record.relative_change:+.1%}",
                      f"{record.before_value:.4g} -> {record.after_value:.4g}",
                      record.start_time.strftime("%Y-%m-%d %H:%M"),
                      record.attribution or "-")
    return table


def _ab_lines(rows: list[tuple[Regression, SeriesInfo]]) -> list[str]:
    """One line per change that has an A/B (the automatic A/B of its package versions),
    under the table: an A/B line is too long for a column."""
    from collector.present.text import ab_line

    return [f"{record.regression_id} {record.metric}: {line}" for record, _ in rows
            if (line := ab_line(record.ab)) is not None]
