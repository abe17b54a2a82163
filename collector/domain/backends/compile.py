"""torch.compile with a mode, fullgraph and dynamic shapes (inductor compiles on the first
call)."""

from typing import Literal

from collector.domain.backends.base import BackendDeclaration, BackendSettings, Capability
from collector.domain.workload import (
    ALL_TASKS,
    TORCHAO_QUANTIZATIONS,
    Dtype,
    MeasurementMode,
    Quantization,
)


class CompileSettings(BackendSettings):
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )
    fullgraph: bool = False
    dynamic: bool | None = None


BACKEND = BackendDeclaration(
    name="compile",
    summary="torch.compile (inductor) with the benchmark's compile settings",
    capability=Capability(
        tasks=ALL_TASKS, devices=frozenset({"cpu", "cuda"}), dtypes=frozenset(Dtype),
        quantizations=frozenset({Quantization.NONE}) | TORCHAO_QUANTIZATIONS,
        modes=frozenset(MeasurementMode), attention=True, extra_compute=True),
    settings=CompileSettings, identity="always", compiles_on_first_call=True)
