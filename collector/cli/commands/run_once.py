"""`collector run-once`: run benchmark suites now, print the results and keep them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from collector.cli import options
from collector.cli.common import error, open_stores, stderr
from collector.cli.exits import Exit
from collector.domain.errors import OutputError

if TYPE_CHECKING:
    from rich.console import Console

    from collector.adapters.store import Stores
    from collector.domain.model import RunResult
    from collector.usecases.outcome import Outcome

NAME = "run-once"
HELP = "run benchmark suites now and print the results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.config(parser)
    parser.add_argument("--suite", "-s", action="append", metavar="NAME",
                        help="run only this suite (repeatable)")
    parser.add_argument("--benchmark", "-b", action="append", metavar="PATTERN",
                        help="run only benchmarks whose name matches this glob (repeatable)")
    parser.add_argument("--output", "-o", metavar="FILE.json",
                        help="also write all results to this file (versioned JSON format)")
    options.output_format(parser, ("table", "json"),
                          "print a table (default) or the JSON results document")
    parser.add_argument("--wide", action="store_true",
                        help="the wide table: every metric, the task, repetitions and the "
                             "detector's MDE (the default on terminals of 160 columns or more)")
    options.isolation(parser)
    options.host(parser)
    parser.add_argument("--no-progress", action="store_true", help="no live progress on stderr")
    parser.add_argument("--no-confirm", action="store_true",
                        help="run no confirmation runs for changes this run makes suspected "
                             "(they then wait for later scheduled runs)")
    parser.add_argument("--push", metavar="URL", default=os.environ.get("COLLECTOR_PUSHGATEWAY"),
                        help="push each run's metrics to this Pushgateway (default: "
                             "$COLLECTOR_PUSHGATEWAY; user:password@ in it is sent as basic "
                             "auth, never shown); a gateway that is down is a warning")
    options.local_store(parser)


def run(args: argparse.Namespace) -> int:
    from collector.adapters.config import load_config
    from collector.adapters.measure.scrub import hide_environment
    from collector.present.progress import RichReporter
    from collector.usecases.cycle import run_once
    from collector.usecases.select import Selection

    hide_environment()  # its environment holds the secrets: not for its workers to read
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"cannot write results to {output}: directory "
                          f"{output.parent} does not exist")
    config = load_config(args.config)
    err = stderr()
    for note in config.notes:  # e.g. more threads than this host has cores
        err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    reporter = None if args.no_progress else RichReporter(err)
    stores = open_stores(config.storage, args.local_store)
    try:
        _warn_if_serving(stores, err)
        outcome = run_once(
            config, selection=Selection(args.suite, args.benchmark), reporter=reporter,
            start_method=args.isolation, host=args.host, stores=stores,
            confirm=not args.no_confirm)
        return _report(args, outcome, stores, output, err,
                       busy_fraction=config.detection.contaminated_cpu_fraction)
    finally:
        stores.close()


def _warn_if_serving(stores: Stores, err: Console) -> None:
    """A `collector serve` on this store measures on this machine too: both runs would
    measure the other's load (serve itself refuses a second serve; this is a warning)."""
    from collector.adapters.locks import serving_pid

    pid = serving_pid(stores.local.path)
    if pid is not None:
        err.print(f"warning: a `collector serve` (pid {pid}) is measuring with the local store "
                  f"{stores.local.path}: its benchmarks and these may run at the same time, "
                  "and each would measure the other's load; stop it first for clean numbers",
                  highlight=False, markup=False, soft_wrap=True)


