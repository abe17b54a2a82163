"""YAML configuration: parsed with line numbers, validated into frozen BenchmarkSpecs.

Every problem is reported with file, line, field path, the bad value and what was expected,
all at once: the file's frame is validated first, then every benchmark on its own, so one bad
benchmark does not hide the problems of another. Validation does no I/O beyond reading the
file; the one exception is the check of synthetic architecture names, which asks the installed
transformers package (a lazy import: torch is not loaded) and is skipped with a note where
transformers is absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import re
import types
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.domain import capabilities
from collector.domain.catalogue import METRICS
from collector.domain.errors import ConfigError, ConfigProblem
from collector.domain.model import (
    DEVICE_PATTERN,
    NAME_PATTERN,
    Attention,
    Backend,
    BenchmarkSpec,
    CompileSettings,
    Dtype,
    HubSource,
    MeasurementMode,
    MeasurementSettings,
    ModelSource,
    OnnxRuntimeSettings,
    Quantization,
    SyntheticSource,
    Task,
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
_CORE_TAGS = {"!", *(f"tag:yaml.org,2002:{t}"
                     for t in ("str", "int", "float", "bool", "null", "map", "seq"))}

_PositiveInt = Annotated[int, Field(ge=1, le=INT4_MAX)]
_Count = Annotated[int, Field(ge=0, le=INT4_MAX)]
_Seconds = Annotated[float, Field(ge=0, le=DAY_S)]
_Device = Annotated[str, Field(pattern=DEVICE_PATTERN)]
_Name = Annotated[str, Field(pattern=NAME_PATTERN)]
_INTERVAL = r"^[0-9]{1,6} ?(second|minute|hour|day|week|month|year)s?$"
Loc = tuple[int | str, ...]
_SECRET_FIELDS = {"database_url", "password"}  # never echoed back in error messages


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MeasurementOverrides(_Strict):
    warmup_iterations: _Count | None = None
    min_iterations: _PositiveInt | None = None
    max_iterations: _PositiveInt | None = None
    min_duration_s: _Seconds | None = None
    max_duration_s: Annotated[float, Field(gt=0, le=DAY_S)] | None = None
    target_rel_ci: Annotated[float, Field(gt=0, lt=1)] | None = None
    confidence: Annotated[float, Field(gt=0.5, lt=1)] | None = None
    mode: MeasurementMode | None = None
    repetitions: Annotated[int, Field(ge=1, le=100)] | None = None


class _Matrix(_Strict):
    batch_size: Annotated[list[_PositiveInt], Field(min_length=1)] | None = None
    sequence_length: Annotated[list[_PositiveInt], Field(min_length=1)] | None = None
    new_tokens: Annotated[list[_PositiveInt], Field(min_length=1)] | None = None
    dtype: Annotated[list[Dtype], Field(min_length=1)] | None = None
    backend: Annotated[list[Backend], Field(min_length=1)] | None = None
    device: Annotated[list[_Device], Field(min_length=1)] | None = None
    quantization: Annotated[list[Quantization], Field(min_length=1)] | None = None
    attn_implementation: Annotated[list[Attention], Field(min_length=1)] | None = None


class _Settings(_Strict):
    """Everything that can be set at file, suite or benchmark level."""

    task: Task | None = None
    backend: Backend | None = None
    device: _Device | None = None
    dtype: Dtype | None = None
    batch_size: _PositiveInt | None = None
    sequence_length: _PositiveInt | None = None
    new_tokens: _PositiveInt | None = None
    threads: _PositiveInt | None = None
    timeout_s: Annotated[float, Field(gt=0, le=DAY_S)] | None = None
    memory_limit_mb: _PositiveInt | None = None
    measurement: _MeasurementOverrides | None = None
    compile: CompileSettings | None = None
    onnxruntime: OnnxRuntimeSettings | None = None
    quantization: Quantization | None = None
    attn_implementation: Attention | None = None
    matrix: _Matrix | None = None


class _Benchmark(_Settings):
    name: _Name
    model: ModelSource


class Schedule(_Strict):
    """When `collector serve` runs a suite: a cron expression or a fixed interval. Both
    are checked with APScheduler's own parsers, as `collector serve` builds them
    (collector.usecases.service.trigger_for), so what this accepts serve can run."""

    cron: str | None = None
    interval_s: Annotated[float, Field(ge=1, le=YEAR_S)] | None = None
    timezone: str = "UTC"
    jitter_s: Annotated[float, Field(ge=0, le=YEAR_S)] = 0.0

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5:
            raise ValueError("cron must have 5 fields (minute hour day month weekday)")
        from apscheduler.triggers.cron import CronTrigger

        try:
            trigger = CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression: {exc}") from None
        if _next_fire(trigger) is None:  # e.g. `0 0 30 2 *`
            raise ValueError("the cron expression never fires")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("set exactly one of cron and interval_s")
        if self.cron is not None and self.jitter_s:
            raise ValueError("jitter_s applies to interval_s only; a cron schedule runs on "
                             "its times")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if self.interval_s is not None:
            from apscheduler.triggers.interval import IntervalTrigger

            try:
                _next_fire(IntervalTrigger(seconds=self.interval_s, timezone=self.timezone,
                                           jitter=self.jitter_s or None))
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"invalid interval: {exc}") from None
        return self


def _next_fire(trigger: Any) -> Any:
    from datetime import datetime, timezone

    return trigger.get_next_fire_time(None, datetime.now(timezone.utc))


class ServeSettings(_Strict):
    """`collector serve`: where /metrics listens and how the service behaves."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    run_at_start: bool = False
    grace_s: _Seconds = 60.0
    # APScheduler takes whole seconds (0.5 would be truncated to 0, which it refuses).
    misfire_grace_s: Annotated[int, Field(ge=1, le=YEAR_S)] = 3600
    outbox_retry_s: Annotated[float, Field(ge=1, le=DAY_S)] = 300.0


