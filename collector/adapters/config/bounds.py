"""Bounds of a configuration. A value the config accepts must work everywhere it goes: in
APScheduler, in the worker's waits, in both stores. Below them nothing a sane config needs
is refused."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
)

from collector.domain.model import (
    DEVICE_PATTERN,
    NAME_PATTERN,
)

MATRIX_AXES = ("batch_size", "sequence_length", "new_tokens", "dtype", "backend", "device",
               "quantization", "attn_implementation")

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
CORE_TAGS = {"!", *(f"tag:yaml.org,2002:{t}"
                     for t in ("str", "int", "float", "bool", "null", "map", "seq"))}

PositiveInt = Annotated[int, Field(ge=1, le=INT4_MAX)]
Count = Annotated[int, Field(ge=0, le=INT4_MAX)]
Seconds = Annotated[float, Field(ge=0, le=DAY_S)]
Device = Annotated[str, Field(pattern=DEVICE_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
INTERVAL = r"^[0-9]{1,6} ?(second|minute|hour|day|week|month|year)s?$"
Loc = tuple[int | str, ...]
SECRET_FIELDS = {"database_url", "password"}  # never echoed back in error messages
