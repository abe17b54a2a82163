"""What the commands share besides their options: the consoles they print with, the stores
they open from a config, and the refusal of placeholder secrets. Not a command."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from collector.cli.options import DEFAULT_CONFIG
from collector.domain.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from rich.console import Console

    from collector.adapters.config import Config, StorageSettings
    from collector.adapters.store import Stores
    from collector.domain.history import Store

PLACEHOLDER = "change-me"


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, emoji=False)  # `file:100:` is not the :100: emoji


def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def say(text: str, style: str | None = None) -> None:
    """A line on stderr, as it is (no markup)."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(
        text, style=style, markup=False)


def error(message: str) -> None:
    """An error line on stderr, without any secret the process knows of (the last guard:
    the message may quote what libpq or urllib said)."""
    from rich.markup import escape

    from collector.adapters.redact import scrub

    stderr().print(f"[bold red]error:[/] {escape(scrub(message))}", highlight=False,
                   soft_wrap=True)


def print_problems(problem: ConfigError) -> None:
    from collector.adapters.redact import scrub

    console = stderr()
    console.print(f"[bold red]error:[/] {problem.summary}", highlight=False, soft_wrap=True)
    for item in problem.problems:
        console.print(f"  {scrub(str(item))}", highlight=False, markup=False, soft_wrap=True)


def open_stores(settings: StorageSettings, local_store: str | None, *,
                manage_schema: bool = True) -> Stores:
    """Both stores; `manage_schema=False` (db commands) leaves migrating to the command."""
    from collector.adapters.store import StoreOptions, Stores, resolve_database_url

    url = resolve_database_url(settings.database_url_env, settings.database_url_file)
    return Stores.open(local_store or settings.local_path, url,
                       schema=settings.schema_policy if manage_schema else None,
                       options=StoreOptions.from_settings(settings))


def optional_config(path: str) -> Config | None:
    """The config file; None when it is the default one and absent (commands that only
    need its storage or detection sections then use their defaults)."""
    from collector.adapters.config import load_config

    if path == DEFAULT_CONFIG and not Path(path).exists():
        return None
    return load_config(path)


def storage_settings(path: str) -> StorageSettings:
    """The config's storage section; defaults when the default config is absent."""
    from collector.adapters.config import StorageSettings

    config = optional_config(path)
    return config.storage if config is not None else StorageSettings()


def with_lazy_store(args: argparse.Namespace,
                    command: Callable[[argparse.Namespace, Callable[[], Store]], int]) -> int:
    """Run `command` with the history of record, opened only if it asks for it."""
    opened: list[Stores] = []

    def store() -> Store:
        if not opened:
            opened.append(open_stores(storage_settings(args.config), args.local_store))
        return opened[0].primary()

    try:
        return command(args, store)
    finally:
        for stores in opened:
            stores.close()


def refuse_placeholders(url: str | None, **named: str | None) -> None:
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