def _report(args: argparse.Namespace, outcome: Outcome, stores: Stores,
            output: Path | None, err: Console, *, busy_fraction: float) -> int:
    from rich.markup import escape

    from collector.adapters.files import write_atomic
    from collector.present.documents import dumps, results_document
    from collector.present.table import (
        WIDE_FROM,
        console,
        failures_text,
        previous_table,
        results_table,
    )
    from collector.usecases.previous import against_previous, detectable_effects

    runs: list[RunResult] = outcome.runs
    moved = against_previous(runs, stores)
    document = results_document(runs + outcome.confirmation_runs)
    # Derived, as the table's: each result against its series' previous runs.
    document["against_previous"] = [row.as_dict() for row in moved]
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        out = console()
        wide = args.wide or out.width >= WIDE_FROM
        out.print(results_table(runs, detectable_effects(stores), wide=wide,
                                busy_fraction=busy_fraction))
        for part in previous_table(moved):  # lines (data in them escaped) and a table
            out.print(part)
    failures = failures_text(runs)
    for line in failures:
        err.print(f"[red]failed:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if output is not None:
        write_atomic(output, dumps(document))
        err.print(f"results written to {output}", highlight=False, markup=False)
    if args.push:
        _push(args.push, runs, err)
    if outcome.store_error is not None:
        error(f"results were not stored: {outcome.store_error}")
        return Exit.STORE
    err.print(f"stored in {stores.local.path}", highlight=False, markup=False)
    if outcome.sync is not None and outcome.sync.ok:
        remote = stores.remote()
        err.print(f"forwarded {outcome.sync.delivered} run(s) to {remote.redacted_url} "
                  f"(mode: {remote.mode})", highlight=False, markup=False)
    if outcome.sync is not None and not outcome.sync.ok:
        err.print(f"[yellow]warning:[/] {outcome.sync.pending} run(s) wait in the outbox for "
                  f"PostgreSQL: {escape(outcome.sync.error or '')}; `collector db sync` "
                  "forwards them", highlight=False, soft_wrap=True)
    if outcome.sync is not None and outcome.sync.quarantined:
        err.print(f"[yellow]warning:[/] {outcome.sync.quarantined} run(s) are quarantined in "
                  "the outbox (PostgreSQL refused their data); `collector db status` says why, "
                  "`collector db retry-quarantined` delivers them after a fix",
                  highlight=False, soft_wrap=True)
    _detection(outcome, err)
    return Exit.FAILED if failures else Exit.OK


def _detection(outcome: Outcome, err: Console) -> None:
    """One line per change whose state moved in this run (details: `collector
    regressions`)."""
    from rich.markup import escape

    from collector.present.text import ab_line, detection_line

    if outcome.detection_error is not None:
        err.print(f"[yellow]warning:[/] regression detection did not run: "
                  f"{escape(outcome.detection_error)}", highlight=False, soft_wrap=True)
    if outcome.detection is None:
        return
    judged = {r.regression_id: r for r in outcome.confirmed}
    for seen in outcome.detection.new + outcome.detection.changed:
        record = judged.pop(seen.regression_id, seen)
        colour = "red" if record.kind == "regression" and record.status == "open" else "cyan"
        kind, _, rest = detection_line(record).partition(":")
        err.print(f"[{colour}]{escape(kind)}:[/]{escape(rest)} [dim]id {record.regression_id}[/]",
                  highlight=False, soft_wrap=True)
        line = ab_line(record.ab)
        if line is not None:
            err.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def _push(gateway: str, runs: list[RunResult], err: Console) -> None:
    """Push each run; the gateway's URL is only ever shown without its user-info, which
    goes to the gateway as HTTP basic auth (`http://user:password@host`; a token alone,
    `http://TOKEN@host`, is the user with an empty password)."""
    import functools
    import http.client

    from prometheus_client.exposition import basic_auth_handler

    from collector.adapters.host import capture_host
    from collector.adapters.redact import redact_url, remember_urls, scrub, split_credentials
    from collector.present.exposition import push_run
    from collector.version import __version__

    remember_urls(gateway)  # whatever urllib or the gateway quotes back: no secret
    shown = redact_url(gateway)
    target, user, password = split_credentials(gateway)
    handler = None if user is None else functools.partial(
        basic_auth_handler, username=user, password=password)
    env = capture_host()
    info = {"version": __version__, "torch": env.torch_version or "",
            "transformers": env.transformers_version or ""}
    for run_ in runs:
        try:
            push_run(run_, target, build_info=info, handler=handler)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # URLError, connection errors, a malformed URL: the run is still stored
            err.print(f"warning: could not push suite {run_.suite} to {shown}: "
                      f"{scrub(str(exc))}; the run is stored all the same", highlight=False,
                      markup=False, soft_wrap=True)
        else:
            err.print(f"pushed suite {run_.suite} to {shown}", highlight=False, markup=False)
