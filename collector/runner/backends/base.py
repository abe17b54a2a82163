"""The interface every backend implements, and what it hands back.

The worker loads the transformers model (load time is the same for every backend: from disk
to ready in torch), builds the task's inputs, then asks the backend to `prepare` a step:
the backend compiles, exports or converts the model as it needs (timing that apart, e.g.
`export_time_seconds`) and returns a callable that runs one iteration. The trackers (latency,
memory, instructions) time that callable and know nothing of the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from collector.model import BenchmarkSpec, FailureKind, Task
from collector.runner.isolation import WorkerFailure


@dataclass
class Prepared:
    """A backend's step and what it measured while preparing it."""

    step: Callable[[], Any]
    # The torch module the step runs, where it runs one (fault-injection hooks go there);
    # None for exported graphs, whose steps are wrapped instead.
    module: Any | None
    metrics: dict[str, float] = field(default_factory=dict)
    # The outputs of one call on the fixed inputs, for the numerics fingerprint.
    outputs: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Context:
    """What a backend may use besides the model: the spec, the resolved task, the inputs,
    the device (and its synchronize), and a private scratch directory."""

    spec: BenchmarkSpec
    task: Task
    inputs: dict[str, torch.Tensor]
    device: torch.device
    sync: Callable[[], None] | None
    workdir: Path


class BackendImpl(Protocol):
    def load_kwargs(self, spec: BenchmarkSpec) -> dict[str, Any]:
        """Extra from_pretrained arguments (e.g. attn_implementation)."""

    def prepare(self, model: Any, context: Context) -> Prepared:
        """The step to time, from the loaded, quantized model."""


def require(module: str, extra: str) -> Any:
    """Import a backend's runtime, or fail the benchmark naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"{module} is not installed in the worker's environment ({exc}); install it "
            f"with `pip install 'collector[{extra}]'` (see README)")) from None