class _Suite(_Strict):
    description: str | None = None
    schedule: Schedule | None = None
    defaults: _Settings | None = None
    # Validated one by one afterwards, so every benchmark's problems are reported.
    benchmarks: Annotated[list[dict[str, Any]], Field(min_length=1)]


class TimescaleSettings(_Strict):
    """Policies applied to the measurements hypertable (TimescaleDB only)."""

    compress_after: Annotated[str, Field(pattern=_INTERVAL)] | None = "7 days"
    retain_for: Annotated[str, Field(pattern=_INTERVAL)] | None = None


class StorageSettings(_Strict):
    """Where results are kept. The database URL is a secret: it comes from an environment
    variable (named here) or a file, never from the config itself."""

    local_path: str | None = None
    database_url_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = (
        "COLLECTOR_DATABASE_URL")
    database_url_file: str | None = None
    schema_policy: Literal["migrate", "refuse"] = Field("migrate", alias="schema")
    timescaledb: TimescaleSettings = TimescaleSettings()
    # Bounds on every PostgreSQL call, so a server that stops answering cannot freeze us.
    connect_timeout_s: Annotated[int, Field(ge=1, le=300)] = 10
    statement_timeout_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    # Delivered outbox documents (each with its raw samples) are pruned this many days
    # after delivery; null keeps them forever.
    outbox_retention_days: Annotated[int, Field(ge=0, le=36_500)] | None = 14
    database_url: Any = None
    password: Any = None

    @field_validator("database_url", "password")
    @classmethod
    def _no_secrets(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("secrets never go in the config; put the URL in the environment "
                             "variable named by database_url_env (default "
                             "COLLECTOR_DATABASE_URL) or in database_url_file")
        return value


class ConfirmationSettings(_Strict):
    """Confirmation runs: when the after-run scan flags a suspected change, or the latest
    run is a worse outlier, `points` more points of that benchmark (each with the
    benchmark's own repetitions) run at once, so a real change pages in the same cycle
    and a noise burst is dismissed. At most `max_series` series per cycle. Six points:
    the detector pages on four runs after the one that flags a change, which its third
    run at the new level does."""

    enabled: bool = True
    points: Annotated[int, Field(ge=1, le=20)] = 6
    max_series: Annotated[int, Field(ge=0, le=100)] = 2


_CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s]*@", re.I)


