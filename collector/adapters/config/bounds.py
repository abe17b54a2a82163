"""Bounds of a configuration. A value the config accepts must work everywhere it goes: in
APScheduler, in the worker's waits, in both stores. Below them nothing a sane config needs
is refused."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    StrictFloat,
    StrictInt,
)

from collector.domain.model import (
    DEVICE_PATTERN,
    NAME_PATTERN,
)

MATRIX_AXES = ("batch_size", "sequence_length", "new_tokens", "dtype", "backend", "device",
               "quantization", "attn_implementation", "sdpa_backend")

# Bounds. A value the config accepts must work everywhere it goes: in APScheduler, in the
# worker's waits, in both stores. Below them nothing a sane config needs is refused.
MAX_FILE_BYTES = 1 << 20  # the shipped configs are a few KiB
MAX_DEPTH = 32  # the deepest shipped path (a model's nested sub-config) is 9 levels
# YAML nodes after expanding aliases: an alias bomb stops here. The shipped configs have a
# few hundred; ruamel's pure-Python parser reads about 15,000 a second.
MAX_NODES = 20_000
MAX_INT_DIGITS = 64  # longer integer literals are refused before Python converts them
MAX_BENCHMARKS = 1_000  # expanded benchmarks per file: each one costs seconds to minutes
INT4_MAX = 2**31 - 1  # PostgreSQL `integer` (series.batch_size, sequence_length, ...)
INT8_MAX = 2**63 - 1  # SQLite INTEGER and PostgreSQL bigint
DAY_S = 86_400.0  # timeouts and graces: a day, far below poll()'s 2**31 ms (24.8 days)
YEAR_S = 366 * 86_400.0  # schedule intervals and jitter: a year keeps every fire time sane
# Identifiers. Each one lands in an indexed PostgreSQL column (runs.host and runs.suite in
# runs_host_started/runs_suite_started, the model in series_model), and a btree index row
# holds at most 2,704 bytes: a longer value fails the whole run there, every time. The
# limits below leave room for the worst UTF-8 (4 bytes a character) beside the other
# columns of the index: 200 characters for names (a host name is at most 64, a suite or
# benchmark name a few dozen), 500 for what locates a model (a Hub id is at most 96 + 1 + 96
# characters, a revision 40 hex digits or a branch name; a local path rarely passes 200).
MAX_NAME_CHARS = 200  # host, suite, benchmark, synthetic architecture
MAX_MODEL_REF_CHARS = 500  # Hub id and revision, local path
CORE_TAGS = {"!", *(f"tag:yaml.org,2002:{t}"
                     for t in ("str", "int", "float", "bool", "null", "map", "seq"))}

# torch intra-op threads of one benchmark. The largest two-socket servers have 768 logical
# CPUs; above the cores of the host that runs it a benchmark measures the OS scheduler
# (expand.py notes that, from the host's own count).
MAX_THREADS = 1024

# Numbers and flags are strict: `batch_size: true` or `'8'` is a mistake to report, not a
# value to convert (pydantic's lax mode takes true as 1 and '8' as 8). A float field
# still takes an integer (`timeout_s: 60`).
PositiveInt = Annotated[StrictInt, Field(ge=1, le=INT4_MAX)]
Count = Annotated[StrictInt, Field(ge=0, le=INT4_MAX)]
Seconds = Annotated[StrictFloat, Field(ge=0, le=DAY_S)]
Device = Annotated[str, Field(pattern=DEVICE_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)]
INTERVAL = r"^[0-9]{1,6} ?(second|minute|hour|day|week|month|year)s?$"
Loc = tuple[int | str, ...]
SECRET_FIELDS = {"database_url", "password"}  # never echoed back in error messages


def identifier_problem(value: str, limit: int = MAX_NAME_CHARS) -> str | None:
    """What is wrong with an identifier given outside a config file (`--host`): None when
    it is fine. Empty, control characters (they would forge a log line) and more than
    `limit` characters are refused."""
    if not value.strip():
        return "must not be empty"
    if not value.isprintable():
        return "must not contain control characters"
    if len(value) > limit:
        return (f"at most {limit} characters (got {len(value):,}): the history database "
                "indexes it")
    return None
