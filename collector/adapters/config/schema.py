"""The file's schema for benchmarks: settings that can be given at file, suite and
benchmark level (with a `matrix` of values to expand), a benchmark entry, a suite and the
whole file. A backend with settings of its own adds its mapping at every level, from its
declaration (collector/domain/backends/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, create_model

from collector.adapters.config.bounds import (
    DAY_S,
    MAX_THREADS,
    Count,
    Device,
    Name,
    PositiveInt,
    Seconds,
)
from collector.adapters.config.settings import (
    CostSettings,
    DetectionSettings,
    EnvironmentSettings,
    ReportSettings,
    Schedule,
    ServeSettings,
    StorageSettings,
    Strict,
)
from collector.domain import backends
from collector.domain.model import (
    Attention,
    BackendName,
    Dtype,
    MeasurementMode,
    ModelSource,
    Quantization,
    SdpaBackend,
    Task,
)
from collector.domain.serving import Batching, Serving


class MeasurementOverrides(Strict):
    warmup_iterations: Count | None = None
    min_iterations: PositiveInt | None = None
    max_iterations: PositiveInt | None = None
    min_duration_s: Seconds | None = None
    max_duration_s: Annotated[StrictFloat, Field(gt=0, le=DAY_S)] | None = None
    target_rel_ci: Annotated[StrictFloat, Field(gt=0, lt=1)] | None = None
    confidence: Annotated[StrictFloat, Field(gt=0.5, lt=1)] | None = None
    mode: MeasurementMode | None = None
    repetitions: Annotated[StrictInt, Field(ge=1, le=100)] | None = None


class Matrix(Strict):
    batch_size: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    sequence_length: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    new_tokens: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    dtype: Annotated[list[Dtype], Field(min_length=1)] | None = None
    backend: Annotated[list[BackendName], Field(min_length=1)] | None = None
    device: Annotated[list[Device], Field(min_length=1)] | None = None
    quantization: Annotated[list[Quantization], Field(min_length=1)] | None = None
    attn_implementation: Annotated[list[Attention], Field(min_length=1)] | None = None
    sdpa_backend: Annotated[list[SdpaBackend], Field(min_length=1)] | None = None


class _CommonSettings(Strict):
    """Everything that can be set at file, suite or benchmark level (LevelSettings adds each
    backend's own settings)."""

    task: Task | None = None
    backend: BackendName | None = None
    device: Device | None = None
    dtype: Dtype | None = None
    batch_size: PositiveInt | None = None
    sequence_length: PositiveInt | None = None
    new_tokens: PositiveInt | None = None
    # torch intra-op threads: more than the host has cores measures the OS scheduler, not
    # the model (a note says so: expand.py); beyond MAX_THREADS no host has them.
    threads: Annotated[StrictInt, Field(ge=1, le=MAX_THREADS)] | None = None
    timeout_s: Annotated[StrictFloat, Field(gt=0, le=DAY_S)] | None = None
    memory_limit_mb: PositiveInt | None = None
    measurement: MeasurementOverrides | None = None
    quantization: Quantization | None = None
    attn_implementation: Attention | None = None
    sdpa_backend: SdpaBackend | None = None
    kernels: StrictBool | None = None
    matrix: Matrix | None = None


if TYPE_CHECKING:
    LevelSettings = _CommonSettings
else:  # `<backend>: <its settings>` for each backend that has settings of its own
    LevelSettings = create_model("LevelSettings", __base__=_CommonSettings, __module__=__name__, **{
        name: (kind | None, None) for name, kind in backends.with_settings().items()})


class BenchmarkEntry(LevelSettings):
    name: Name
    model: ModelSource
    # Under load (collector/domain/serving.py): continuous batching in the worker, or a
    # serving benchmark against a server; per benchmark only.
    batching: Batching | None = None
    serving: Serving | None = None



class SuiteEntry(Strict):
    description: str | None = None
    schedule: Schedule | None = None
    defaults: LevelSettings | None = None
    # Validated one by one afterwards, so every benchmark's problems are reported.
    benchmarks: Annotated[list[dict[str, Any]], Field(min_length=1)]



class ConfigFile(Strict):
    version: Literal[1] = 1
    defaults: LevelSettings | None = None
    storage: StorageSettings = StorageSettings()
    serve: ServeSettings = ServeSettings()
    detection: DetectionSettings = DetectionSettings()
    environment: EnvironmentSettings = EnvironmentSettings()
    report: ReportSettings = ReportSettings()
    cost: CostSettings | None = None
    suites: Annotated[dict[Name, SuiteEntry], Field(min_length=1)]
