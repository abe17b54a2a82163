"""Command line. The only module that turns domain errors into messages and exit codes.

Exit codes (also in the README):
  0  every benchmark succeeded
  1  one or more benchmarks failed (the others ran; all results are printed and written)
  2  invalid configuration or command line
  3  results could not be written to --output
  4  a history store failed: the local store could not keep the runs, or (db commands)
     the database could not be reached, migrated or synced; runs wait in the outbox
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from collector.cli import (
    ab as cli_ab,
)
from collector.cli import (
    compare as cli_compare,
)
from collector.cli import (
    envs as cli_envs,
)
from collector.cli import (
    regressions as cli_regress,
)
from collector.cli import (
    report as cli_report,
)
from collector.domain.errors import (
    CollectorError,
    ConfigError,
    ConfigProblem,
    OutputError,
    PermanentStoreError,
    StoreError,
)
from collector.version import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from collector.adapters.config import Config, StorageSettings
    from collector.adapters.store import Stores
    from collector.analysis.compare import Row
    from collector.domain.history import Regression, Store
    from collector.domain.model import RunResult
    from collector.usecases.cycle import Outcome

EXIT_OK = 0
EXIT_BENCHMARK_FAILED = 1
EXIT_USAGE = 2
EXIT_OUTPUT = 3
EXIT_STORE = 4
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = "configs/default.yml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="Benchmark Hugging Face transformers models and keep the results.")
    parser.add_argument("--version", action="version", version=f"collector {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run-once", help="run benchmark suites now and print the results")
    run.add_argument("--config", "-c", default=os.environ.get("COLLECTOR_CONFIG", DEFAULT_CONFIG),
                     help=f"configuration file (default: $COLLECTOR_CONFIG or {DEFAULT_CONFIG})")
    run.add_argument("--suite", "-s", action="append", metavar="NAME",
                     help="run only this suite (repeatable)")
    run.add_argument("--benchmark", "-b", action="append", metavar="PATTERN",
                     help="run only benchmarks whose name matches this glob (repeatable)")
    run.add_argument("--output", "-o", metavar="FILE.json",
                     help="also write all results to this file (versioned JSON format)")
    run.add_argument("--format", choices=("table", "json"), default="table",
                     help="print a table (default) or the JSON results document")
    run.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver",
                     help="how workers start: fork from a server that imported torch once "
                          "(default), or a brand new interpreter per benchmark")
    run.add_argument("--host", help="host name recorded in results (default: this machine's)")
    run.add_argument("--no-progress", action="store_true", help="no live progress on stderr")
    run.add_argument("--no-confirm", action="store_true",
                     help="run no confirmation runs for changes this run makes suspected "
                          "(they then wait for later scheduled runs)")
    run.add_argument("--push", metavar="URL", default=os.environ.get("COLLECTOR_PUSHGATEWAY"),
                     help="push each run's metrics to this Pushgateway (default: "
                          "$COLLECTOR_PUSHGATEWAY); a gateway that is down is a warning")
    run.add_argument("--local-store", metavar="PATH",
                     help="SQLite file for the local store and outbox (default: "
                          "storage.local_path, else $COLLECTOR_DATA_DIR/collector.db, else "
                          "~/.local/share/collector/collector.db)")

    db = commands.add_parser("db", help="the history database: migrate, status, sync")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, text in (("migrate", "apply pending schema migrations (local and PostgreSQL)"),
                       ("status", "show the storage mode, migrations and outbox backlog"),
                       ("sync", "forward runs waiting in the outbox to PostgreSQL"),
                       ("retry-quarantined", "put runs PostgreSQL refused back in line "
                                             "(after a fix) and sync"),
                       ("create-reader", "create or update a read-only log-in role for "
                                         "dashboards; password from "
                                         "$COLLECTOR_READER_PASSWORD"),
                       ("create-writer", "create or update a log-in role for collectors: "
                                         "rows only, no DDL; password from "
                                         "$COLLECTOR_WRITER_PASSWORD")):
        action = db_commands.add_parser(name, help=text)
        action.add_argument("--config", "-c",
                            default=os.environ.get("COLLECTOR_CONFIG", DEFAULT_CONFIG),
                            help="configuration file for its storage section (optional)")
        action.add_argument("--local-store", metavar="PATH", help="SQLite file of the local "
                                                                  "store")
        if name in ("create-reader", "create-writer"):
            action.add_argument("name", help="role name, e.g. grafana or collector_app")

    serve = commands.add_parser("serve", help="run suites on their schedules and serve "
                                             "/metrics for Prometheus")
    serve.add_argument("--config", "-c",
                       default=os.environ.get("COLLECTOR_CONFIG", DEFAULT_CONFIG))
    serve.add_argument("--port", type=int, help="port for /metrics and /healthz (default: "
                                                "serve.port, 9464; 0 picks a free one)")
    serve.add_argument("--run-at-start", action="store_true",
                       help="run every scheduled suite once at start-up")
    serve.add_argument("--local-store", metavar="PATH", help="SQLite file of the local store")
    serve.add_argument("--host", help="host name recorded in results")
    serve.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver")

    schedule = commands.add_parser("schedule", help="list the suites' next run times")
    schedule.add_argument("--config", "-c",
                          default=os.environ.get("COLLECTOR_CONFIG", DEFAULT_CONFIG))
    schedule.add_argument("--count", type=int, default=3, help="run times per suite")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", help="configuration file")
    cli_regress.add_parsers(commands, DEFAULT_CONFIG)
    cli_compare.add_parser(commands, DEFAULT_CONFIG)
    cli_report.add_parser(commands, DEFAULT_CONFIG)
    cli_ab.add_parsers(commands, DEFAULT_CONFIG)
    cli_envs.add_parser(commands)
    return parser


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, emoji=False)  # `file:100:` is not the :100: emoji


def _error(message: str) -> None:
    from rich.markup import escape

    _stderr().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _print_problems(error: ConfigError) -> None:
    console = _stderr()
    console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    for problem in error.problems:
        console.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)


def _check_config(args: argparse.Namespace) -> int:
    from collector.adapters.config import load_config

    config = load_config(args.file)
    out = _stderr()
    for note in config.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    from rich.console import Console

    console = Console()
    console.print(f"{config.path}: OK, {len(config.suites)} suite(s), "
                  f"{config.benchmark_count} benchmark(s)", highlight=False, markup=False)
    for suite in config.suites:
        console.print(f"  {suite.name}: {len(suite.benchmarks)} benchmark(s)", highlight=False,
                      markup=False)
    return EXIT_OK


def _run_once(args: argparse.Namespace) -> int:
    from collector.adapters.config import load_config
    from collector.present.table import RichReporter
    from collector.usecases.cycle import Selection, run_once

    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"cannot write results to {output}: directory "
                          f"{output.parent} does not exist")
    config = load_config(args.config)
    err = _stderr()
    reporter = None if args.no_progress else RichReporter(err)
    stores = _open_stores(config.storage, args.local_store)
    try:
        outcome = run_once(
            config, selection=Selection(args.suite, args.benchmark), reporter=reporter,
            start_method=args.isolation, host=args.host, stores=stores,
            confirm=not args.no_confirm)
        return _report_run(args, outcome, stores, output, err)
    finally:
        stores.close()


def _report_run(args: argparse.Namespace, outcome: Outcome, stores: Stores,
                output: Path | None, err: Console) -> int:
    from rich.console import Console
    from rich.markup import escape

    from collector.domain.model import results_document
    from collector.present.results_file import write_document
    from collector.present.table import failures_text, previous_table, results_table

    runs: list[RunResult] = outcome.runs
    document = results_document(runs + outcome.confirmation_runs)
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        console = Console(width=200 if not sys.stdout.isatty() else None)
        console.print(results_table(runs, _detectable_effects(stores)))
        moved = _against_previous(runs, stores)
        if moved:
            console.print(previous_table(moved))
    failures = failures_text(runs)
    for line in failures:
        err.print(f"[red]failed:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if output is not None:
        write_document(output, document)
        err.print(f"results written to {output}", highlight=False, markup=False)
    if args.push:
        _push(args.push, runs, err)
    if outcome.store_error is not None:
        _error(f"results were not stored: {outcome.store_error}")
        return EXIT_STORE
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
    _report_detection(outcome, err)
    return EXIT_BENCHMARK_FAILED if failures else EXIT_OK


PREVIOUS_RUNS = 10  # how many of a series' previous runs a run-once result is read against


def _against_previous(runs: list[RunResult], stores: Stores) -> list[Row]:
    """Each successful result's headline metric against its series' previous runs in the
    history of record (nothing when it cannot be read now: the table stands alone)."""
    from collector.analysis.compare import DEFAULT_RUN_NOISE, against_history
    from collector.domain.catalogue import headline
    from collector.domain.errors import StoreError

    rows = []
    try:
        store = stores.primary()
        # The detector's learnt run-to-run noise of each series, where it has learnt it.
        noise = {(s.series_id, s.metric): s.noise for s in store.detection_states()}
        for run in runs:
            for result in run.results:
                if result.status != "ok":
                    continue
                metric = headline(result.metrics)
                history = store.series_history(result.series_id, PREVIOUS_RUNS + 1)
                by_run = history.values.get(metric, {})
                previous = [by_run[p.run_id] for p in history.runs
                            if p.run_id != run.run_id and p.run_id in by_run][-PREVIOUS_RUNS:]
                row = against_history(result, metric, previous, run_noise=noise.get(
                    (result.series_id, metric), DEFAULT_RUN_NOISE))
                if row is not None:
                    rows.append(row)
    except StoreError:
        return rows
    return rows


def _detectable_effects(stores: Stores) -> dict[tuple[str, str], float]:
    """(series, metric) -> the smallest change the detector pages on within one cycle, for
    the table; empty when the history of record cannot be read now."""
    from collector.domain.errors import StoreError

    try:
        states = stores.primary().detection_states()
    except StoreError:
        return {}
    return {(s.series_id, s.metric): (s.confirm_min_detectable_effect
                                      or s.min_detectable_effect) for s in states}


def _report_detection(outcome: Outcome, err: Console) -> None:
    """One line per change whose state moved in this run (details: `collector
    regressions`)."""
    from rich.markup import escape

    from collector.domain.history import ab_line

    if outcome.detection_error is not None:
        err.print(f"[yellow]warning:[/] regression detection did not run: "
                  f"{escape(outcome.detection_error)}", highlight=False, soft_wrap=True)
    if outcome.detection is None:
        return
    judged = {r.regression_id: r for r in outcome.confirmed}
    for seen in outcome.detection.new + outcome.detection.changed:
        record = judged.pop(seen.regression_id, seen)
        colour = "red" if record.kind == "regression" and record.status == "open" else "cyan"
        why = f" ({record.attribution})" if record.attribution else ""
        err.print(f"[{colour}]{record.kind} {record.status}:[/] {escape(record.metric)} "
                  f"{record.relative_change:+.1%} on series {record.series_id}"
                  f"{escape(why)}{escape(_confirmation_text(record))} "
                  f"[dim]id {record.regression_id}[/]", highlight=False, soft_wrap=True)
        line = ab_line(record.ab)
        if line is not None:
            err.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def _confirmation_text(record: Regression) -> str:
    if not record.confirmation:
        return ""
    c = record.confirmation
    return f" [{c.get('verdict')} by {c.get('points')} confirmation point(s)]"


def _push(gateway: str, runs: list[RunResult], err: Console) -> None:
    from collector.adapters.host import capture_host
    from collector.present.exposition import push_run

    env = capture_host()
    info = {"version": __version__, "torch": env.torch_version or "",
            "transformers": env.transformers_version or ""}
    for run in runs:
        try:
            push_run(run, gateway, build_info=info)
        except OSError as exc:  # URLError and connection errors: the run is still stored
            err.print(f"warning: could not push suite {run.suite} to {gateway}: {exc}; the "
                      "run is stored all the same", highlight=False, markup=False,
                      soft_wrap=True)
        else:
            err.print(f"pushed suite {run.suite} to {gateway}", highlight=False, markup=False)


def _open_stores(settings: StorageSettings, local_store: str | None, *,
                 manage_schema: bool = True) -> Stores:
    """Both stores; `manage_schema=False` (db commands) leaves migrating to the command."""
    from collector.adapters.store import StoreOptions, Stores, resolve_database_url

    url = resolve_database_url(settings.database_url_env, settings.database_url_file)
    return Stores.open(local_store or settings.local_path, url,
                       schema=settings.schema_policy if manage_schema else None,
                       options=StoreOptions.from_settings(settings))


def _optional_config(path: str) -> Config | None:
    """The config file; None when it is the default one and absent (commands that only
    need its storage or detection sections then use their defaults)."""
    from collector.adapters.config import load_config

    if path == DEFAULT_CONFIG and not Path(path).exists():
        return None
    return load_config(path)


def _storage_settings(path: str) -> StorageSettings:
    """The config's storage section; defaults when the default config is absent."""
    from collector.adapters.config import StorageSettings

    config = _optional_config(path)
    return config.storage if config is not None else StorageSettings()


