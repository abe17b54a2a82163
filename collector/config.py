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
import itertools
import json
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

from collector.errors import ConfigError, ConfigProblem
from collector.metrics import METRICS
from collector.model import (
    DEVICE_PATTERN,
    NAME_PATTERN,
    Backend,
    BenchmarkSpec,
    CompileSettings,
    Dtype,
    MeasurementMode,
    MeasurementSettings,
    ModelSource,
    SyntheticSource,
    Task,
)

MATRIX_AXES = ("batch_size", "sequence_length", "new_tokens", "dtype", "backend", "device")

_PositiveInt = Annotated[int, Field(ge=1)]
_Device = Annotated[str, Field(pattern=DEVICE_PATTERN)]
_Name = Annotated[str, Field(pattern=NAME_PATTERN)]
_INTERVAL = r"^[0-9]+ ?(second|minute|hour|day|week|month|year)s?$"
Loc = tuple[int | str, ...]
_SECRET_FIELDS = {"database_url", "password"}  # never echoed back in error messages


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MeasurementOverrides(_Strict):
    warmup_iterations: Annotated[int, Field(ge=0)] | None = None
    min_iterations: Annotated[int, Field(ge=1)] | None = None
    max_iterations: Annotated[int, Field(ge=1)] | None = None
    min_duration_s: Annotated[float, Field(ge=0)] | None = None
    max_duration_s: Annotated[float, Field(gt=0)] | None = None
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
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    memory_limit_mb: _PositiveInt | None = None
    measurement: _MeasurementOverrides | None = None
    compile: CompileSettings | None = None
    matrix: _Matrix | None = None


class _Benchmark(_Settings):
    name: _Name
    model: ModelSource


class Schedule(_Strict):
    """When `collector serve` runs a suite: a cron expression or a fixed interval."""

    cron: str | None = None
    interval_s: Annotated[float, Field(gt=0)] | None = None
    timezone: str = "UTC"
    jitter_s: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("set exactly one of cron and interval_s")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), "
                             f"got {self.cron!r}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        return self


class ServeSettings(_Strict):
    """`collector serve`: where /metrics listens and how the service behaves."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    run_at_start: bool = False
    grace_s: Annotated[float, Field(ge=0)] = 60.0
    misfire_grace_s: Annotated[float, Field(gt=0)] = 3600.0
    outbox_retry_s: Annotated[float, Field(gt=0)] = 300.0


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


class DetectionSettings(_Strict):
    """Regression detection after every run (collector.regress). `min_effect` maps metric
    names (or `default`) to the smallest relative change worth reporting."""

    enabled: bool = True
    confirmation: ConfirmationSettings = ConfirmationSettings()
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


class _File(_Strict):
    version: Literal[1] = 1
    defaults: _Settings | None = None
    storage: StorageSettings = StorageSettings()
    serve: ServeSettings = ServeSettings()
    detection: DetectionSettings = DetectionSettings()
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
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = "; ".join(str(p).strip() for p in (exc.context, exc.problem) if p)
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {reason}")]) from None
    except YAMLError as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"invalid YAML: {exc}")]) from None


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
    try:
        import transformers
    except ImportError:
        return None
    return name[:1].isupper() and name in dir(transformers)


class _Checker:
    """Collects problems of one file while specs are expanded."""

    def __init__(self, file: str, root: Any, architecture_known: ArchitectureCheck) -> None:
        self.file = file
        self.root = root
        self.problems: list[ConfigProblem] = []
        self.notes: list[str] = []
        self._architecture_known = architecture_known
        self._checked: dict[str, bool | None] = {}

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
        for field in ("task", "threads", "timeout_s", "memory_limit_mb", "compile"):
            value = _scalar(levels, field)
            if value is not None:
                fixed[field] = value
        axes = {a: v for a in MATRIX_AXES if (v := _axis_values(levels, a)) is not None}
        for combo in itertools.product(*axes.values()):
            spec = BenchmarkSpec(**fixed, **dict(zip(axes, combo, strict=True)))
            # Two benchmarks with one series identity would write one series twice per run.
            workload = json.dumps(spec.identity(), sort_keys=True)
            if workload in workloads:
                if workloads[workload] == bench.name:
                    break  # already reported as a duplicate name
                check.add((*loc, "name"), f"repeats the workload of benchmark "
                          f"{workloads[workload]!r} ({spec.label})")
                break
            workloads[workload] = bench.name
            specs.append(spec)
    return Suite(suite_name, suite.description, tuple(specs), suite.schedule)


def load_config(path: str | Path, *,
                architecture_known: ArchitectureCheck = transformers_architecture_known) -> Config:
    """Read, validate and expand a configuration file. Raises ConfigError with every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"cannot read file: {exc}")]) from None
    root = _yaml_load(text, file)
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
                  parsed.detection)
