"""The transformers `benchmark/` module's configuration, read as ours.

A file whose keys are the module's (a top-level `benchmarks:` list of entries with
`model_name_or_path`, optionally `global_settings` and `output_settings`, and neither
`suites` nor `version`) is translated into a native document (one suite,
`transformers-benchmark`), which the native machinery then validates and expands as it does
any file. Its problems are put back where they came from: the old file, its line, the old
field. The same translation serves `collector convert-config` (the native YAML, each value
commented with its origin) and `collector.compat.transformers_benchmark` (the module's
`BenchmarkConfig`): one mapping, documented in docs/configuration.md ("Coming from the
transformers benchmark module"):

- `model_name_or_path`: a Hub model (`source: hub`, revision `main` unless the entry adds
  `revision:`); a path that starts with `/`, `./`, `../` or `~` is a local directory
  (`source: local`) and must exist. Its task comes from FAMILIES (keyed on the name after the
  last `/`), else `task: auto` (the worker reads it from the model's config).
- `num_iterations`, `warmup_iterations`: a fixed count (min = max = num_iterations, no
  minimum duration, a maximum of a day: min_iterations always run, so time never cuts them
  short). target_rel_ci is what decides `converged`, not when to stop: 1% for forward passes
  and 3% for generate() calls (and `task: auto`: 1%), configs/default.yml's targets, so a
  result reads as clean, or as unsettled, by the same standard as ours.
- `sequence_length` of a generation model is the whole context: the prompt is
  sequence_length minus the new tokens (`num_tokens_to_generate`, the module's default 100;
  half the length where that leaves no prompt), so gpt2's 1024 and opt's 2048 fit.
- `torch_dtype`: float16, bfloat16, float32; `auto` (the checkpoint's own dtype, unknown
  without fetching it) reads as float32, with a note. Unset: float32, as from_pretrained.
- `device`: cuda, cuda:N, cpu or auto (cuda where an NVIDIA device node or driver is present,
  else cpu; decided here without torch, with a note). Unset: auto.
- `trust_remote_code` is the model's; `use_cache: true` is what our generate() always does
  (the KV cache, transformers' default); false has no equivalent and is refused.
- `output_settings`: save_detailed_results, save_model_info and save_system_info true are
  what every result keeps (false is refused: it cannot be turned off); generate_plots is
  `collector report`'s to do.
- A key of an entry overrides the same key of `global_settings`; every entry key but
  `model_name_or_path` and `revision` may be set there.
"""

from __future__ import annotations

import copy
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, ValidationError, field_validator

from collector.adapters.config.bounds import DAY_S, MAX_NAME_CHARS, Count, Loc, PositiveInt
from collector.adapters.config.problems import problems_from
from collector.adapters.config.settings import Strict
from collector.adapters.config.yaml_source import field_path, line_of, plain
from collector.domain.errors import ConfigError, ConfigProblem
from collector.domain.workload import Task

SUITE = "transformers-benchmark"
NEW_TOKENS = 100  # the module's num_tokens_to_generate default
SEQUENCE_LENGTH = 128
NUM_ITERATIONS = 100
WARMUP_ITERATIONS = 10
TIMEOUT_S = 3600.0  # the module has none; a fixed count must not meet our 600 s default
TARGET_REL_CI = {Task.TEXT_GENERATION: 0.03}  # else 0.01 (configs/default.yml's targets)
_LOCAL = ("/", "./", "../", "~")
_TINY = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
         "num_hidden_layers": 1, "vocab_size": 512}
_TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


@dataclass(frozen=True)
class Family:
    """Models known by the name after the last `/` of their id: their task and the tiny
    synthetic model of the same architecture that `convert-config --synthetic` puts in
    their place (random weights, the family's real position limits)."""

    name: str
    prefixes: tuple[str, ...]
    task: Task
    architecture: str
    config: dict[str, Any]
    sequence_length: int = SEQUENCE_LENGTH  # when the entry sets none