def _db(args: argparse.Namespace) -> int:
    settings = _storage_settings(args.config)
    stores = _open_stores(settings, args.local_store,
                          manage_schema=args.db_command in ("sync", "create-reader",
                                                            "create-writer",
                                                            "retry-quarantined"))
    try:
        if args.db_command == "retry-quarantined":
            released = stores.local.release_quarantined()
            _out().print(f"{released} quarantined run(s) back in line", markup=False)
            if stores.database_url is None:
                return EXIT_OK
            return _db_sync(stores, settings)
        if args.db_command == "sync":
            return _db_sync(stores, settings)
        if args.db_command in ("create-reader", "create-writer"):
            return _db_create_reader(stores, args.name, kind=args.db_command[7:])
        return _db_migrate_or_status(stores, settings, migrating=args.db_command == "migrate")
    finally:
        stores.close()


def _regressions(args: argparse.Namespace) -> int:
    from collector.adapters.config import DetectionSettings, StorageSettings

    config = _optional_config(args.config)
    stores = _open_stores(config.storage if config else StorageSettings(), args.local_store)
    try:
        return cli_regress.run_regressions(
            args, stores.primary(), config.detection if config else DetectionSettings())
    finally:
        stores.close()


def _with_lazy_store(args: argparse.Namespace,
                     command: Callable[[argparse.Namespace, Callable[[], Store]], int]) -> int:
    """Run `command` with the history of record, opened only if it asks for it."""
    from collector.adapters.config import StorageSettings

    opened: list[Stores] = []

    def store() -> Store:
        if not opened:
            config = _optional_config(args.config)
            opened.append(_open_stores(config.storage if config else StorageSettings(),
                                       args.local_store))
        return opened[0].primary()

    try:
        return command(args, store)
    finally:
        for stores in opened:
            stores.close()