class AbSettings(_Strict):
    """The automatic A/B of a confirmed regression whose attribution names package versions
    (`transformers_version 5.23.0 -> 5.24.0`, `packages.tokenizers ...`): the old and the
    new versions, each in a cached environment (collector.adapters.envs), measured side by side,
    interleaved, for `rounds` rounds; the regression record carries the result. Off by
    default; at most `max_per_cycle` per cycle, each stopped after `budget_s`. Models whose
    stored size (the result's model_size_bytes) is above `max_model_size_mib` are not A/B'd
    (null: no bound). `pip_args` go to every environment build (e.g. `--no-index
    --find-links /wheels`); an index that needs credentials is given to pip through the
    environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL), never here."""

    enabled: bool = False
    rounds: Annotated[int, Field(ge=2, le=50)] = 3
    budget_s: Annotated[float, Field(gt=0, le=DAY_S)] = 600.0
    max_per_cycle: Annotated[int, Field(ge=0, le=20)] = 1
    max_model_size_mib: Annotated[float, Field(gt=0, le=1 << 30)] | None = 2048.0
    env_cache: Annotated[str, Field(min_length=1)] | None = None
    pip_args: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=64)

    @field_validator("pip_args")
    @classmethod
    def _no_credentials(cls, value: list[str]) -> list[str]:
        for arg in value:
            if _CREDENTIALS_IN_URL.search(arg):
                raise ValueError("an index URL with credentials is a secret: never in the "
                                 "config; set PIP_INDEX_URL (or PIP_EXTRA_INDEX_URL) in the "
                                 "collector's environment, which pip reads itself")
        return value


class DetectionSettings(_Strict):
    """Regression detection after every run (collector.regress). `min_effect` maps metric
    names (or `default`) to the smallest relative change worth reporting."""

    enabled: bool = True
    confirmation: ConfirmationSettings = ConfirmationSettings()
    ab: AbSettings = AbSettings()
    history_runs: Annotated[int, Field(ge=20, le=5000)] = 250
    contaminated_cpu_fraction: Annotated[float, Field(gt=0, le=1)] = 0.25
    min_effect: dict[str, Annotated[float, Field(ge=0, lt=10)]] = Field(default_factory=dict)

    @field_validator("min_effect")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(METRICS) - {"default"})
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; expected metric names "
                             "(the README's metric table) or `default`")
        return value


_PACKAGE_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$"  # PEP 508 names


class EnvironmentSettings(_Strict):
    """What every result records of its environment beyond the fixed fields (versions of
    transformers, torch, CUDA, ...): the installed versions of `record_packages`, so a step
    in one of them shows in a regression's environment diff (`packages.NAME`)."""

    record_packages: Annotated[list[Annotated[str, Field(pattern=_PACKAGE_NAME)]],
                               Field(max_length=100)] = Field(default_factory=list)

    @field_validator("record_packages")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key in seen:
                raise ValueError(f"package {name!r} is listed twice")
            seen.add(key)
        return value


class ReportSettings(_Strict):
    """`collector report`'s thresholds: a value past one is a finding on its own."""

    high_latency_ms: Annotated[float, Field(gt=0, le=DAY_S * 1e3)] = 100.0
    high_memory_mib: Annotated[float, Field(gt=0, le=1 << 30)] = 4096.0
    low_throughput: Annotated[float, Field(gt=0, le=1e12)] = 10.0


class _File(_Strict):
    version: Literal[1] = 1
    defaults: _Settings | None = None
    storage: StorageSettings = StorageSettings()
    serve: ServeSettings = ServeSettings()
    detection: DetectionSettings = DetectionSettings()
    environment: EnvironmentSettings = EnvironmentSettings()
    report: ReportSettings = ReportSettings()
    suites: Annotated[dict[_Name, _Suite], Field(min_length=1)]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str | None
    benchmarks: tuple[BenchmarkSpec, ...]
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Config:
    path: str
    suites: tuple[Suite, ...]
    notes: tuple[str, ...] = ()
    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings)
    serve: ServeSettings = dataclasses.field(default_factory=ServeSettings)
    detection: DetectionSettings = dataclasses.field(default_factory=DetectionSettings)
    environment: EnvironmentSettings = dataclasses.field(default_factory=EnvironmentSettings)
    report: ReportSettings = dataclasses.field(default_factory=ReportSettings)

    def suite(self, name: str) -> Suite | None:
        return next((s for s in self.suites if s.name == name), None)

    @property
    def benchmark_count(self) -> int:
        return sum(len(s.benchmarks) for s in self.suites)


# ---------------------------------------------------------------------------------------------
# YAML with positions


