"""The interface every backend implements, and what it hands back.

The worker loads the transformers model (load time is the same for every backend: from disk
to ready in torch), builds the task's inputs, then asks the backend to `prepare` a step:
the backend compiles, exports or converts the model as it needs (timing that apart, e.g.
`export_time_seconds`) and returns a callable that runs one iteration. The trackers (latency,
memory, instructions) time that callable and know nothing of the backend.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from collector.adapters.measure.isolation import WorkerFailure
from collector.domain.model import BenchmarkSpec, FailureKind, Task


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


def require(module: str, extra: str | None, package: str | None = None) -> Any:
    """Import a backend's runtime, or fail the benchmark naming what to install: the
    project's pip extra, or a package no extra installs (it needs a matching CUDA)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = (f"`pip install 'transformers-perf-collector[{extra}]'`" if extra is not None
               else f"`pip install {package or module}`")
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"{module} is not installed in the worker's environment ({exc}); install it "
            f"with {how} (docs/configuration.md)")) from None


_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.utils._pytree", "onnxscript",
            "onnx_ir", "torchao")


@contextlib.contextmanager
def _silenced_fds() -> Iterator[None]:
    """File descriptors 1 and 2 pointed at /dev/null: torch's and torchao's loggers hold
    the original stderr, and native code writes to the descriptors directly."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Exporters print progress, log and warn about tracing (torchvision ops skipped,
    constant folding given up), torchao prints the CUDA kernels it could not load; none of
    it is the user's business, and run-once --format json writes to the same stdout.
    Errors still raise."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()), _silenced_fds():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR + 10)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
