"""Immutable domain objects: what to benchmark (BenchmarkSpec) and what came out (RunResult).

Every object validates in its constructor (pydantic, frozen), so an invalid result can never
be built, stored or exported.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector.domain.catalogue import METRICS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
DEVICE_PATTERN = r"^(cpu|cuda(:[0-9]+)?)$"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Task(str, Enum):
    AUTO = "auto"
    TEXT_GENERATION = "text-generation"
    TEXT_CLASSIFICATION = "text-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    IMAGE_CLASSIFICATION = "image-classification"
    SPEECH_RECOGNITION = "speech-recognition"
    ZERO_SHOT_IMAGE_CLASSIFICATION = "zero-shot-image-classification"


GENERATION_TASKS = frozenset({Task.TEXT_GENERATION, Task.SPEECH_RECOGNITION})


class Backend(str, Enum):
    """The runtime a benchmark runs on: one module each under collector/adapters/measure/backends/,
    what each can run in collector/domain/capabilities.py."""

    EAGER = "eager"
    COMPILE = "compile"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


class Quantization(str, Enum):
    """Weight quantization applied after loading (dtype stays the activations' type)."""

    NONE = "none"
    INT8_DYNAMIC = "int8-dynamic"  # int8 weights and dynamically quantized activations
    INT8_WEIGHT_ONLY = "int8-weight-only"
    BNB_INT8 = "bnb-int8"  # bitsandbytes LLM.int8(), CUDA
    BNB_NF4 = "bnb-nf4"  # bitsandbytes 4-bit NormalFloat, CUDA


class Attention(str, Enum):
    """transformers' attn_implementation."""

    EAGER = "eager"
    SDPA = "sdpa"
    FLASH = "flash_attention_2"


class MeasurementMode(str, Enum):
    """What a benchmark measures: wall time (the default), or CPU instructions counted
    under valgrind (near-deterministic; a CI-sized mode for small models)."""

    WALL = "wall"
    INSTRUCTIONS = "instructions"


class Dtype(str, Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class SyntheticSource(Frozen):
    """A model built from a transformers config with random weights and a fixed seed."""

    source: Literal["synthetic"]
    architecture: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    config: dict[str, Any] = Field(default_factory=dict)
    seed: Annotated[int, Field(ge=0)] = 0
    trust_remote_code: bool = False
    # Fault injection for demos and tests of the regression path: every forward call of
    # the model sleeps this long first. Not part of the series identity, so turning it on
    # shows up as a regression of the same series (attributed to a config change).
    delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0
    # Fault injection that does real work (unlike delay_ms, which only sleeps and adds no
    # instructions): every forward call also runs extra matrix multiplications sized to
    # this fraction of the model's own work (0.03 = +3%). Not part of the identity either.
    extra_compute: Annotated[float, Field(ge=0, le=10)] = 0.0


class HubSource(Frozen):
    """A model on the Hugging Face Hub (needs network or a warm local cache)."""

    source: Literal["hub"]
    id: Annotated[str, Field(min_length=1)]
    revision: Annotated[str, Field(min_length=1)] = "main"
    trust_remote_code: bool = False


class LocalSource(Frozen):
    """A model saved with save_pretrained in a local directory."""

    source: Literal["local"]
    path: Annotated[str, Field(min_length=1)]
    trust_remote_code: bool = False


ModelSource = Annotated[SyntheticSource | HubSource | LocalSource, Field(discriminator="source")]


def describe_source(source: SyntheticSource | HubSource | LocalSource) -> str:
    if isinstance(source, SyntheticSource):
        return f"synthetic:{source.architecture}"
    if isinstance(source, HubSource):
        return f"{source.id}@{source.revision}"
    return f"local:{source.path}"


class MeasurementSettings(Frozen):
    """When to stop measuring: a stable median, within bounds of count and time."""

    warmup_iterations: Annotated[int, Field(ge=0)] = 3
    min_iterations: Annotated[int, Field(ge=1)] = 10
    max_iterations: Annotated[int, Field(ge=1)] | None = None
    min_duration_s: Annotated[float, Field(ge=0)] = 1.0
    max_duration_s: Annotated[float, Field(gt=0)] = 20.0
    target_rel_ci: Annotated[float, Field(gt=0, lt=1)] = 0.01
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    # wall: time iterations until the median is stable. instructions: count the CPU
    # instructions of `min_iterations` iterations under valgrind (one thread).
    mode: MeasurementMode = MeasurementMode.WALL
    # Fresh-process repetitions of the benchmark, interleaved across the suite's benchmarks
    # (A1 B1 C1 A2 B2 C2 ...); the stored point combines them (see collector.analysis.combine).
    repetitions: Annotated[int, Field(ge=1, le=100)] = 1

    @model_validator(mode="after")
    def _bounds(self) -> MeasurementSettings:
        if self.min_duration_s > self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) must not exceed "
                f"max_duration_s ({self.max_duration_s})"
            )
        if self.max_iterations is not None and self.max_iterations < self.min_iterations:
            raise ValueError(
                f"max_iterations ({self.max_iterations}) must not be below "
                f"min_iterations ({self.min_iterations})"
            )
        return self


