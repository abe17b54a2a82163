"""Immutable domain objects: what to benchmark (BenchmarkSpec) and what came out (RunResult).

Every object validates in its constructor (pydantic, frozen), so an invalid result can never
be built, stored or exported.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from collector.domain import backends
from collector.domain.backends import BackendSettings
from collector.domain.catalogue import METRICS
from collector.domain.serving import Batching, Serving
from collector.domain.workload import (
    DEVICE_PATTERN,
    GENERATION_TASKS,
    NAME_PATTERN,
    Attention,
    Dtype,
    MeasurementMode,
    Origin,
    Quantization,
    SdpaBackend,
    Task,
    attention_text,
    format_label,
)

__all__ = ["DEVICE_PATTERN", "GENERATION_TASKS", "NAME_PATTERN", "Attention",
           "BenchmarkResult", "BenchmarkSpec", "Dtype", "Environment", "Failure", "FailureKind",
           "HubSource", "LocalSource", "MeasurementInfo", "MeasurementMode",
           "MeasurementSettings", "ModelSource", "NoiseProbe", "Origin", "Quantization",
           "Repetition", "RunResult", "SdpaBackend", "SyntheticSource", "Task"]

S = TypeVar("S", bound=BackendSettings)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _known_backend(name: str) -> str:
    if name not in backends.declared():
        shown = [f"'{n}'" for n in backends.names()]
        listed = ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else shown[0]
        raise ValueError(f"Input should be {listed}")
    return name


# A backend's name, one of collector/domain/backends/ (what each can run is declared there).
BackendName = Annotated[str, AfterValidator(_known_backend)]


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


class _BenchmarkSpecFields(Frozen):
    """The fields every benchmark has; BenchmarkSpec adds one field per backend with
    settings of its own (collector/domain/backends/), named after the backend."""

    suite: Annotated[str, Field(pattern=NAME_PATTERN)]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    model: ModelSource
    task: Task = Task.AUTO
    backend: BackendName = backends.REFERENCE
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] = "cpu"
    dtype: Dtype = Dtype.FLOAT32
    batch_size: Annotated[int, Field(ge=1)] = 1
    sequence_length: Annotated[int, Field(ge=1)] = 128
    new_tokens: Annotated[int, Field(ge=1)] = 32
    threads: Annotated[int, Field(ge=1)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    memory_limit_mb: Annotated[int, Field(ge=1)] | None = None
    measurement: MeasurementSettings = MeasurementSettings()
    quantization: Quantization = Quantization.NONE
    attn_implementation: Attention | None = None  # None: the model's own default
    # The kernel SDPA runs (attn_implementation sdpa only: collector.domain.capabilities);
    # None: torch's choice per call.
    sdpa_backend: SdpaBackend | None = None
    # Layers replaced by the Hugging Face `kernels` package's Hub kernels (kernelize).
    kernels: bool = False
    # LLM inference under load (collector/domain/serving.py): N requests through continuous
    # batching in the worker, or a load generator against a server. At most one of them.
    batching: Batching | None = None
    serving: Serving | None = None
    # An imported result's tool (`collector import`): its own series, never merged with the
    # collector's (another tool measures another way); None for what the collector ran.
    origin: Origin | None = None

    @model_validator(mode="before")
    @classmethod
    def _lengths_from_load(cls, data: Any) -> Any:
        """Under load the prompt and output lengths are the load's (`input_tokens`,
        `output_tokens` means): sequence_length and new_tokens say the same, so every
        label and column reads them, and the task is text generation."""
        if not isinstance(data, dict):
            return data
        kind: type[Batching] | type[Serving] = Batching
        load = data.get("batching")
        if load is None:
            kind, load = Serving, data.get("serving")
        if load is None:
            return data
        if isinstance(load, dict):
            load = kind.model_validate(load)
        data = dict(data)
        for field, lengths in (("sequence_length", load.input_tokens),
                               ("new_tokens", load.output_tokens)):
            given = data.get(field)
            if given is not None and given != lengths.mean:
                which = "input_tokens" if field == "sequence_length" else "output_tokens"
                raise ValueError(f"{field} ({given}) is the load's {which}.mean "
                                 f"({lengths.mean}) under load; set {which} only")
            data[field] = lengths.mean
        if data.get("task") in (None, Task.AUTO, Task.AUTO.value):
            data["task"] = Task.TEXT_GENERATION
        return data

    @model_validator(mode="after")
    def _one_load(self) -> _BenchmarkSpecFields:
        if self.batching is not None and self.serving is not None:
            raise ValueError("a benchmark is either batching (in the worker) or serving (a "
                             "server under load), not both")
        return self

    def settings(self, kind: type[S]) -> S:
        """This benchmark's settings of the backend whose settings type is `kind`."""
        for name, declared in backends.with_settings().items():
            if declared is kind:
                value = getattr(self, name)
                assert isinstance(value, kind)
                return value
        raise KeyError(f"no backend has settings of type {kind.__name__}")

    def backend_settings(self) -> BackendSettings | None:
        """The settings of this benchmark's own backend (None: it has none)."""
        if self.backend not in backends.with_settings():
            return None
        value = getattr(self, self.backend)
        assert isinstance(value, BackendSettings)
        return value

    def identity(self) -> dict[str, Any]:
        """What defines the workload. Names, suite and measurement knobs are labels, not
        identity: renaming a benchmark or tightening its CI target keeps its history."""
        ident: dict[str, Any] = {
            "model": self.model.model_dump(
                mode="json", exclude={"trust_remote_code", "delay_ms", "extra_compute"}),
            "task": self.task.value,
            "backend": self.backend,
            "device": self.device,
            "dtype": self.dtype.value,
            "batch_size": self.batch_size,
            "sequence_length": self.sequence_length,
            "new_tokens": self.new_tokens,
            "threads": self.threads,
        }
        declaration = backends.get(self.backend)
        own = self.backend_settings()
        if own is not None and declaration.settings is not None and (
                declaration.identity == "always" or own != declaration.settings()):
            ident[self.backend] = own.model_dump(mode="json")
        # Dimensions added later enter the identity only when set, so the series of
        # benchmarks that do not use them keep their history.
        if self.quantization is not Quantization.NONE:
            ident["quantization"] = self.quantization.value
        if self.attn_implementation is not None:
            ident["attn_implementation"] = self.attn_implementation.value
        if self.sdpa_backend is not None:
            ident["sdpa_backend"] = self.sdpa_backend.value
        if self.kernels:
            ident["kernels"] = True
        # Instructions are another quantity than wall time (and wall time under valgrind is
        # meaningless): their own series. Wall-time identities stay as they were.
        if self.measurement.mode is not MeasurementMode.WALL:
            ident["measurement_mode"] = self.measurement.mode.value
        if self.batching is not None:
            ident["batching"] = self.batching.model_dump(mode="json")
        if self.serving is not None:
            ident["serving"] = self.serving.identity()
        if self.origin is not None:
            ident["origin"] = self.origin.value
        return ident

    def series_id(self, host: str) -> str:
        """Stable series identity: hash of the canonical spec identity plus the host."""
        canonical = json.dumps({"spec": self.identity(), "host": host}, sort_keys=True,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def label_values(self) -> dict[str, Any]:
        """The workload's values by label part (collector.domain.workload.LABEL_PARTS)."""
        return {"benchmark": self.name, "dtype": self.dtype.value, "backend": self.backend,
                "quantization": self.quantization.value,
                "attn_implementation": self.attention,
                "device": self.device, "batch_size": self.batch_size,
                "sequence_length": self.sequence_length, "new_tokens": self.new_tokens,
                "task": self.task.value, "load": self.load,
                "origin": self.origin.value if self.origin is not None else None}

    @property
    def attention(self) -> str | None:
        """The attention dimension in words (collector.domain.workload.attention_text):
        `sdpa`, `sdpa/math`, `eager+kernels`; None for the model's own default."""
        return attention_text(self.attn_implementation, self.sdpa_backend, self.kernels)

    @property
    def load(self) -> str | None:
        """The load a benchmark runs under, in words (None: one call at a time):
        `cb 16 req` for continuous batching, the profile for serving (`poisson 4/s`)."""
        if self.batching is not None:
            return f"cb {self.batching.requests} req"
        if self.serving is not None:
            return self.serving.profile.text
        return None

    @property
    def label(self) -> str:
        """The workload as people read it, everywhere (terminal, documents, report,
        dashboards): `bert-tiny float32 eager cpu bs=1 seq=128`."""
        return format_label(self.label_values())


def _with_backend_settings() -> type[_BenchmarkSpecFields]:
    """BenchmarkSpec: the common fields plus `<backend>: <its settings>` for every backend
    that declares settings, each defaulting to its defaults (so every document carries them,
    as it always has)."""
    fields: dict[str, Any] = {name: (kind, kind()) for name, kind in
                              backends.with_settings().items()}
    return create_model("BenchmarkSpec", __base__=_BenchmarkSpecFields, __module__=__name__,
                        __doc__="One fully expanded benchmark: a single point of a matrix.",
                        **fields)


if TYPE_CHECKING:
    class BenchmarkSpec(_BenchmarkSpecFields):
        """One fully expanded benchmark: a single point of a matrix."""
else:
    BenchmarkSpec = _with_backend_settings()


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
    # A serving benchmark's server: it could not start, exited, or was not ready in time
    # (its log's end is kept with the failure).
    SERVER_UNAVAILABLE = "server_unavailable"
    # A serving benchmark's load generator could not send at the asked rate: the client,
    # not the server, was the bottleneck, so the figures would describe the client.
    CLIENT_BOUND = "client_bound"
    # A serving benchmark's run in which not one request succeeded (each failed request of
    # a run that otherwise works is counted in request_error_ratio instead).
    REQUESTS_FAILED = "requests_failed"


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
    # torchao int8-dynamic on CPU: the int8 matmul it runs here (what its speed against fp32
    # depends on: collector/adapters/measure/quantize.py).
    int8_matmul: str | None = None
    # A serving benchmark's server as it reports itself: `version 0.6.3` (an endpoint's GET
    # /version), `transformers serve 5.24.0` (one the collector started), else its `Server`
    # header.
    server: str | None = None
    # The source tree a result was measured at, where known: an imported result's commit
    # (the transformers commit the benchmark module ran at), `abc1234` or `branch@abc1234`.
    commit: str | None = None
    # Installed versions of the packages asked to be recorded (an environment's pins, torch,
    # transformers), as the worker's interpreter sees them; missing ones are omitted.
    packages: dict[str, str] = {}
    # The rates its cost and carbon metrics were derived with (config `cost`,
    # collector/analysis/cost.py), None where it has none: the currency its costs are in
    # (a label), the host's price per hour in it, the grid's grams CO2e per kWh.
    cost_currency: str | None = None
    hourly_price: float | None = None
    grid_carbon_g_per_kwh: float | None = None


class MeasurementInfo(Frozen):
    iterations: Annotated[int, Field(ge=0)]
    warmup_iterations: Annotated[int, Field(ge=0)]
    duration_s: Annotated[float, Field(ge=0)]
    target_rel_ci: float
    achieved_rel_ci: float | None
    converged: bool
    stop_reason: Literal["converged", "max_duration", "max_iterations"]
    # With several repetitions (collector/analysis/combine.py): how many, which one is the
    # stored point (the best: index in `repetitions`), the rank-based half-width of its
    # median within its window (achieved_rel_ci too), and the spread between the
    # repetitions' medians (relative standard deviation: the run's conditions).
    repetitions: Annotated[int, Field(ge=1)] = 1
    within_rel_ci: float | None = None
    between_rel_sd: float | None = None
    best_repetition: Annotated[int, Field(ge=0)] | None = None


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
