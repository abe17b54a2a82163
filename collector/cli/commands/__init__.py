"""The commands, one module each, registered here: adding a command is its module and its
line in COMMANDS (in the order `collector --help` lists them). Nothing else imports a
command module (tests/test_architecture.py)."""

from __future__ import annotations

from types import ModuleType

from collector.cli.commands import (
    ab,
    bisect,
    check_config,
    compare,
    convert_config,
    db,
    detect,
    envs,
    import_history,
    regressions,
    report,
    rerun,
    run_once,
    schedule,
    serve,
)

COMMANDS: tuple[ModuleType, ...] = (run_once, db, serve, schedule, check_config, convert_config,
                                    regressions, detect, compare, report, ab, bisect, rerun,
                                    envs, import_history)
