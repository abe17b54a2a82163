"""Secrets kept out of worker processes: workers run model code (remote code, where a model
opts in) and must not find the collector's credentials in their environment.

Where the scrub happens. A variable removed from `os.environ` inside a worker is still in
/proc/self/environ (the kernel's copy of the environment the process was exec'd with) and in
the forkserver's, which a worker can read as its parent. So the interpreters that workers
come from are exec'd without the secrets: the forkserver (and, in spawn mode, each worker)
starts through a small shell wrapper that unsets them first (`wrapper_script`; the valgrind
forkserver's wrapper does the same), and each worker also drops whatever still matches from
`os.environ` when it starts (`scrub`), for a variable that cannot be unset from a shell.

What counts as a secret (`is_secret`): a name that says so (PASSWORD, SECRET, TOKEN,
CREDENTIAL, an access/API/private key, AUTH as a word, a DSN or DATABASE_URL: the collector's own
COLLECTOR_DATABASE_URL, COLLECTOR_*_PASSWORD and the compose stack's passwords among them),
libpq's connection variables (PG*: host, user, password, service file) and the PostgreSQL
image's POSTGRES_*, and any value that carries credentials (a URL with user-info:
`user:password@` or a token alone, as in PIP_INDEX_URL=https://TOKEN@index; a libpq
`password=` string), any PostgreSQL URL and any libpq key=value connection string (two or
more of its keywords): that catches a database URL kept under a custom
`storage.database_url_env` name, with a password or without one. Kept whatever they look
like: Hugging Face's own variables (HF_*, HUGGING_FACE_*; HF_TOKEN is what lets a worker
fetch a gated model) and proxies (the worker may need one to reach the Hub); torch and
thread settings match none of the rules.

The collector's own /proc/<pid>/environ (the environment it was exec'd with, secrets and
all) is readable by any process of the same user, a worker included. `hide_environment`
marks the process non-dumpable (Linux `prctl(PR_SET_DUMPABLE, 0)`, as ssh-agent and gpg-agent
do), which `collector serve` and `collector run-once` call first: its /proc/<pid>/environ,
mem, maps and fd then open only for a process holding CAP_SYS_PTRACE (for reading, also
CAP_SYS_ADMIN or CAP_PERFMON), and it leaves no core dump. Workers are exec'd (exec makes a
process dumpable again), so their own /proc files and the measurements that read them are
unaffected. The price: a debugger or py-spy attached to a running collector needs that
capability (root) too.

What this cannot do: a worker runs as the collector's user, so it can still read that user's
files (a database_url_file, ~/.pgpass); and a collector running as root gives its workers
the capabilities that read /proc/<pid>/environ anyway. Keeping those from model code needs
another user (the image's `collector` user is not root) or a sandbox around the worker.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, MutableMapping

_SECRET_NAME = re.compile(
    r"PASSW(OR)?D|SECRET|TOKENS?($|_)|CREDENTIAL|ACCESS_?KEY|API_?KEY|PRIVATE_?KEY|"
    r"(^|_)AUTH($|_)|AUTHORIZATION|"
    r"(^|_)DSN($|_)|DATABASE_URL|^PG|^POSTGRES_", re.IGNORECASE)
# (TOKENS?($|_): GITHUB_TOKEN, not TOKENIZERS_PARALLELISM, a tokenizer thread setting.)
_KEPT_NAME = re.compile(r"^(HF_|HUGGING_?FACE_)|(^|_)PROXY$", re.IGNORECASE)
# scheme://user:password@host or scheme://TOKEN@host (PIP_INDEX_URL=https://TOKEN@index: any
# user-info is a credential), libpq's key=value form with a password, and any PostgreSQL
# URL, behind a byte-order mark, spaces or quotes too (a database_url without a password,
# under a custom name: its host, user and database are the collector's to know, and libpq
# finds the password in ~/.pgpass for them).
_SECRET_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s@]+@|"
                           r"\bpassword\s*=|^[\s\ufeff'\"]*postgres(ql)?://", re.IGNORECASE)
# libpq's key=value connection string without a password: two or more of its keywords.
_CONNINFO_KEY = re.compile(r"(?:^|\s)(?:host|hostaddr|port|dbname|user|passfile|service|"
                           r"sslmode|sslcert|sslkey)\s*=", re.IGNORECASE)
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_secret(name: str, value: str) -> bool:
    """Whether the variable `name=value` must not reach a worker."""
    if _KEPT_NAME.search(name):
        return False
    return bool(_SECRET_NAME.search(name) or _SECRET_VALUE.search(value)
                or len(_CONNINFO_KEY.findall(value)) >= 2)


def secret_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of the secret variables in `environ` (default: os.environ), sorted."""
    env = os.environ if environ is None else environ
    return sorted(name for name, value in env.items() if is_secret(name, value))


def scrub(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove every secret variable from `environ` (default: os.environ, so from the C
    environment too); the names removed."""
    env = os.environ if environ is None else environ
    names = secret_names(env)
    for name in names:
        del env[name]
    return names


def unset_line(names: Iterable[str]) -> str:
    """A shell line unsetting `names` ('' when there are none). Names a shell cannot unset
    (not identifiers) are left to `scrub` in the worker."""
    valid = [n for n in names if _SHELL_NAME.match(n)]
    return f"unset {' '.join(valid)}\n" if valid else ""


def wrapper_script(python: str, names: Iterable[str]) -> str:
    """A /bin/sh script that runs `python` with its arguments, without the variables named."""
    return ("#!/bin/sh\n"
            "# Written by the collector: its worker interpreter, started without its secrets.\n"
            f"{unset_line(names)}"
            f'exec {shlex.quote(python)} "$@"\n')


_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def hide_environment() -> bool:
    """Mark this process non-dumpable (Linux): its /proc/<pid>/environ (and mem, maps, fd)
    then open only for a process holding CAP_SYS_PTRACE (or, to read, CAP_SYS_ADMIN or
    CAP_PERFMON), not for the other processes of its user (a worker running model code),
    and it leaves no core dump. Whether it took
    effect (False off Linux, or where prctl is refused)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        done = libc.prctl(ctypes.c_int(_PR_SET_DUMPABLE), ctypes.c_ulong(0), ctypes.c_ulong(0),
                          ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (OSError, AttributeError):  # no libc to load, or no prctl in it
        return False
    return bool(done == 0)