FAMILIES = (
    Family("distilbert", ("distilbert-",), Task.FEATURE_EXTRACTION, "DistilBertModel",
           {"n_layers": 1, "dim": 32, "n_heads": 2, "hidden_dim": 64, "vocab_size": 512,
            "max_position_embeddings": 512}),
    Family("roberta", ("roberta-",), Task.FEATURE_EXTRACTION, "RobertaModel",
           {**_TINY, "max_position_embeddings": 514}),  # positions start after the pad id
    Family("bert", ("bert-",), Task.FEATURE_EXTRACTION, "BertModel",
           {**_TINY, "max_position_embeddings": 512}),
    Family("gpt2", ("gpt2", "distilgpt2"), Task.TEXT_GENERATION, "GPT2LMHeadModel",
           {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 1024, "vocab_size": 512,
            "bos_token_id": 1, "eos_token_id": 2}),
    Family("opt", ("opt-",), Task.TEXT_GENERATION, "OPTForCausalLM",
           {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
            "ffn_dim": 64, "word_embed_proj_dim": 32, "vocab_size": 512,
            "max_position_embeddings": 2048}),
    # Zero-shot classification prompts are short: 16 tokens, as the shipped clip benchmarks.
    Family("clip", ("clip-",), Task.ZERO_SHOT_IMAGE_CLASSIFICATION, "CLIPModel",
           {"projection_dim": 16,
            "text_config": {**_TINY, **_TOKENS, "max_position_embeddings": 77},
            "vision_config": {**_TINY, "image_size": 224, "patch_size": 32}},
           sequence_length=16),
)


def family_of(model: str) -> Family | None:
    if model.startswith(_LOCAL):
        return None
    name = model.rsplit("/", 1)[-1].lower()
    return next((f for f in FAMILIES if name.startswith(f.prefixes)), None)


# -- the module's schema --------------------------------------------------------------------