def _yaml_load(text: str, file: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        _Prescan(yaml, file).run(text)  # before any node is built
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = "; ".join(str(p).strip() for p in (exc.context, exc.problem) if p)
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {reason}")]) from None
    except YAMLError as exc:
        # e.g. a ReaderError (a control character): it knows the offset, not the line.
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        reason = str(exc).split("\n")[0]
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {reason}")]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # The pre-scan refuses what is known to end here; this is the net below it.
        raise ConfigError([ConfigProblem(file, None, "", f"invalid YAML: {exc}")]) from None


class _Frame:
    """An open mapping or sequence in the event stream."""

    __slots__ = ("anchor", "expect_key", "height", "index", "is_map", "key", "part", "size")

    def __init__(self, is_map: bool, anchor: str | None, part: int | str | None) -> None:
        self.is_map = is_map
        self.anchor = anchor
        self.part = part  # where this collection sits in its parent
        self.size = 1  # nodes, aliases expanded
        self.height = 1  # levels of collections, this one included
        self.expect_key = True
        self.key: int | str | None = None
        self.index = 0


class _Prescan:
    """Bounds the document before ruamel builds it: nesting depth, node count with aliases
    expanded (an alias bomb is refused at a few hundred nodes' cost, never expanded),
    integer literal length (Python refuses to convert more than 4,300 digits), tags
    (a config is plain data: the YAML core tags only) and strings that no store can keep
    (NUL, lone surrogates). ruamel's parser is an iterative state machine; the composer
    and constructor recurse, so the depth check has to come first."""

    def __init__(self, yaml: Any, file: str) -> None:
        self.yaml = yaml
        self.file = file
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (size, height)
        self.total = 0

    def run(self, text: str) -> None:
        from ruamel.yaml.events import (
            AliasEvent,
            CollectionEndEvent,
            CollectionStartEvent,
            MappingStartEvent,
            ScalarEvent,
        )

        for event in self.yaml.parse(text):
            if isinstance(event, CollectionStartEvent):
                part = self._part()
                self._tag(event, part)
                self._grow(event, part, 1, 1)
                self.stack.append(_Frame(isinstance(event, MappingStartEvent),
                                         event.anchor, part))
            elif isinstance(event, CollectionEndEvent):
                frame = self.stack.pop()
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (frame.size, frame.height)
                self._done(frame.size, frame.height, "?")
            elif isinstance(event, ScalarEvent):
                part = self._part()
                self._tag(event, part)
                self._scalar(event, part)
                self._grow(event, part, 1, 0)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (1, 0)
                self._done(1, 0, event.value)
            elif isinstance(event, AliasEvent):
                part = self._part()
                if any(f.anchor == event.anchor for f in self.stack):
                    self._fail(event, part, f"alias *{event.anchor} refers to a collection "
                                            "that contains it")
                size, height = self.anchors.get(event.anchor, (1, 0))
                self._grow(event, part, size, height)
                self._done(size, height, "?")

    def _part(self) -> int | str | None:
        """The key or index of the node that starts now; None for a mapping key."""
        if not self.stack:
            return None
        top = self.stack[-1]
        if not top.is_map:
            return top.index
        return None if top.expect_key else top.key

    def _grow(self, event: Any, part: int | str | None, size: int, height: int) -> None:
        self.total += size
        if len(self.stack) + height > MAX_DEPTH:
            self._fail(event, part, f"nested more than {MAX_DEPTH} levels deep")
        if self.total > MAX_NODES:
            self._fail(event, part, f"more than {MAX_NODES:,} nodes (aliases expanded); "
                                    "a configuration is not that large")

    def _done(self, size: int, height: int, key: Any) -> None:
        if not self.stack:
            return
        top = self.stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if not top.is_map:
            top.index += 1
        elif top.expect_key:
            top.key = key if isinstance(key, str) else "?"
            top.expect_key = False
        else:
            top.expect_key = True

    def _tag(self, event: Any, part: int | str | None) -> None:
        tag = event.tag
        if tag is not None and str(tag) not in _CORE_TAGS:
            shown = str(tag).replace("tag:yaml.org,2002:", "!!")
            self._fail(event, part, f"YAML tag {shown} is not allowed: a configuration "
                                    "holds plain data (strings, numbers, booleans, lists, "
                                    "mappings)")

    def _scalar(self, event: Any, part: int | str | None) -> None:
        value: str = event.value
        if "\x00" in value:
            self._fail(event, part, "a NUL character in a string (no store can keep it)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self._fail(event, part, "a lone surrogate (\\ud800-\\udfff) in a string is not "
                                    "valid Unicode")
        if len(value) > MAX_INT_DIGITS and self._is_int(event):
            self._fail(event, part, f"an integer of {len(value):,} characters; at most "
                                    f"{MAX_INT_DIGITS}")

    def _is_int(self, event: Any) -> bool:
        from ruamel.yaml.nodes import ScalarNode

        tag = event.tag
        if tag is None and event.implicit[0]:
            tag = self.yaml.resolver.resolve(ScalarNode, event.value, event.implicit)
        return str(tag) == "tag:yaml.org,2002:int"

    def _fail(self, event: Any, part: int | str | None, message: str) -> None:
        parts = [f.part for f in self.stack[1:]] + ([part] if self.stack else [])
        field = ""
        for item in parts:
            if item is None:
                continue
            field += f"[{item}]" if isinstance(item, int) else (f".{item}" if field else item)
        if len(field) > 100:
            field = field[:97] + "..."
        raise ConfigError([ConfigProblem(self.file, event.start_mark.line + 1, field,
                                         message)])


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _is_tag(node: Any, part: int | str) -> bool:
    """Discriminated unions put their tag ('synthetic') into error paths: not a real key."""
    return isinstance(node, dict) and part not in node and node.get("source") == part


def _child(node: Any, part: int | str) -> Any:
    try:
        return node[part]
    except (KeyError, IndexError, TypeError):
        return None


def _line_of(root: Any, loc: Loc, *, key: bool = False) -> int | None:
    """1-based line of the value (or key) at a location in the ruamel tree; the nearest
    enclosing line where the location does not exist (a missing field)."""
    node = root
    line: int | None = root.lc.line + 1 if hasattr(root, "lc") else None
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if _is_tag(node, part):
            continue
        if isinstance(node, dict) and part in node and hasattr(node, "lc"):
            pos = node.lc.key(part) if (key and last) else node.lc.value(part)
            line = pos[0] + 1
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) and (
            hasattr(node, "lc")
        ):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    return line