class CompileSettings(Frozen):
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )
    fullgraph: bool = False
    dynamic: bool | None = None


class OnnxRuntimeSettings(Frozen):
    """Backend onnxruntime's execution provider. auto: CPU's on a cpu device, CUDA's on a
    cuda device; tensorrt: TensorRT's (on cuda, falling back to CUDA's for the nodes it does
    not take), where onnxruntime was built with it."""

    execution_provider: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"


class BenchmarkSpec(Frozen):
    """One fully expanded benchmark: a single point of a matrix."""

    suite: Annotated[str, Field(pattern=NAME_PATTERN)]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    model: ModelSource
    task: Task = Task.AUTO
    backend: Backend = Backend.EAGER
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] = "cpu"
    dtype: Dtype = Dtype.FLOAT32
    batch_size: Annotated[int, Field(ge=1)] = 1
    sequence_length: Annotated[int, Field(ge=1)] = 128
    new_tokens: Annotated[int, Field(ge=1)] = 32
    threads: Annotated[int, Field(ge=1)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    memory_limit_mb: Annotated[int, Field(ge=1)] | None = None
    measurement: MeasurementSettings = MeasurementSettings()
    compile: CompileSettings = CompileSettings()
    onnxruntime: OnnxRuntimeSettings = OnnxRuntimeSettings()
    quantization: Quantization = Quantization.NONE
    attn_implementation: Attention | None = None  # None: the model's own default

    def identity(self) -> dict[str, Any]:
        """What defines the workload. Names, suite and measurement knobs are labels, not
        identity: renaming a benchmark or tightening its CI target keeps its history."""
        ident: dict[str, Any] = {
            "model": self.model.model_dump(
                mode="json", exclude={"trust_remote_code", "delay_ms", "extra_compute"}),
            "task": self.task.value,
            "backend": self.backend.value,
            "device": self.device,
            "dtype": self.dtype.value,
            "batch_size": self.batch_size,
            "sequence_length": self.sequence_length,
            "new_tokens": self.new_tokens,
            "threads": self.threads,
        }
        if self.backend is Backend.COMPILE:
            ident["compile"] = self.compile.model_dump(mode="json")
        if self.backend is Backend.ONNXRUNTIME and self.onnxruntime != OnnxRuntimeSettings():
            ident["onnxruntime"] = self.onnxruntime.model_dump(mode="json")
        # Dimensions added later enter the identity only when set, so the series of
        # benchmarks that do not use them keep their history.
        if self.quantization is not Quantization.NONE:
            ident["quantization"] = self.quantization.value
        if self.attn_implementation is not None:
            ident["attn_implementation"] = self.attn_implementation.value
        # Instructions are another quantity than wall time (and wall time under valgrind is
        # meaningless): their own series. Wall-time identities stay as they were.
        if self.measurement.mode is not MeasurementMode.WALL:
            ident["measurement_mode"] = self.measurement.mode.value
        return ident

    def series_id(self, host: str) -> str:
        """Stable series identity: hash of the canonical spec identity plus the host."""
        canonical = json.dumps({"spec": self.identity(), "host": host}, sort_keys=True,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = [self.name, f"bs={self.batch_size}"]
        if self.task not in {Task.IMAGE_CLASSIFICATION}:
            parts.append(f"seq={self.sequence_length}")
        parts += [self.dtype.value, self.backend.value, self.device]
        if self.quantization is not Quantization.NONE:
            parts.append(self.quantization.value)
        if self.attn_implementation is not None:
            parts.append(f"attn={self.attn_implementation.value}")
        return " ".join(parts)


class FailureKind(str, Enum):
    EXCEPTION = "exception"
    CRASH = "crash"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    MODEL_UNAVAILABLE = "model_unavailable"
    # The backend's package (or a device it needs) is not installed here.
    BACKEND_UNAVAILABLE = "backend_unavailable"
    ABORTED = "aborted"
    # The package environment it was to run in could not be built (collector/adapters/envs.py).
    ENVIRONMENT_UNAVAILABLE = "environment_unavailable"


class Failure(Frozen):
    kind: FailureKind
    message: Annotated[str, Field(min_length=1)]
    exception_type: str | None = None
    traceback_tail: str | None = None
    exit_code: int | None = None
    signal: str | None = None


class Environment(Frozen):
    """Where a result was measured. Versions come from package metadata in the parent and
    from the live modules in the worker."""

    host: str
    os: str
    kernel: str
    cpu_model: str
    cpu_logical_cores: int
    cpu_physical_cores: int | None = None
    memory_total_bytes: int
    python_version: str
    collector_version: str
    torch_version: str | None = None
    transformers_version: str | None = None
    torch_threads: int | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    gpu_name: str | None = None
    gpu_driver: str | None = None
    gpu_count: int | None = None
    # Installed versions of the packages asked to be recorded (an environment's pins, torch,
    # transformers), as the worker's interpreter sees them; missing ones are omitted.
    packages: dict[str, str] = {}


class MeasurementInfo(Frozen):
    iterations: Annotated[int, Field(ge=0)]
    warmup_iterations: Annotated[int, Field(ge=0)]
    duration_s: Annotated[float, Field(ge=0)]
    target_rel_ci: float
    achieved_rel_ci: float | None
    converged: bool
    stop_reason: Literal["converged", "max_duration", "max_iterations"]
    # With several repetitions: how many, the rank-based half-width of the median within
    # the windows (pooled, as if one window), and the spread between the repetitions'
    # medians (relative standard deviation). achieved_rel_ci then covers both.
    repetitions: Annotated[int, Field(ge=1)] = 1
    within_rel_ci: float | None = None
    between_rel_sd: float | None = None


class NoiseProbe(Frozen):
    """What else the machine did while we measured, for flagging contaminated runs."""

    wall_s: Annotated[float, Field(ge=0)]
    self_cpu_s: Annotated[float, Field(ge=0)]
    other_cpu_s: Annotated[float, Field(ge=0)]
    other_cpu_fraction: Annotated[float, Field(ge=0)]
    loadavg_1m_start: float | None = None
    loadavg_1m_end: float | None = None
    gpu: dict[str, Any] | None = None


class Repetition(Frozen):
    """One fresh-process repetition of a benchmark, kept whole next to the combined point:
    its own metrics, measurement and noise; its samples are the `sample_counts` values
    from `sample_offsets` in the combined result's samples."""

    index: Annotated[int, Field(ge=0)]
    status: Literal["ok", "failed"]
    started_at: datetime
    finished_at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)
    measurement: MeasurementInfo | None = None
    noise: NoiseProbe | None = None
    failure: Failure | None = None
    sample_offsets: dict[str, int] = Field(default_factory=dict)
    sample_counts: dict[str, int] = Field(default_factory=dict)


class BenchmarkResult(Frozen):
    spec: BenchmarkSpec
    series_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    status: Literal["ok", "failed"]
    resolved_task: Task | None = None
    started_at: datetime
    finished_at: datetime
    environment: Environment
    metrics: dict[str, float] = Field(default_factory=dict)
    samples: dict[str, list[float]] = Field(default_factory=dict)
    measurement: MeasurementInfo | None = None
    noise: NoiseProbe | None = None
    failure: Failure | None = None
    # Every repetition when the benchmark ran more than once (empty for one).
    repetitions: tuple[Repetition, ...] = ()

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s): {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _status_consistent(self) -> BenchmarkResult:
        if self.status == "failed" and self.failure is None:
            raise ValueError("a failed result needs a failure")
        if self.status == "ok" and self.failure is not None:
            raise ValueError("a successful result cannot carry a failure")
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        return self


class RunResult(Frozen):
    """One invocation of one suite on one host: every benchmark's result."""

    run_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    suite: str
    host: str
    started_at: datetime
    finished_at: datetime
    collector_version: str
    results: tuple[BenchmarkResult, ...]
    aborted: bool = False  # stopped by a shutdown before every benchmark had run
    # scheduled: a point of its series. confirmation: extra repetitions run at once to
    # confirm or dismiss a suspected change; stored apart, never a point of the series.
    purpose: Literal["scheduled", "confirmation"] = "scheduled"

    @property
    def status(self) -> Literal["ok", "failed", "partial", "aborted"]:
        if self.aborted:
            return "aborted"
        failed = sum(r.status == "failed" for r in self.results)
        if failed == 0:
            return "ok"
        return "failed" if failed == len(self.results) else "partial"


RESULTS_FORMAT = "collector-results"
RESULTS_FORMAT_VERSION = 1


def results_document(runs: list[RunResult]) -> dict[str, Any]:
    """The documented, versioned JSON document (docs/results-format.md)."""
    from collector.analysis.summary import summary  # it reads the metrics catalogue

    return {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "runs": [
            {**run.model_dump(mode="json"), "status": run.status} for run in runs
        ],
        "summary": summary(runs),
    }