def _compare(args: argparse.Namespace) -> int:
    return _with_lazy_store(args, cli_compare.run_compare)


def _report(args: argparse.Namespace) -> int:
    config = _optional_config(args.config)  # its report section: the findings' thresholds
    return _with_lazy_store(args, lambda a, store: cli_report.run_report(
        a, store, config.report if config is not None else None))


def _rerun(args: argparse.Namespace) -> int:
    return _with_lazy_store(args, cli_ab.run_rerun)


def _out() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _db_sync(stores: Stores, settings: StorageSettings) -> int:
    report = stores.sync()
    if report is None:
        raise PermanentStoreError(f"no database configured: set {settings.database_url_env} "
                                  "or storage.database_url_file")
    _out().print(f"delivered {report.delivered}, already present {report.already_there}, "
                 f"pending {report.pending}, quarantined {report.quarantined}", markup=False)
    if not report.ok:
        _error(f"{report.pending} run(s) still pending: {report.error}")
        return EXIT_STORE
    if report.quarantined:
        _error(f"{report.quarantined} run(s) quarantined: PostgreSQL refuses them (reasons: "
               "`collector db status`); they are kept locally; after a fix, `collector db "
               "retry-quarantined`")
        return EXIT_STORE
    return EXIT_OK


def _db_create_reader(stores: Stores, name: str, *, kind: str = "reader") -> int:
    """`db create-reader` / `db create-writer`: the password from the environment (never
    an argument: it would show in `ps`), refused while it is the .env.example placeholder."""
    variable = f"COLLECTOR_{kind.upper()}_PASSWORD"
    password = os.environ.get(variable)
    if not password:
        raise PermanentStoreError(f"set {variable} to the new role's password")
    _refuse_placeholders(None, **{variable: password})
    stores.remote().create_reader(name, password, kind=kind)
    what = ("SELECT (member of collector_readonly)" if kind == "reader"
            else "read and write rows, no DDL (member of collector_writer)")
    _out().print(f"role {name} can now log in and {what}", markup=False)
    return EXIT_OK


