"""`collector db ...`: the history database: migrate, status, sync, quarantined runs, and
the log-in roles for dashboards and collectors."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from collector.cli import options
from collector.cli.common import error, open_stores, refuse_placeholders, stdout, storage_settings
from collector.cli.exits import Exit
from collector.domain.errors import PermanentStoreError, command_line_problem

if TYPE_CHECKING:
    from rich.console import Console

    from collector.adapters.config import StorageSettings
    from collector.adapters.store import Stores

NAME = "db"
HELP = "the history database: migrate, status, sync"
# `db migrate` waits this long for another session's migration lock (or a migration for a
# table lock), then names the holder: a collector migrating a large history can take
# longer (raise it), anything else holding it is a mistake worth seeing at once.
LOCK_TIMEOUT_S = 60.0
ACTIONS = (("migrate", "apply pending schema migrations (local and PostgreSQL)"),
           ("status", "show the storage mode, migrations and outbox backlog"),
           ("sync", "forward runs waiting in the outbox to PostgreSQL"),
           ("retry-quarantined", "put runs PostgreSQL refused back in line (after a fix) "
                                 "and sync"),
           ("create-reader", "create or update a read-only log-in role for dashboards; "
                             "password from $COLLECTOR_READER_PASSWORD"),
           ("create-writer", "create or update a log-in role for collectors: rows only, no "
                             "DDL; password from $COLLECTOR_WRITER_PASSWORD"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, text in ACTIONS:
        action = actions.add_parser(name, help=text)
        options.config(action, "configuration file for its storage section (optional)")
        options.local_store(action)
        if name in ("create-reader", "create-writer"):
            action.add_argument("name", help="role name, e.g. grafana or collector_app (at "
                                             "most 63 bytes)")
        if name == "migrate":
            action.add_argument("--lock-timeout", type=options.positive, default=LOCK_TIMEOUT_S,
                                metavar="SECONDS",
                                help="how long to wait for a migration lock another session "
                                     f"holds before giving up with its name (default: "
                                     f"{LOCK_TIMEOUT_S:g})")


def run(args: argparse.Namespace) -> int:
    from collector.adapters.store import resolve_database_url

    if args.db_command in ("create-reader", "create-writer"):
        from collector.adapters.store.roles import role_name_problem

        problem = role_name_problem(args.name)
        if problem is not None:
            raise command_line_problem("NAME", problem)
    lock_timeout = getattr(args, "lock_timeout", LOCK_TIMEOUT_S)
    if lock_timeout > 86_400:
        raise command_line_problem("--lock-timeout", f"at most a day, 86400 s (got "
                                                     f"{lock_timeout:g})")
    settings = storage_settings(args.config)
    if args.db_command != "status":  # every action but status writes: never with a placeholder
        refuse_placeholders(resolve_database_url(settings.database_url_env,
                                                 settings.database_url_file))
    stores = open_stores(settings, args.local_store,
                         manage_schema=args.db_command in ("sync", "create-reader",
                                                           "create-writer",
                                                           "retry-quarantined"))
    try:
        if args.db_command == "retry-quarantined":
            released = stores.local.release_quarantined()
            stdout().print(f"{released} quarantined run(s) back in line", markup=False)
            if stores.database_url is None:
                return Exit.OK
            return _sync(stores, settings)
        if args.db_command == "sync":
            return _sync(stores, settings)
        if args.db_command in ("create-reader", "create-writer"):
            return _create_role(stores, args.name, kind=args.db_command[7:])
        return _migrate_or_status(stores, settings, migrating=args.db_command == "migrate",
                                  lock_timeout_s=lock_timeout)
    finally:
        stores.close()


def _sync(stores: Stores, settings: StorageSettings) -> int:
    report = stores.sync()
    if report is None:
        raise PermanentStoreError(f"no database configured: set {settings.database_url_env} "
                                  "or storage.database_url_file")
    stdout().print(f"delivered {report.delivered}, already present {report.already_there}, "
                 f"pending {report.pending}, quarantined {report.quarantined}", markup=False)
    if not report.ok:
        error(f"{report.pending} run(s) still pending: {report.error}")
        return Exit.STORE
    if report.quarantined:
        error(f"{report.quarantined} run(s) quarantined: PostgreSQL refuses them (reasons: "
               "`collector db status`); they are kept locally; after a fix, `collector db "
               "retry-quarantined`")
        return Exit.STORE
    return Exit.OK


def _create_role(stores: Stores, name: str, *, kind: str = "reader") -> int:
    """`db create-reader` / `db create-writer`: the password from the environment (never
    an argument: it would show in `ps`), refused while it is the .env.example placeholder."""
    variable = f"COLLECTOR_{kind.upper()}_PASSWORD"
    password = os.environ.get(variable)
    if not password:
        raise PermanentStoreError(f"set {variable} to the new role's password")
    refuse_placeholders(None, **{variable: password})
    stores.remote().create_reader(name, password, kind=kind)
    what = ("SELECT (member of collector_readonly)" if kind == "reader"
            else "read and write rows, no DDL (member of collector_writer)")
    stdout().print(f"role {name} can now log in and {what}", markup=False)
    return Exit.OK


def _migrate_or_status(stores: Stores, settings: StorageSettings, *, migrating: bool,
                       lock_timeout_s: float = LOCK_TIMEOUT_S) -> int:
    from collector.adapters.store.migrate import MigrationTarget, migrate, plan

    out = stdout()
    targets: list[tuple[str, MigrationTarget]] = [(f"local store {stores.local.path}",
                                                   stores.local)]
    if stores.database_url is not None:
        remote = stores.remote()
        remote.migration_lock_timeout_s = lock_timeout_s
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
        _outbox_status(stores, out)
    return Exit.OK


def _outbox_status(stores: Stores, out: Console) -> None:
    """The outbox part of `db status`: backlog, and each quarantined run with its reason."""
    from collector.adapters.redact import scrub  # a reason an older version kept as it was

    if not stores.local.has_outbox():
        out.print("outbox: empty (the local store has no schema yet: `collector db "
                  "migrate`, or any run, creates it)", markup=False)
    elif stores.database_url is None:
        out.print(f"outbox: not in use without a database ({stores.local.pending_count()} "
                  "run(s) kept locally are forwarded once one is configured)", markup=False)
    else:
        out.print(f"outbox: {stores.local.pending_count()} run(s) pending", markup=False)
        quarantined = stores.local.quarantined()
        if quarantined:
            out.print(f"outbox: {len(quarantined)} run(s) quarantined (PostgreSQL refuses "
                      "them; after a fix: `collector db retry-quarantined`)", markup=False)
        for item in quarantined:
            out.print(f"  quarantined  run {item.run_id}  since "
                      f"{item.quarantined_at:%Y-%m-%d %H:%M:%S} (collector "
                      f"{item.quarantined_by}): {scrub(item.reason)}", markup=False)
    if stores.database_url is None:
        out.print("no database configured: local store only", markup=False)