def _path(root: Any, loc: Loc) -> str:
    out = ""
    node = root
    for part in loc:
        if _is_tag(node, part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        node = _child(node, part)
    return out


# ---------------------------------------------------------------------------------------------
# Errors


def _unwrap(annotation: Any, node: Any) -> Any:
    """Strip Optional and Annotated; choose a tagged-union member by the node's 'source'."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) > 1 and isinstance(node, dict):
                tagged = [m for m in members if _source_tag(m) == node.get("source")]
                members = tagged or members
            annotation = members[0]
        else:
            return annotation


def _source_tag(model: Any) -> Any:
    field = getattr(model, "model_fields", {}).get("source")
    return get_args(field.annotation)[0] if field is not None else None


def _allowed_keys(top: Any, node: Any, loc: Loc) -> list[str]:
    """The keys accepted by the mapping at loc (relative to a document validated as top)."""
    annotation: Any = top
    for part in loc:
        annotation = _unwrap(annotation, node)
        if _is_tag(node, part):
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return []
        node = _child(node, part)
    annotation = _unwrap(annotation, node)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sorted(annotation.model_fields)
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems_from(exc: ValidationError, file: str, root: Any, top: Any,
                   prefix: Loc = ()) -> list[ConfigProblem]:
    """Pydantic errors as ConfigProblems; prefix locates a sub-document validated alone."""
    sub = root
    for part in prefix:
        sub = sub[part]
    problems = []
    for err in exc.errors(include_url=False):
        rel = tuple(err["loc"])
        loc = prefix + rel
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(top, sub, rel[:-1])
            message = "unknown key" + (f"; expected one of: {', '.join(allowed)}"
                                       if allowed else "")
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            secret = bool(rel) and rel[-1] in _SECRET_FIELDS
            if not isinstance(err.get("input"), dict | list) and "input" in err and not secret:
                message = f"{message} (got {_short(err['input'])})"
        problems.append(ConfigProblem(
            file, _line_of(root, loc, key=kind in ("extra_forbidden", "missing")),
            _path(root, loc), message))
    return problems


# ---------------------------------------------------------------------------------------------
# Expansion


def _axis_values(levels: Sequence[_Settings | None], axis: str) -> list[Any] | None:
    """The most specific level that sets an axis decides it, as a scalar or a matrix list."""
    for level in reversed(levels):
        if level is None:
            continue
        listed = getattr(level.matrix, axis) if level.matrix is not None else None
        if listed is not None:
            return list(listed)
        if getattr(level, axis) is not None:
            return [getattr(level, axis)]
    return None


def _scalar(levels: Sequence[_Settings | None], field: str) -> Any:
    for level in reversed(levels):
        if level is not None and getattr(level, field) is not None:
            return getattr(level, field)
    return None


def _merged_measurement(levels: Sequence[_Settings | None]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for level in levels:
        if level is not None and level.measurement is not None:
            merged.update(level.measurement.model_dump(exclude_none=True))
    return merged


ArchitectureCheck = Callable[[str], "bool | None"]


def transformers_architecture_known(name: str) -> bool | None:
    """True/False when transformers is installed (lazy import, no torch), None otherwise."""
    names = _transformers_names()
    return None if names is None else name[:1].isupper() and name in names


@functools.cache
def _transformers_names() -> frozenset[str] | None:
    """dir() of transformers' lazy module costs 0.6 s: once per process, not per name."""
    try:
        import transformers
    except ImportError:
        return None
    return frozenset(dir(transformers))


class _Checker:
    """Collects problems of one file while specs are expanded."""

    def __init__(self, file: str, root: Any, architecture_known: ArchitectureCheck) -> None:
        self.file = file
        self.root = root
        self.problems: list[ConfigProblem] = []
        self.notes: list[str] = []
        self._architecture_known = architecture_known
        self._checked: dict[str, bool | None] = {}
        self.benchmarks = 0  # expanded so far, for MAX_BENCHMARKS

    def add(self, loc: Loc, message: str, *, key: bool = False) -> None:
        problem = ConfigProblem(self.file, _line_of(self.root, loc, key=key),
                                _path(self.root, loc), message)
        if problem not in self.problems:
            self.problems.append(problem)

    def matrix_conflicts(self, level: _Settings | None, loc: Loc) -> None:
        if level is None or level.matrix is None:
            return
        for axis in MATRIX_AXES:
            if getattr(level, axis) is not None and getattr(level.matrix, axis) is not None:
                self.add((*loc, "matrix", axis),
                         f"{axis} is set both as a value and in matrix; set one or the other",
                         key=True)

    def measurement(self, levels: Sequence[_Settings | None], loc: Loc,
                    suite_name: str) -> MeasurementSettings | None:
        """A benchmark's merged measurement settings; None (with problems) when invalid."""
        try:
            measurement = MeasurementSettings(**_merged_measurement(levels))
        except ValidationError as exc:
            _, suite, bench = levels
            where = (*loc, "measurement") if bench is not None and bench.measurement else (
                ("suites", suite_name, "defaults", "measurement") if suite is not None
                and suite.measurement else ("defaults", "measurement"))
            for err in exc.errors(include_url=False):
                self.add((*where, *err["loc"]), err["msg"].removeprefix("Value error, "))
            return None
        return measurement if self._instructions_mode(measurement, levels, loc) else None

    def _instructions_mode(self, measurement: MeasurementSettings,
                           levels: Sequence[_Settings | None], loc: Loc) -> bool:
        """Instructions are counted on one CPU thread: False (with a problem) otherwise."""
        if measurement.mode is not MeasurementMode.INSTRUCTIONS:
            return True
        threads = _scalar(levels, "threads")
        if threads is not None and threads != 1:
            self.add((*loc, "threads"), f"measurement mode instructions counts one thread "
                     f"(got threads {threads}); set threads: 1 or leave it unset")
            return False
        devices = _axis_values(levels, "device") or ["cpu"]
        if any(d != "cpu" for d in devices):
            self.add((*loc, "device"), "measurement mode instructions counts CPU "
                     f"instructions (got device {', '.join(map(str, devices))}); use "
                     "device: cpu")
            return False
        return True

    def model_config(self, raw: Any, loc: Loc) -> bool:
        """A synthetic model's `config` goes to transformers and, as JSON, into both stores:
        plain JSON data only. False (with problems) otherwise."""
        model = raw.get("model") if isinstance(raw, dict) else None
        if not isinstance(model, dict) or "config" not in model:
            return True
        before = len(self.problems)
        self._json_data(model["config"], (*loc, "model", "config"))
        return len(self.problems) == before

    def _json_data(self, value: Any, loc: Loc) -> None:
        if value is None or isinstance(value, bool | str):
            return
        if isinstance(value, int):
            if not -INT8_MAX - 1 <= value <= INT8_MAX:
                self.add(loc, f"integer out of the 64-bit range (got {_short(value)})")
        elif isinstance(value, float):
            if not math.isfinite(value):
                self.add(loc, f"not a finite number (got {value}); JSON and the stores "
                              "hold finite numbers only")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._json_data(item, (*loc, index))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.add((*loc, key), f"keys must be strings (got {_short(key)}); quote "
                                          "it", key=True)
                else:
                    self._json_data(item, (*loc, key))
        else:
            self.add(loc, f"expected plain data (a string, number, boolean, null, list or "
                          f"mapping), got a {type(value).__name__} ({_short(str(value))}); "
                          "quote it to make it a string")

    def model(self, raw: Any, bench: _Benchmark, loc: Loc) -> bool:
        """The model's config and source; False when the benchmark cannot be expanded."""
        self.source(bench, loc)
        return self.model_config(raw, loc)

    def source(self, bench: _Benchmark, loc: Loc) -> None:
        model = bench.model
        if isinstance(model, HubSource) and model.trust_remote_code and not re.fullmatch(
                r"[0-9a-f]{40}", model.revision):
            self.add((*loc, "model", "revision"),
                     f"trust_remote_code runs the model repository's own code: pin revision "
                     f"to a full 40-character commit hash (got {model.revision!r}), so the "
                     "code that runs cannot change under the same name")
        if isinstance(model, SyntheticSource) and model.seed > INT8_MAX:
            self.add((*loc, "model", "seed"), f"a seed fits in 64 bits (got {model.seed})")

    def expansion(self, levels: Sequence[_Settings | None], axes: dict[str, list[Any]],
                  loc: Loc, suite_name: str) -> bool:
        """At most MAX_BENCHMARKS per file; False (with a problem) when this benchmark's
        matrix would pass it, before any of it is built."""
        if self.benchmarks > MAX_BENCHMARKS:  # reported already
            return False
        count = math.prod(len(values) for values in axes.values())
        if self.benchmarks + count <= MAX_BENCHMARKS:
            self.benchmarks += count
            return True
        file_level, suite_level, bench = levels
        where: Loc = loc
        if bench is not None and bench.matrix is not None:
            where = (*loc, "matrix")
        elif suite_level is not None and suite_level.matrix is not None:
            where = ("suites", suite_name, "defaults", "matrix")
        elif file_level is not None and file_level.matrix is not None:
            where = ("defaults", "matrix")
        sizes = " x ".join(f"{len(v)} {a}" for a, v in axes.items() if len(v) > 1)
        self.add(where, f"expands to {count:,} benchmarks ({sizes or 'one'}); at most "
                        f"{MAX_BENCHMARKS:,} per file" + (
                            f", and {self.benchmarks:,} come before it"
                            if self.benchmarks else ""), key=True)
        self.benchmarks = MAX_BENCHMARKS + 1  # the rest would only repeat this problem
        return False

    def architecture(self, source: SyntheticSource, loc: Loc) -> None:
        arch = source.architecture
        if arch not in self._checked:
            self._checked[arch] = self._architecture_known(arch)
        if self._checked[arch] is False:
            self.add((*loc, "model", "architecture"),
                     f"unknown architecture (got {arch!r}); expected a transformers model "
                     "class name such as GPT2LMHeadModel or BertForSequenceClassification")
        elif self._checked[arch] is None:
            note = (f"architecture {arch!r} not checked: transformers is not installed here; "
                    "the worker checks it")
            if note not in self.notes:
                self.notes.append(note)


def _specs(check: _Checker, fixed: dict[str, Any], axes: dict[str, list[Any]], *,
           workloads: dict[str, str], name: str, loc: Loc) -> list[BenchmarkSpec]:
    """One benchmark's matrix, expanded; `workloads` maps identities to benchmark names."""
    specs = []
    for combo in itertools.product(*axes.values()):
        spec = BenchmarkSpec(**fixed, **dict(zip(axes, combo, strict=True)))
        impossible = capabilities.problem(spec)
        if impossible is not None:
            field, message = impossible
            check.add((*loc, field), f"{message} ({spec.label})")
            break
        # Two benchmarks with one series identity would write one series twice per run.
        workload = json.dumps(spec.identity(), sort_keys=True)
        if workload in workloads:
            if workloads[workload] != name:  # else already reported as a duplicate name
                check.add((*loc, "name"), f"repeats the workload of benchmark "
                          f"{workloads[workload]!r} ({spec.label})")
            break
        workloads[workload] = name
        specs.append(spec)
    return specs


def _expand_suite(check: _Checker, parsed: _File, suite_name: str, suite: _Suite) -> Suite:
    specs: list[BenchmarkSpec] = []
    first_index: dict[str, int] = {}
    workloads: dict[str, str] = {}
    check.matrix_conflicts(suite.defaults, ("suites", suite_name, "defaults"))
    for index, raw in enumerate(suite.benchmarks):
        loc: Loc = ("suites", suite_name, "benchmarks", index)
        try:
            bench = _Benchmark.model_validate(raw)
        except ValidationError as exc:
            check.problems.extend(_problems_from(exc, check.file, check.root, _Benchmark, loc))
            # The model may be fine while another field is not: still check its architecture.
            raw_model = raw.get("model")
            if isinstance(raw_model, dict) and raw_model.get("source") == "synthetic":
                with contextlib.suppress(ValidationError):
                    check.architecture(SyntheticSource.model_validate(raw_model), loc)
            continue
        if not check.model(raw, bench, loc):
            continue
        if bench.name in first_index:
            check.add((*loc, "name"), f"duplicate benchmark name (got {bench.name!r}); first "
                      f"defined at benchmarks[{first_index[bench.name]}]")
        first_index.setdefault(bench.name, index)
        check.matrix_conflicts(bench, loc)
        if isinstance(bench.model, SyntheticSource):
            check.architecture(bench.model, loc)

        levels = (parsed.defaults, suite.defaults, bench)
        measurement = check.measurement(levels, loc, suite_name)
        if measurement is None:
            continue

        fixed: dict[str, Any] = {"suite": suite_name, "name": bench.name, "model": bench.model,
                                 "measurement": measurement}
        for field in ("task", "threads", "timeout_s", "memory_limit_mb", "compile",
                      "onnxruntime"):
            value = _scalar(levels, field)
            if value is not None:
                fixed[field] = value
        axes = {a: v for a in MATRIX_AXES if (v := _axis_values(levels, a)) is not None}
        if not check.expansion(levels, axes, loc, suite_name):
            continue
        specs += _specs(check, fixed, axes, workloads=workloads, name=bench.name, loc=loc)
    return Suite(suite_name, suite.description, tuple(specs), suite.schedule)


def _read(path: str | Path, file: str) -> str:
    """The file's text: at most MAX_FILE_BYTES, UTF-8 (a byte order mark is allowed)."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, None, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"cannot read file: "
                                                         f"{exc.strerror or exc}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([ConfigProblem(file, None, "", f"larger than {MAX_FILE_BYTES >> 20} "
                                                         "MiB; a configuration is a few KiB")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(file, line, "", f"not UTF-8 text (byte "
                                                         f"0x{data[exc.start]:02x})")]) from None


def load_config(path: str | Path, *,
                architecture_known: ArchitectureCheck = transformers_architecture_known) -> Config:
    """Read, validate and expand a configuration file. Raises ConfigError with every problem."""
    file = str(path)
    root = _yaml_load(_read(path, file), file)
    if not isinstance(root, dict):
        got = "an empty file" if root is None else f"a {type(root).__name__}"
        raise ConfigError([ConfigProblem(file, 1, "", f"expected a mapping with a 'suites' "
                                                      f"key, got {got}")])
    try:
        parsed = _File.model_validate(_plain(root))
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, file, root, _File)) from None

    check = _Checker(file, root, architecture_known)
    check.matrix_conflicts(parsed.defaults, ("defaults",))
    suites = tuple(_expand_suite(check, parsed, name, suite)
                   for name, suite in parsed.suites.items())
    if check.problems:
        raise ConfigError(sorted(check.problems, key=lambda p: (p.line or 0, p.field)))
    return Config(file, suites, tuple(check.notes), parsed.storage, parsed.serve,
                  parsed.detection, parsed.environment, parsed.report)