def _db_migrate_or_status(stores: Stores, settings: StorageSettings, *, migrating: bool) -> int:
    from collector.adapters.store.migrate import MigrationTarget, migrate, plan

    out = _out()
    targets: list[tuple[str, MigrationTarget]] = [(f"local store {stores.local.path}",
                                                   stores.local)]
    if stores.database_url is not None:
        remote = stores.remote()
        targets.append((f"PostgreSQL {remote.redacted_url}", remote))
    for where, target in targets:
        if migrating:
            applied = migrate(target)
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none"
            mode = f" (mode: {stores.remote().mode})" if target is not stores.local else ""
            out.print(f"{where}{mode}: applied {names}", markup=False)
            continue
        state = plan(target)
        out.print(where + (f" (mode: {stores.remote().mode})"
                           if target is not stores.local else ""), markup=False)
        for row in state.applied:
            out.print(f"  applied   {row.version:04d}_{row.name}  {row.applied_at}", markup=False)
        for migration in state.pending:
            out.print(f"  pending   {migration.version:04d}_{migration.name}", markup=False)
        for migration in state.unavailable:
            out.print(f"  optional  {migration.version:04d}_{migration.name} (needs the "
                      f"{migration.requires} extension, not available here)", markup=False)
    if migrating and stores.database_url is not None:
        stores.remote().apply_timescale_policies(settings.timescaledb.compress_after,
                                                 settings.timescaledb.retain_for)
    if stores.database_url is not None:
        for note in stores.remote().notes:
            out.print(f"note: {note}", markup=False)
    if not migrating:
        _db_outbox_status(stores, out)
    return EXIT_OK