class Settings(Strict):
    """What an entry and global_settings may both set."""

    batch_size: PositiveInt | None = None
    sequence_length: PositiveInt | None = None
    num_iterations: PositiveInt | None = None
    num_tokens_to_generate: PositiveInt | None = None
    warmup_iterations: Count | None = None
    device: StrictStr | None = None
    torch_dtype: Literal["float16", "bfloat16", "float32", "auto"] | None = None
    trust_remote_code: StrictBool | None = None
    use_cache: StrictBool | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"cuda(:[0-9]+)?|cpu|auto", value):
            raise ValueError("expected cuda, cuda:N, cpu or auto")
        return value

    @field_validator("use_cache")
    @classmethod
    def _cache(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("no equivalent: the collector's generate() always uses the KV "
                             "cache (transformers' default), as use_cache: true does; remove "
                             "the key or set it to true")
        return value


class Entry(Settings):
    model_name_or_path: Annotated[StrictStr, Field(min_length=1)]
    revision: Annotated[StrictStr, Field(min_length=1)] | None = None  # ours: pins a Hub commit


class OutputSettings(Strict):
    save_detailed_results: StrictBool | None = None
    save_model_info: StrictBool | None = None
    save_system_info: StrictBool | None = None
    generate_plots: StrictBool | None = None

    @field_validator("save_detailed_results", "save_model_info", "save_system_info")
    @classmethod
    def _always(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("every result keeps its samples, model and environment, and "
                             "that cannot be turned off; remove the key or set it to true")
        return value


class LegacyFile(Strict):
    benchmarks: Annotated[list[Entry], Field(min_length=1)]
    global_settings: Settings | None = None
    output_settings: OutputSettings | None = None


def is_legacy(root: Any) -> bool:
    """The module's format, by its keys; never guessed from anything else."""
    if not isinstance(root, dict) or "suites" in root or "version" in root:
        return False
    entries = root.get("benchmarks")
    listed = entries if isinstance(entries, list) else [entries]  # one entry: still theirs
    return "global_settings" in root or "output_settings" in root or any(
        isinstance(e, dict) and "model_name_or_path" in e for e in listed)


# -- the translation ------------------------------------------------------------------------

@dataclass(frozen=True)
class Origin:
    """Where a native value came from: a legacy location (None: a default) and in words."""

    loc: Loc | None
    text: str
    hint: str = ""  # appended to a native problem put back here


def nvidia_present() -> bool:
    """Whether this host shows an NVIDIA GPU, without torch: a device node or the driver."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia/version").exists()


@dataclass
class Translation:
    """A legacy file as a native document, each value's origin, and the notes to print."""

    file: str
    root: Any
    document: dict[str, Any]
    origins: dict[Loc, Origin] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def where(self, loc: Loc) -> str:
        """`file:line: field`, as a problem names it (plain data has no lines)."""
        line = line_of(self.root, loc)
        return f"{self.file}{'' if line is None else f':{line}'}: {field_path(self.root, loc)}"

    def located(self, problems: list[ConfigProblem]) -> list[ConfigProblem]:
        """Native problems put back on the old file's lines and fields."""
        paths = sorted(((field_path(self.document, loc), loc) for loc in self.origins),
                       key=lambda item: -len(item[0]))
        out = []
        for problem in problems:
            native = next((loc for path, loc in paths if problem.field == path
                           or problem.field.startswith((path + ".", path + "["))), None)
            if problem.file != self.file or native is None:
                out.append(problem)
                continue
            loc = self.origins[native].loc or self.origins[native[:4]].loc or ()
            message = problem.message
            tail = problem.field.split("]", 1)[-1].lstrip(".")  # the field in its benchmark
            if tail and loc and tail.split(".")[0] != loc[-1]:
                message += f" (the native config's {tail}{self.origins[native].hint})"
            out.append(ConfigProblem(self.file, line_of(self.root, loc),
                                     field_path(self.root, loc), message))
        return sorted(out, key=lambda p: (p.line or 0, p.field))


class _Builder:
    """Builds the native document of a validated legacy file, one entry at a time."""

    def __init__(self, file: str, root: Any, parsed: LegacyFile, *, synthetic: bool,
                 device: str | None) -> None:
        self.t = Translation(file, root, {"version": 1, "suites": {SUITE: {
            "description": f"translated from {Path(file).name} (the transformers benchmark "
                           "module's format)", "benchmarks": []}}})
        self.parsed = parsed
        self.synthetic = synthetic
        self.device = device
        self.problems: list[ConfigProblem] = []
        self.names: set[str] = set()
        self.half_on_cpu: list[str] = []
        # The entry being built: its native fields and their origins.
        self.index = 0
        self.out: dict[str, Any] = {}
        self.origins: dict[Loc, Origin] = {}

    @property
    def here(self) -> Loc:
        return ("benchmarks", self.index)

    def value(self, key: str, default: Any,
              unset: str = "not set: the default") -> tuple[Any, Origin]:
        """The entry's value of a key, else global_settings', else the default."""
        for level, loc in ((self.parsed.benchmarks[self.index], (*self.here, key)),
                           (self.parsed.global_settings, ("global_settings", key))):
            if level is not None and getattr(level, key) is not None:
                return getattr(level, key), Origin(loc, field_path(self.t.root, loc))
        return default, Origin(None, unset)

    def put(self, key: Loc, value: Any, origin: Origin) -> None:
        target = self.out
        for part in key[:-1]:
            target = target.setdefault(str(part), {})
        target[str(key[-1])] = value
        self.origins[key] = origin

    def where(self, origin: Origin) -> str:
        return self.t.where(origin.loc or self.here)

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(ConfigProblem(self.t.file, line_of(self.t.root, loc),
                                           field_path(self.t.root, loc), message))

    def name(self, model: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.\-]", "-", model.rstrip("/").rsplit("/", 1)[-1])
        base = base.lstrip("-_.")[:MAX_NAME_CHARS - 4] or "model"
        name, count = base, 1
        while name in self.names:
            count += 1
            name = f"{base}-{count}"
        self.names.add(name)
        return name

    def entry(self, index: int) -> None:
        self.index, self.out, self.origins = index, {}, {}
        model_id = self.parsed.benchmarks[index].model_name_or_path
        family = family_of(model_id)
        if not self.model(model_id, family):
            return
        task = family.task if family is not None else Task.AUTO
        self.put(("task",), task.value, Origin(
            (*self.here, "model_name_or_path"), f"the {family.name} family" if family else
            "not a known family: the worker reads the task from the model's config"))
        self.put_device()
        self.put_dtype()
        self.put(("batch_size",), *self.value("batch_size", 1))
        if not self.put_lengths(task, family):
            return
        self.put(("timeout_s",), TIMEOUT_S, Origin(None, "the module has no timeout; an hour "
                                                         "bounds a stuck worker"))
        self.put_measurement(task)
        benchmarks = self.t.document["suites"][SUITE]["benchmarks"]
        prefix: Loc = ("suites", SUITE, "benchmarks", len(benchmarks))
        benchmarks.append(self.out)
        self.t.origins[prefix] = Origin(self.here, field_path(self.t.root, self.here))
        self.t.origins.update({(*prefix, *key): origin for key, origin in self.origins.items()})

    def model(self, model_id: str, family: Family | None) -> bool:
        """The benchmark's name and model; False (with a problem) when there is none."""
        at: Loc = (*self.here, "model_name_or_path")
        source = Origin(at, field_path(self.t.root, at))
        self.put(("name",), self.name(model_id), Origin(at, f"from {source.text}"))
        model: dict[str, Any]
        if model_id.startswith(_LOCAL):
            if not Path(model_id).expanduser().is_dir():
                prefix = next(p for p in _LOCAL if model_id.startswith(p))
                self.fail(at, f"a path (it starts with {prefix}) that is not a directory here "
                              f"(got {model_id!r}); a Hub id has no such prefix")
                return False
            model = {"source": "local", "path": model_id}
        elif self.synthetic and family is not None:
            model = {"source": "synthetic", "architecture": family.architecture,
                     "config": copy.deepcopy(family.config),
                     "seed": zlib.crc32(model_id.encode())}  # two models, two series
            source = Origin(at, f"--synthetic: a tiny {family.architecture} with random "
                                f"weights in place of {model_id}")
        elif self.synthetic:
            self.fail(at, f"--synthetic has no stand-in for {model_id!r}: not in a known "
                          f"family ({', '.join(f.name for f in FAMILIES)})")
            return False
        else:
            model = {"source": "hub", "id": model_id}
        revision = self.parsed.benchmarks[self.index].revision
        if revision is not None and model["source"] == "hub":
            model["revision"] = revision
        trust, trust_from = self.value("trust_remote_code", False)
        if trust:
            model["trust_remote_code"] = True
        self.put(("model",), model, source)
        self.origins[("model", "trust_remote_code")] = trust_from
        self.origins[("model", "revision")] = (
            Origin((*self.here, "revision"), "revision") if revision is not None else
            Origin(trust_from.loc, "", "; add `revision:` next to model_name_or_path"))
        return True

    def put_device(self) -> None:
        device, origin = self.value("device", "auto", "not set: auto")
        if self.device is not None and self.device != device:
            origin = Origin(origin.loc, f"--device {self.device} (the file says {device})")
            device = self.device
        if device == "auto":
            device = "cuda" if nvidia_present() else "cpu"
            self.t.notes.append(f"{self.where(origin)}: device auto is {device} here "
                                f"({'an' if device == 'cuda' else 'no'} NVIDIA device node "
                                "or driver found)")
            origin = Origin(origin.loc, f"auto: {device} on the host that converted it")
        self.put(("device",), device, origin)

    def put_dtype(self) -> None:
        dtype, origin = self.value("torch_dtype", "float32",
                                   "not set: float32, as from_pretrained loads")
        if dtype == "auto":
            self.t.notes.append(f"{self.where(origin)}: torch_dtype auto (the checkpoint's own "
                                "dtype) cannot be known without fetching the model: read as "
                                "float32; set float16 or bfloat16 to match a half-precision "
                                "checkpoint")
            dtype = "float32"
        if dtype != "float32" and self.out["device"] == "cpu":
            self.half_on_cpu.append(field_path(self.t.root, self.here))
        self.put(("dtype",), dtype, origin)

    def put_lengths(self, task: Task, family: Family | None) -> bool:
        """sequence_length, and new_tokens where the model may generate; False (with a
        problem) when a generation model's length cannot hold a prompt and its tokens."""
        length, length_from = self.value(
            "sequence_length", family.sequence_length if family else SEQUENCE_LENGTH,
            f"not set: the {family.name + ' family' if family else 'module'}'s default")
        new, new_from = self.value("num_tokens_to_generate", NEW_TOKENS,
                                   "the module's num_tokens_to_generate default")
        if task is Task.TEXT_GENERATION:
            if new_from.loc is None and new >= length:
                new, new_from = length // 2, Origin(None, "half of sequence_length (less "
                                                          "than the module's default 100)")
            if length < 2:
                self.fail(length_from.loc or self.here, "a generation model's "
                          "sequence_length holds a prompt and new tokens: at least 2")
                return False
            if new >= length:
                self.fail(new_from.loc or self.here, f"a generation model's sequence_length "
                          f"({length}) holds the prompt and the {new} new tokens: it must be "
                          "larger")
                return False
            self.t.notes.append(f"{self.where(length_from)}: generation: a prompt of "
                                f"{length - new} tokens and {new} new tokens, so both fit "
                                f"sequence_length {length}")
            length_from = Origin(length_from.loc, f"{length_from.text}: {length} minus "
                                                  f"{new} new tokens")
            length -= new
        self.put(("sequence_length",), length, length_from)
        if task in (Task.AUTO, Task.TEXT_GENERATION):
            self.put(("new_tokens",), new, new_from)
        return True

    def put_measurement(self, task: Task) -> None:
        count, count_from = self.value("num_iterations", NUM_ITERATIONS)
        self.put(("measurement", "warmup_iterations"),
                 *self.value("warmup_iterations", WARMUP_ITERATIONS))
        self.put(("measurement", "min_iterations"), count, count_from)
        self.put(("measurement", "max_iterations"), count, count_from)
        self.put(("measurement", "min_duration_s"), 0.0, Origin(None, "a fixed count"))
        self.put(("measurement", "max_duration_s"), DAY_S,
                 Origin(None, "never cuts min_iterations short"))
        self.put(("measurement", "target_rel_ci"), TARGET_REL_CI.get(task, 0.01),
                 Origin(None, "what converged means; the count is fixed"))


def translate(root: Any, file: str, *, synthetic: bool = False,
              device: str | None = None) -> Translation | None:
    """The native document of a legacy file (None for any other): ConfigError with the
    old file's line and field for what the module's format itself does not allow."""
    if not is_legacy(root):
        return None
    try:
        parsed = LegacyFile.model_validate(plain(root))
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, file, root, LegacyFile)) from None
    builder = _Builder(file, root, parsed, synthetic=synthetic, device=device)
    for index in range(len(parsed.benchmarks)):
        builder.entry(index)
    if builder.problems:
        raise ConfigError(builder.problems)
    notes = builder.t.notes
    if builder.half_on_cpu:
        which = ("every benchmark" if len(builder.half_on_cpu) == len(parsed.benchmarks)
                 else ", ".join(builder.half_on_cpu))
        notes.append(f"{file}: {which}: float16 or bfloat16 on cpu "
                     "runs, slower than float32 on most CPUs (few have half-precision "
                     "matrix units)")
    if parsed.output_settings is not None:
        notes.insert(0, f"{builder.t.where(('output_settings',))}: every result keeps its "
                        "samples, model and environment; plots come from `collector report`")
    notes.insert(0, f"{file}: read as the transformers benchmark module's format "
                    f"(translated into suite {SUITE}: models as hub or local models with their "
                    "family's task, num_iterations as a fixed count; docs/configuration.md, "
                    f"\"Coming from the transformers benchmark module\"; `collector "
                    f"convert-config {file}` writes the native equivalent)")
    return builder.t


def render(translation: Translation) -> str:
    """The native document as YAML, each value commented with where it came from."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def build(node: Any, loc: Loc) -> Any:
        if isinstance(node, list):
            return CommentedSeq(build(item, (*loc, index)) for index, item in enumerate(node))
        if not isinstance(node, dict):
            return node
        out = CommentedMap()
        for key, value in node.items():
            out[key] = build(value, (*loc, key))
            origin = translation.origins.get((*loc, key))
            if origin is not None:
                line = line_of(translation.root, origin.loc) if origin.loc else None
                out.yaml_add_eol_comment(origin.text + (f" (line {line})" if line else ""),
                                         key)
        return out

    yaml = YAML()
    yaml.width = 100
    text = io.StringIO()
    yaml.dump(build(translation.document, ()), text)
    return (f"# {Path(translation.file).name}, converted from the transformers benchmark "
            "module's format by `collector convert-config`;\n# each value's comment says "
            "where it came from (docs/configuration.md).\n" + text.getvalue())
