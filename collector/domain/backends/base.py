"""What a backend declaration says: its name, what it can run, the pip extra that installs
its runtime, and its own settings, if it has any. Torch-free: `check-config` reads it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from collector.domain.workload import Dtype, MeasurementMode, Quantization, Task


class BackendSettings(BaseModel):
    """A backend's own settings: a mapping under the backend's name in a benchmark (e.g.
    `compile: {mode: max-autotune}`), validated like every other field."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Capability:
    tasks: frozenset[Task]
    devices: frozenset[str]  # device types: cpu, cuda
    dtypes: frozenset[Dtype]
    quantizations: frozenset[Quantization]
    modes: frozenset[MeasurementMode]
    attention: bool  # honours attn_implementation
    extra_compute: bool  # runs the torch module, so extra_compute can hook it


# (settings, device type) -> (field, message) for each combination the backend cannot run.
SettingsCheck = Callable[[Any, str], Iterator[tuple[str, str]]]


@dataclass(frozen=True)
class BackendDeclaration:
    """One backend, as the domain knows it: the runtime that runs it is the module of the
    same name under collector/adapters/measure/backends/."""

    name: str
    summary: str  # one line for --help and the docs
    capability: Capability
    extra: str | None = None  # the pip extra that installs its runtime (None: torch only)
    settings: type[BackendSettings] | None = None  # its mapping in a benchmark, if any
    # When its settings enter the series identity while it is the benchmark's backend:
    # always, or only when they differ from the defaults (settings added after the
    # backend's first release, so its earlier series keep their history).
    identity: Literal["always", "changed"] = "always"
    check: SettingsCheck | None = None
    # The first call compiles (torch.compile): its excess over the steady state is
    # reported as compile_time_seconds, and a slow first call is no finding.
    compiles_on_first_call: bool = False
