"""Versioned, ordered, transactional migrations, recorded in `schema_migrations`.

Files live in `migrations/<dialect>/NNNN_name.sql`. Each is applied in its own transaction
together with its record, so a migration is either fully applied and recorded or not at all.
A first line `-- requires: EXTENSION` makes a migration optional: applied only where that
extension is available (TimescaleDB), reported as unavailable otherwise. An applied migration
whose file changed since, or a database with versions this collector does not know, is an
error: the schema is not what the code expects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Literal, Protocol

from collector.domain.errors import SchemaError

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REQUIRES = re.compile(r"^--\s*requires:\s*([a-z0-9_]+)\s*$", re.M)

SchemaPolicy = Literal["migrate", "refuse"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str
    requires: str | None


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime | str


@dataclass(frozen=True)
class Plan:
    applied: list[Applied]
    pending: list[Migration]
    unavailable: list[Migration]  # optional, their extension is missing here

    @property
    def current(self) -> bool:
        return not self.pending


class MigrationTarget(Protocol):
    """What a store offers the migration runner."""

    dialect: str

    def applied_migrations(self) -> list[Applied]: ...
    def apply_migration(self, migration: Migration) -> bool:
        """Run the migration and record it in one transaction; False if it was already
        recorded (another process got there first)."""
        ...
    def available_extensions(self) -> set[str]: ...
    def migration_lock(self) -> AbstractContextManager[None]: ...


def load_migrations(dialect: str) -> list[Migration]:
    package = resources.files("collector.adapters.store.migrations") / dialect
    found = []
    for entry in package.iterdir():
        match = _FILENAME.match(entry.name)
        if not match:
            continue
        sql = entry.read_text(encoding="utf-8")
        requires = _REQUIRES.search(sql.split("\n", 1)[0])
        found.append(Migration(int(match.group(1)), match.group(2), sql,
                               hashlib.sha256(sql.encode()).hexdigest(),
                               requires.group(1) if requires else None))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"duplicate migration versions in {dialect}: {versions}")
    return found


def plan(target: MigrationTarget, migrations: list[Migration] | None = None) -> Plan:
    known = migrations if migrations is not None else load_migrations(target.dialect)
    by_version = {m.version: m for m in known}
    applied = target.applied_migrations()
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            newest = max((m.version for m in known), default=0)
            raise SchemaError(
                f"the database has migration {row.version:04d}_{row.name}, newer than this "
                f"collector knows (up to {newest:04d}); upgrade the collector")
        if migration.checksum != row.checksum:
            raise SchemaError(
                f"migration {row.version:04d}_{row.name} was applied from a different file "
                "than this collector ships; the schema is not what the code expects")
    done = {row.version for row in applied}
    extensions = target.available_extensions()
    pending, unavailable = [], []
    for migration in known:
        if migration.version in done:
            continue
        if migration.requires and migration.requires not in extensions:
            unavailable.append(migration)
        else:
            pending.append(migration)
    return Plan(applied, pending, unavailable)


def migrate(target: MigrationTarget, migrations: list[Migration] | None = None,
            ) -> list[Migration]:
    """Apply every pending migration in order, each in its own transaction, under a lock
    that keeps concurrent collectors from migrating at once."""
    with target.migration_lock():
        todo = plan(target, migrations).pending
        return [m for m in todo if target.apply_migration(m)]


def ensure_schema(target: MigrationTarget, policy: SchemaPolicy | None,
                  migrations: list[Migration] | None = None) -> list[Migration]:
    """On start-up: bring the schema up to date, or refuse clearly if told to. With no
    policy (the `db` commands), only check that it is not newer or edited."""
    current = plan(target, migrations)
    if current.current or policy is None:
        return []
    if policy == "refuse":
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in current.pending)
        raise SchemaError(f"the {target.dialect} schema is older than this collector "
                          f"(pending: {names}); run `collector db migrate` or set "
                          "storage.schema: migrate")
    return migrate(target, migrations)


def split_statements(sql: str) -> Iterator[str]:
    """SQLite executes one statement per call: split a script at complete statements."""
    import sqlite3

    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement and not all(
                    part.strip().startswith("--") or not part.strip()
                    for part in statement.splitlines()):
                yield statement
            buffer = ""
    if buffer.strip() and not all(p.strip().startswith("--") or not p.strip()
                                  for p in buffer.splitlines()):
        raise SchemaError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