def _db_outbox_status(stores: Stores, out: Console) -> None:
    """The outbox part of `db status`: backlog, and each quarantined run with its reason."""
    if not stores.local.has_outbox():
        out.print("outbox: empty (the local store has no schema yet: `collector db "
                  "migrate`, or any run, creates it)", markup=False)
    else:
        out.print(f"outbox: {stores.local.pending_count()} run(s) pending", markup=False)
        quarantined = stores.local.quarantined()
        if quarantined:
            out.print(f"outbox: {len(quarantined)} run(s) quarantined (PostgreSQL refuses "
                      "them; after a fix: `collector db retry-quarantined`)", markup=False)
        for item in quarantined:
            out.print(f"  quarantined  run {item.run_id}  since "
                      f"{item.quarantined_at:%Y-%m-%d %H:%M:%S} (collector "
                      f"{item.quarantined_by}): {item.reason}", markup=False)
    if stores.database_url is None:
        out.print("no database configured: local store only", markup=False)


def _schedule(args: argparse.Namespace) -> int:
    from collector.adapters.config import load_config
    from collector.usecases.service import next_fire_times

    config = load_config(args.config)
    out = _out()
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
    return EXIT_OK


PLACEHOLDER = "change-me"


def _refuse_placeholders(url: str | None, **named: str | None) -> None:
    """Refuse to start with a password still set to deploy/.env.example's placeholder:
    the database URL's password, $PGPASSWORD, and any `named` (VARIABLE=value) secret."""
    from collector.adapters.redact import secrets_of

    secrets = {"PGPASSWORD": os.environ.get("PGPASSWORD"), **named}
    placeholder = [s for s in (secrets_of(url) if url else [])
                   if s.strip().lower().startswith(PLACEHOLDER)]
    if placeholder:
        secrets["the database URL's password"] = placeholder[0]
    for where, value in secrets.items():
        if value is not None and value.strip().lower().startswith(PLACEHOLDER):
            raise ConfigError([ConfigProblem(
                "environment", None, where, "is still the placeholder of "
                "deploy/.env.example: set a real password (e.g. `openssl rand -hex 24`)")])


