"""Expansion: every benchmark of every suite, its settings merged from file, suite and
benchmark level and its matrix expanded into BenchmarkSpecs, checked as it goes (what the
backend can run, duplicate workloads, the number of benchmarks)."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import (
    TypeAdapter,
    ValidationError,
)

from collector.adapters.config.bounds import (
    INT8_MAX,
    MATRIX_AXES,
    MAX_BENCHMARKS,
    MAX_MODEL_REF_CHARS,
    MAX_NAME_CHARS,
    Loc,
)
from collector.adapters.config.problems import problems_from, short
from collector.adapters.config.schema import (
    BenchmarkEntry,
    ConfigFile,
    LevelSettings,
    SuiteEntry,
)
from collector.adapters.config.settings import Suite
from collector.adapters.config.yaml_source import field_path, line_of, plain
from collector.domain import backends, capabilities
from collector.domain.errors import ConfigProblem
from collector.domain.model import (
    BenchmarkSpec,
    HubSource,
    MeasurementMode,
    MeasurementSettings,
    ModelSource,
    SyntheticSource,
)
from collector.domain.serving import Batching, Serving

_MODEL_SOURCE: TypeAdapter[Any] = TypeAdapter(ModelSource)


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def usable_cores() -> int | None:
    """The CPUs this process may run on (its affinity mask: a container's or taskset's
    share, not the machine's), None where the platform cannot say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


# Axes a benchmark under load takes from its load (lengths) or leaves to it (batching).
LOAD_AXES = ("sequence_length", "new_tokens", "batch_size")


def _axis_values(levels: Sequence[LevelSettings | None], axis: str) -> list[Any] | None:
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


def _scalar(levels: Sequence[LevelSettings | None], field: str) -> Any:
    for level in reversed(levels):
        if level is not None and getattr(level, field) is not None:
            return getattr(level, field)
    return None


def _merged_measurement(levels: Sequence[LevelSettings | None]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for level in levels:
        if level is not None and level.measurement is not None:
            merged.update(level.measurement.model_dump(exclude_none=True))
    return merged


_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# An architecture check: True for a model class, None when it cannot tell (transformers not
# installed), False for a name transformers does not have, or a text saying what the name is
# instead of a model class (a config, a tokenizer, an Auto class, a base class...).
ArchitectureCheck = Callable[[str], "bool | str | None"]


def transformers_architecture_known(name: str) -> bool | str | None:
    """Whether `name` is a model class of the installed transformers, from its lazy module's
    table of names and the modules defining them: nothing is imported but transformers'
    __init__ (no torch, no model code). None when transformers is not installed."""
    classes = _transformers_classes()
    if classes is None:
        return None
    if name not in classes or not name[:1].isupper():
        return False
    return model_class_problem(name, classes[name]) or True


# Exported from a modeling module but not a model: base classes, building blocks, outputs.
_NOT_A_MODEL = re.compile(
    r".*(PreTrainedModel|PretrainedModel|Layer|Attention|RMSNorm|LayerNorm|MLP|Router|Module"
    r"|Output|Cache|Session|DecodeHead|Embeddings)")
_KINDS = (("configuration_", "a configuration class"), ("tokenization_", "a tokenizer"),
          ("processing_", "a processor"), ("image_processing_", "an image processor"),
          ("feature_extraction_", "a feature extractor"), ("video_processing_",
                                                           "a video processor"))


def model_class_problem(name: str, module: str) -> str | None:
    """None when `name`, defined in transformers' `module` (a dotted path below
    transformers, "" when unknown), is a model class the worker can build from its config
    (`cls(cls.config_class(**config))`); else what it is instead."""
    parts = module.split(".")
    leaf = parts[-1]
    kinds = [kind for prefix, kind in _KINDS if leaf.startswith(prefix)]
    checks: tuple[tuple[object, str], ...] = (
        (name.upper() == name, "not a model class"),  # MODEL_MAPPING and its kind
        (name.startswith("Auto") or parts[:2] == ["models", "auto"],
         "an Auto class, which picks a class for a checkpoint: name the class itself"),
        (kinds, kinds[0] if kinds else ""),
        (leaf == "modeling_utils" or re.fullmatch(r".*(PreTrainedModel|PretrainedModel)", name),
         "a base class of models"),
        (module and (parts[0] != "models" or not leaf.startswith("modeling_")
                     or leaf.startswith(("modeling_tf_", "modeling_flax_"))),
         f"not a model class (it comes from transformers.{module})"),
        (not module and re.fullmatch(
            r".*(Config|Tokenizer|TokenizerFast|Processor|FeatureExtractor|Trainer|Arguments)",
            name), "not a model class"),
        (_NOT_A_MODEL.fullmatch(name), "a building block of a model, not a model class"),
    )
    return next((text for hit, text in checks if hit), None)


@functools.cache
def _transformers_classes() -> dict[str, str] | None:
    """Every public name of transformers and the module defining it ("" where the lazy
    module does not say): once per process (0.6 s), not per name."""
    try:
        import transformers
    except ImportError:
        return None
    where = getattr(transformers, "_class_to_module", None)
    if isinstance(where, dict):
        return {str(name): str(module) for name, module in where.items()}
    return dict.fromkeys(dir(transformers), "")  # an older layout: names only


class Checker:
    """Collects problems of one file while specs are expanded."""

    def __init__(self, file: str, root: Any, architecture_known: ArchitectureCheck) -> None:
        self.file = file
        self.root = root
        self.problems: list[ConfigProblem] = []
        self.notes: list[str] = []
        self._architecture_known = architecture_known
        self._checked: dict[str, bool | str | None] = {}
        self.benchmarks = 0  # expanded so far, for MAX_BENCHMARKS
        # Every workload of the file (its series id, host aside) -> (suite, benchmark name).
        self.workloads: dict[str, tuple[str, str]] = {}

    def threads(self, threads: int | None, levels: Sequence[LevelSettings | None], loc: Loc,
                suite_name: str) -> None:
        """A note when a benchmark asks for more threads than this host has cores: the
        config may be meant for a bigger host (so it is not refused), but here it would
        measure threads waiting for a core, and report it as the model's speed."""
        cores = usable_cores()
        if threads is None or cores is None or threads <= cores:
            return
        where: Loc = next(
            (at for level, at in zip(reversed(levels), (
                loc, ("suites", suite_name, "defaults"), ("defaults",)), strict=True)
             if level is not None and level.threads is not None), loc)
        note = (f"{self.file}:{line_of(self.root, (*where, 'threads'))}: "
                f"{field_path(self.root, (*where, 'threads'))}: threads {threads} is more "
                f"than the {cores} core(s) this host lets the collector use: here the "
                "benchmark would measure threads waiting for a core")
        if note not in self.notes:
            self.notes.append(note)

    def add(self, loc: Loc, message: str, *, key: bool = False) -> None:
        problem = ConfigProblem(self.file, line_of(self.root, loc, key=key),
                                field_path(self.root, loc), message)
        if problem not in self.problems:
            self.problems.append(problem)

    def matrix_conflicts(self, level: LevelSettings | None, loc: Loc) -> None:
        if level is None or level.matrix is None:
            return
        for axis in MATRIX_AXES:
            if getattr(level, axis) is not None and getattr(level.matrix, axis) is not None:
                self.add((*loc, "matrix", axis),
                         f"{axis} is set both as a value and in matrix; set one or the other",
                         key=True)

    def measurement(self, levels: Sequence[LevelSettings | None], loc: Loc,
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
                           levels: Sequence[LevelSettings | None], loc: Loc) -> bool:
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

    def load(self, bench: BenchmarkEntry, loc: Loc) -> dict[str, Batching | Serving] | None:
        """The benchmark's load ({} for none). Under load, prompt and output lengths are the
        load's (input_tokens and output_tokens) and there is one load per benchmark: None
        (with a problem) when the benchmark says otherwise."""
        load = bench.batching or bench.serving
        if bench.batching is not None and bench.serving is not None:
            self.add((*loc, "serving"), "a benchmark is either batching (in the worker) or "
                     "serving (a server under load), not both; make them two benchmarks")
            return None
        if load is None:
            return {}
        field_name = "batching" if bench.batching is not None else "serving"
        before = len(self.problems)
        for field, which in (("sequence_length", "input_tokens"),
                             ("new_tokens", "output_tokens")):
            if _axis_values([bench], field):
                self.add((*loc, field), f"under load the lengths are {field_name}."
                         f"{which}; set {which}.mean there instead of {field}")
        if _axis_values([bench], "batch_size") not in (None, [1]):
            self.add((*loc, "batch_size"), f"under load the batch is the server's or the "
                     f"scheduler's to form; set {field_name}.requests or a profile instead")
        return {field_name: load} if len(self.problems) == before else None

    def model_config(self, raw: Any, loc: Loc) -> bool:
        """A synthetic model's `config` goes to transformers and, as JSON, into both stores:
        plain JSON data only. False (with problems) otherwise."""
        model = raw.get("model") if isinstance(raw, dict) else None
        if not isinstance(model, dict) or "config" not in model:
            return True
        before = len(self.problems)
        self._json_data(model["config"], (*loc, "model", "config"))
        self._config_keys(model["config"], (*loc, "model", "config"), top=True)
        return len(self.problems) == before

    def _config_keys(self, value: Any, loc: Loc, *, top: bool) -> None:
        """The config's keys become attributes of a transformers config object
        (`config_class(**config)`): at the top, attribute names (letters, digits and
        underscores, not starting with an underscore: `__class__` would replace the object's
        class, `_name_or_path` is transformers' own); below it (sub-configs, label maps),
        anything but a dunder name."""
        if isinstance(value, list):
            for index, item in enumerate(value):
                self._config_keys(item, (*loc, index), top=False)
        if not isinstance(value, dict):
            return
        for key, item in value.items():
            if not isinstance(key, str):
                continue  # reported by _json_data
            if (top and not _ATTRIBUTE.fullmatch(key)) or (
                    key.startswith("__") and key.endswith("__")):
                self.add((*loc, key), f"not a configuration attribute (got {short(key)}); "
                         "expected a name such as n_layer or hidden_size: letters, digits "
                         "and underscores, not starting with an underscore", key=True)
            else:
                self._config_keys(item, (*loc, key), top=False)

    def _json_data(self, value: Any, loc: Loc) -> None:
        if value is None or isinstance(value, bool | str):
            return
        if isinstance(value, int):
            if not -INT8_MAX - 1 <= value <= INT8_MAX:
                self.add(loc, f"integer out of the 64-bit range (got {short(value)})")
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
                    self.add((*loc, key), f"keys must be strings (got {short(key)}); quote "
                                          "it", key=True)
                else:
                    self._json_data(item, (*loc, key))
        else:
            self.add(loc, f"expected plain data (a string, number, boolean, null, list or "
                          f"mapping), got a {type(value).__name__} ({short(str(value))}); "
                          "quote it to make it a string")

    def model(self, raw: Any, bench: BenchmarkEntry, loc: Loc) -> bool:
        """The model's config and source; False when the benchmark cannot be expanded."""
        self.source(bench, loc)
        return self.model_config(raw, loc)

    def strict_values(self, raw: Any, loc: Loc) -> bool:
        """The model source and the backends' own settings are the domain's models, which
        convert `'8'` to 8 and `yes` to True: here their numbers and flags must be what
        they say (as the config's own fields are). False (with problems) otherwise."""
        if not isinstance(raw, dict):
            return True
        before = len(self.problems)
        parts: list[tuple[str, Any]] = [("model", _MODEL_SOURCE)] if "model" in raw else []
        parts += [(name, _adapter(kind)) for name, kind in backends.with_settings().items()
                  if name in raw]
        parts += [(name, _adapter(kind)) for name, kind in (("batching", Batching),
                                                            ("serving", Serving))
                  if raw.get(name) is not None]
        for field, adapter in parts:
            try:
                if field in ("batching", "serving"):  # their enums are named by their values
                    adapter.validate_json(json.dumps(plain(raw[field])), strict=True)
                else:
                    adapter.validate_python(plain(raw[field]), strict=True)
            except ValidationError as exc:
                for problem in problems_from(exc, self.file, self.root, BenchmarkEntry,
                                             (*loc, field)):
                    if problem not in self.problems:
                        self.problems.append(problem)
        return len(self.problems) == before

    def source(self, bench: BenchmarkEntry, loc: Loc) -> None:
        model = bench.model
        # What locates the model ends up in an indexed column of the history database.
        for field, limit in (("id", MAX_MODEL_REF_CHARS), ("revision", MAX_MODEL_REF_CHARS),
                             ("path", MAX_MODEL_REF_CHARS), ("architecture", MAX_NAME_CHARS)):
            value = getattr(model, field, None)
            if isinstance(value, str) and len(value) > limit:
                self.add((*loc, "model", field), f"at most {limit} characters (got "
                         f"{len(value):,}: {short(value)})")
        if isinstance(model, HubSource) and model.trust_remote_code and not re.fullmatch(
                r"[0-9a-f]{40}", model.revision):
            self.add((*loc, "model", "revision"),
                     f"trust_remote_code runs the model repository's own code: pin revision "
                     f"to a full 40-character commit hash (got {model.revision!r}), so the "
                     "code that runs cannot change under the same name")
        if isinstance(model, SyntheticSource) and model.seed > INT8_MAX:
            self.add((*loc, "model", "seed"), f"a seed fits in 64 bits (got {model.seed})")

    def expansion(self, levels: Sequence[LevelSettings | None], axes: dict[str, list[Any]],
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
        verdict = self._checked[arch]
        if verdict is False:
            self.add((*loc, "model", "architecture"),
                     f"unknown architecture (got {arch!r}); expected a transformers model "
                     "class name such as GPT2LMHeadModel or BertForSequenceClassification")
        elif isinstance(verdict, str):
            self.add((*loc, "model", "architecture"),
                     f"{arch!r} is {verdict}; expected a model class (the worker builds "
                     "it from its config), such as GPT2LMHeadModel, BertModel or "
                     "BertForSequenceClassification")
        elif verdict is None:
            note = (f"architecture {arch!r} not checked: transformers is not installed here; "
                    "the worker checks it")
            if note not in self.notes:
                self.notes.append(note)


def _specs(check: Checker, fixed: dict[str, Any], axes: dict[str, list[Any]], *,
           suite: str, name: str, loc: Loc) -> list[BenchmarkSpec]:
    """One benchmark's matrix, expanded; `check.workloads` maps the identities of the whole
    file to the suites and names of their benchmarks."""
    specs = []
    for combo in itertools.product(*axes.values()):
        spec = BenchmarkSpec(**fixed, **dict(zip(axes, combo, strict=True)))
        impossible = capabilities.problem(spec)
        if impossible is not None:
            field, message = impossible
            check.add((*loc, field), f"{message} ({spec.label})")
            break
        # Two benchmarks with one series identity would write one series twice per run; in
        # two suites, they would share one series (the suite is a label, not identity) that
        # each suite's runs move and that is labelled with one of them.
        workload = spec.series_id("")  # the series it writes, whichever the host
        if workload in check.workloads:
            first_suite, first_name = check.workloads[workload]
            if first_suite != suite:
                check.add((*loc, "name"), f"repeats the workload of benchmark "
                          f"{first_name!r} of suite {first_suite!r} ({spec.label}): both "
                          "suites would write one series (a series is its workload, "
                          "whatever the suite); keep the benchmark in one suite, or make "
                          "the two differ")
            elif first_name != name:  # else already reported as a duplicate name
                check.add((*loc, "name"), f"repeats the workload of benchmark "
                          f"{first_name!r} ({spec.label})")
            break
        check.workloads[workload] = (suite, name)
        specs.append(spec)
    return specs


def expand_suite(check: Checker, parsed: ConfigFile, suite_name: str, suite: SuiteEntry) -> Suite:
    specs: list[BenchmarkSpec] = []
    first_index: dict[str, int] = {}
    check.matrix_conflicts(suite.defaults, ("suites", suite_name, "defaults"))
    check.strict_values(check.root["suites"][suite_name].get("defaults"),
                        ("suites", suite_name, "defaults"))
    for index, raw in enumerate(suite.benchmarks):
        loc: Loc = ("suites", suite_name, "benchmarks", index)
        try:
            bench = BenchmarkEntry.model_validate(raw)
        except ValidationError as exc:
            check.problems.extend(problems_from(exc, check.file, check.root, BenchmarkEntry, loc))
            # The model may be fine while another field is not: still check its architecture.
            raw_model = raw.get("model")
            if isinstance(raw_model, dict) and raw_model.get("source") == "synthetic":
                with contextlib.suppress(ValidationError):
                    check.architecture(SyntheticSource.model_validate(raw_model), loc)
            continue
        if not check.strict_values(raw, loc) or not check.model(raw, bench, loc):
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
        load = check.load(bench, loc)
        if load is None:
            continue
        fixed.update(load)
        for field in ("task", "threads", "timeout_s", "memory_limit_mb", "kernels",
                      *backends.with_settings()):
            value = _scalar(levels, field)
            if value is not None:
                fixed[field] = value
        check.threads(fixed.get("threads"), levels, loc, suite_name)
        axes = {a: v for a in MATRIX_AXES if (v := _axis_values(levels, a)) is not None}
        for axis in LOAD_AXES if load else ():  # the load's lengths, not the defaults'
            axes.pop(axis, None)
        if not check.expansion(levels, axes, loc, suite_name):
            continue
        specs += _specs(check, fixed, axes, suite=suite_name, name=bench.name, loc=loc)
    return Suite(suite_name, suite.description, tuple(specs), suite.schedule)


