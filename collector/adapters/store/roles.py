"""Log-in roles for the history database: readers (dashboards: SELECT only) and writers
(a collector: read and write rows, no DDL, no roles). Run by the schema's owner.

An existing role is only ever updated when it is a plain role of that kind: never a
superuser, a role that can create roles or databases, replicate or bypass row security,
one that owns anything, is a member of another role, or is the connection's own role (so
`db create-reader collector` cannot demote or re-password the owner). The password reaches
the server hashed (SCRAM-SHA-256, by libpq's PQencryptPasswordConn), so the clear text never
shows in a server log or pg_stat_activity.

A name PostgreSQL would refuse or change is refused first (`role_name_problem`): empty, more
than 63 bytes (the server would cut it silently), reserved (public, none, pg_*), or one of
the collector's group roles.

Every role gets some privileges through PUBLIC that a plain reader does not need and can
misuse: creating TEMP tables (disk and catalogue churn on the history database) and taking
advisory locks (a reader holding the collector's migration lock blocks `db migrate`).
Creating a role takes them from PUBLIC in this database (`restrict_public`): TEMP always
(the database's owner can), the advisory-lock functions where the connection is a superuser
(only a superuser may change a built-in function's privileges), given back to the owner of
the collector's schema. The collector itself uses neither TEMP tables nor, apart from that
owner's migration lock, advisory locks.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from collector.domain.errors import CollectorError

READER_GROUP = "collector_readonly"  # created by migration 0002_readonly_role
WRITER_GROUP = "collector_writer"
_WRITER_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: the server cuts a longer name without an error
_RESERVED = ("public", "none")  # and every name that starts with pg_
# The advisory-lock functions that take a lock (unlocking one you do not hold is harmless).
_LOCK_FUNCTIONS = tuple(
    f"{name}({args})"
    for name in ("pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
                 "pg_try_advisory_lock_shared", "pg_advisory_xact_lock",
                 "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
                 "pg_try_advisory_xact_lock_shared")
    for args in ("bigint", "integer, integer"))


class RoleRefused(CollectorError):
    """The role exists and is more than a plain reader or writer: it is left alone."""


_CHECK = """
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       r.rolname = current_user,
       EXISTS (SELECT 1 FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass
                 AND d.refobjid = r.oid AND d.deptype = 'o')
         OR EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid)
         OR EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
         OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid),
       ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid AND g.rolname <> %s ORDER BY 1)
FROM pg_roles r WHERE r.rolname = %s
"""
_ATTRIBUTES = ("a superuser", "allowed to create roles", "allowed to create databases",
               "a replication role", "allowed to bypass row security",
               "the role this command connects as", "the owner of database objects")


def role_name_problem(name: str) -> str | None:
    """Why PostgreSQL would refuse `name` as a new log-in role, or change it; None if fine."""
    if not name:
        return "a role name cannot be empty"
    if "\x00" in name:
        return "a role name cannot contain a NUL character"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"PostgreSQL role names are at most {MAX_NAME_BYTES} bytes (got {size}); "
                "a longer one would be cut short without a word: choose a shorter name")
    if name in _RESERVED or name.startswith("pg_"):
        return f"role name {name} is reserved by PostgreSQL: choose another name"
    if name in (READER_GROUP, WRITER_GROUP):
        return (f"{name} is the collector's group role (members get its privileges); "
                "choose another name for the log-in role")
    return None


def _refusal(name: str, row: tuple[Any, ...], kind: str) -> str | None:
    reasons = [text for flag, text in zip(row[:7], _ATTRIBUTES, strict=True) if flag]
    if row[7]:
        reasons.append(f"a member of {', '.join(row[7])}")
    if not reasons:
        return None
    return (f"role {name} exists and is {' and '.join(reasons)}: not a plain {kind}, "
            "left unchanged; choose another name")


def _ensure_writer_group(conn: psycopg.Connection[Any]) -> None:
    """collector_writer: rows of today's tables and tomorrow's (default privileges of the
    owner who runs this), nothing else."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                    (WRITER_GROUP,)).fetchone() is None:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(WRITER_GROUP)))
    group = sql.Identifier(WRITER_GROUP)
    (database,) = conn.execute("SELECT current_database()").fetchone() or ("",)
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(database), group))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(group))
    privileges = sql.SQL(_WRITER_PRIVILEGES)
    conn.execute(sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA public TO {}").format(
        privileges, group))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {} ON TABLES "
                         "TO {}").format(privileges, group))
    conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(group))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES "
                         "TO {}").format(group))


def restrict_public(conn: psycopg.Connection[Any]) -> None:
    """Take TEMP on this database, and (as a superuser) the advisory-lock functions, from
    PUBLIC; the owner of the collector's schema keeps the locks (its migration lock)."""
    (database,) = conn.execute("SELECT current_database()").fetchone() or ("",)
    conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
        sql.Identifier(database)))
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not (row and row[0]):
        return
    owner_row = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = "
                             "'schema_migrations' AND schemaname = current_schema()").fetchone()
    functions = sql.SQL(", ").join(sql.SQL(f"pg_catalog.{f}") for f in _LOCK_FUNCTIONS)
    conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(functions))
    if owner_row is not None:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
            functions, sql.Identifier(owner_row[0])))


def create_login(conn: psycopg.Connection[Any], name: str, password: str, *,
                 kind: str = "reader") -> None:
    """Create or update the log-in role `name` as a plain member of the reader or writer
    group (one transaction); RoleRefused when it exists and is more than that, or when
    PostgreSQL would refuse or shorten the name."""
    problem = role_name_problem(name)
    if problem is not None:
        raise RoleRefused(problem)
    group = WRITER_GROUP if kind == "writer" else READER_GROUP
    with conn.transaction():
        restrict_public(conn)
        if kind == "writer":
            _ensure_writer_group(conn)
        row = conn.execute(_CHECK, (group, name)).fetchone()
        if row is not None:
            reason = _refusal(name, row, kind)
            if reason is not None:
                raise RoleRefused(reason)
        hashed = conn.pgconn.encrypt_password(password.encode(), name.encode(),
                                              b"scram-sha-256").decode("ascii")
        verb = sql.SQL("ALTER" if row is not None else "CREATE")
        conn.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                             "NOREPLICATION NOBYPASSRLS PASSWORD {}").format(
            verb, sql.Identifier(name), sql.Literal(hashed)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group),
                                                      sql.Identifier(name)))