def _serve(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import signal

    from collector.adapters.config import load_config
    from collector.adapters.http import token_from_environment
    from collector.adapters.locks import AlreadyServing, ServeLock
    from collector.usecases.service import Service

    config = load_config(args.config)
    alerts_token = token_from_environment()
    if args.run_at_start:
        config = dataclasses.replace(config, serve=config.serve.model_copy(
            update={"run_at_start": True}))
    if not any(s.schedule for s in config.suites):
        raise ConfigError([ConfigProblem(config.path, None, "suites",
                                         "no suite has a schedule; add schedule: {cron: ...} "
                                         "or {interval_s: ...} to at least one suite")])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from collector.adapters.store import resolve_database_url

    _refuse_placeholders(resolve_database_url(config.storage.database_url_env,
                                              config.storage.database_url_file),
                         COLLECTOR_ALERTS_TOKEN_FILE=(alerts_token.decode("utf-8", "replace")
                                                      if alerts_token else None))
    stores = _open_stores(config.storage, args.local_store)
    try:
        # One serve per local store, for the life of this process (the kernel drops it).
        serving = ServeLock(stores.local.path).acquire()
    except AlreadyServing:
        stores.close()
        raise
    service = Service(config, stores, host=args.host, start_method=args.isolation,
                      port=args.port, alerts_token=alerts_token)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.request_stop())
    try:
        service.start()
        while not service.stopped.wait(0.5):
            pass
    finally:
        if not service.abandoned:
            stores.close()
        serving.release()
    if service.abandoned:  # a thread stuck in a database call must not hold the exit
        logging.getLogger("collector.serve").info("stopped")
        logging.shutdown()
        os._exit(EXIT_OK)
    logging.getLogger("collector.serve").info("stopped")
    return EXIT_OK


_EXIT_CODES: tuple[tuple[type[CollectorError], int], ...] = (
    (OutputError, EXIT_OUTPUT), (StoreError, EXIT_STORE), (CollectorError, EXIT_USAGE))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        command = {"check-config": _check_config, "db": _db, "serve": _serve,
                   "schedule": _schedule, "run-once": _run_once,
                   "regressions": _regressions, "detect": cli_regress.run_detect,
                   "compare": _compare, "report": _report,
                   "ab": cli_ab.run_ab_command, "bisect": cli_ab.run_bisect_command,
                   "rerun": _rerun, "envs": cli_envs.run_envs,
                   }[args.command]
        return command(args)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    except CollectorError as exc:  # every other documented failure kind
        _error(str(exc))
        return next(code for kind, code in _EXIT_CODES if isinstance(exc, kind))
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
