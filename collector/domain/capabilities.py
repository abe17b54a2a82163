"""What a benchmark's backend can run, checked without importing it: `check-config` rejects
a combination no backend can run (with the file, line and field), and the worker checks the
same once the task is resolved, so an impossible benchmark is one clear failure, never a
traceback.

What each backend can do is its declaration's (collector/domain/backends/); the checks here
are the ones every backend shares. Whether the backend's package is installed is only known
in the worker (a `backend_unavailable` failure naming the pip extra to install).
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.domain import backends
from collector.domain.model import BenchmarkSpec, SyntheticSource
from collector.domain.workload import (
    BNB_QUANTIZATIONS,
    CUDA_SDPA_BACKENDS,
    TORCHAO_QUANTIZATIONS,
    Attention,
    Dtype,
    MeasurementMode,
    Quantization,
    Task,
)

_QUANT_DEVICES = {**dict.fromkeys(TORCHAO_QUANTIZATIONS, "cpu"),
                  **dict.fromkeys(BNB_QUANTIZATIONS, "cuda")}


def _names(values: frozenset[Dtype] | frozenset[Quantization] | frozenset[Task]
           | frozenset[str] | frozenset[MeasurementMode]) -> str:
    return ", ".join(sorted(v if isinstance(v, str) else v.value for v in values))


def problems(spec: BenchmarkSpec, task: Task | None = None) -> Iterator[tuple[str, str]]:
    """(field, message) for each thing `spec`'s backend cannot do. `task`: the resolved
    task where known (the worker's), else the spec's own (`auto` is checked in the worker)."""
    declaration = backends.get(spec.backend)
    can = declaration.capability
    name = spec.backend
    task = task or spec.task
    device = spec.device.split(":")[0]
    if task is not Task.AUTO and task not in can.tasks:
        yield "task", f"backend {name} runs {_names(can.tasks)}, not {task.value}"
    if device not in can.devices:
        yield "device", f"backend {name} runs on {_names(can.devices)}, not {spec.device}"
    if spec.dtype not in can.dtypes:
        yield "dtype", f"backend {name} runs {_names(can.dtypes)}, not {spec.dtype.value}"
    if spec.quantization not in can.quantizations:
        yield "quantization", (f"backend {name} supports quantization "
                               f"{_names(can.quantizations)}, not {spec.quantization.value}")
    needs = _QUANT_DEVICES.get(spec.quantization)
    if needs is not None and device != needs:
        yield "quantization", (f"quantization {spec.quantization.value} runs on {needs}, "
                               f"not {spec.device}")
    if spec.measurement.mode not in can.modes:
        yield "measurement", (f"backend {name} supports measurement mode "
                              f"{_names(can.modes)}, not {spec.measurement.mode.value}")
    if spec.attn_implementation is not None and not can.attention:
        yield "attn_implementation", (f"backend {name} does not take attn_implementation "
                                      "(the exported graph has its own)")
    if spec.attn_implementation is Attention.FLASH and device != "cuda":
        yield "attn_implementation", "flash_attention_2 runs on cuda only"
    yield from _kernel_problems(spec, device)
    if (isinstance(spec.model, SyntheticSource) and spec.model.extra_compute > 0
            and not can.extra_compute):
        yield "model", (f"extra_compute hooks the torch module, which backend {name} does "
                        "not run; use delay_ms")
    settings = spec.backend_settings()
    if declaration.check is not None and settings is not None:
        yield from declaration.check(settings, device)
    if spec.batching is not None:
        yield from _batching_problems(spec, task)


def _kernel_problems(spec: BenchmarkSpec, device: str) -> Iterator[tuple[str, str]]:
    """The SDPA kernel and the Hub kernels: what the spec's attention and device allow.
    Whether `kernels` is installed (and can reach the Hub) is the worker's to find out."""
    chosen = spec.sdpa_backend
    if chosen is not None and spec.attn_implementation is not Attention.SDPA:
        got = (spec.attn_implementation.value if spec.attn_implementation is not None
               else "unset, the model's own choice")
        yield "sdpa_backend", (f"sdpa_backend {chosen.value} picks the kernel of "
                               "attn_implementation sdpa; set attn_implementation: sdpa "
                               f"(got {got})")
    elif chosen in CUDA_SDPA_BACKENDS and device != "cuda":
        yield "sdpa_backend", (f"sdpa_backend {chosen.value} runs on cuda only (torch has no "
                               f"CPU kernel for it), not {spec.device}; on cpu use math or "
                               "flash")
    if spec.kernels and not backends.get(spec.backend).capability.attention:
        yield "kernels", (f"kernels replaces layers of the torch module, which backend "
                          f"{spec.backend} does not run")


# Continuous batching runs the torch module through transformers' paged-attention scheduler:
# eager as it is, compile with the scheduler's own compile configs.
BATCHING_BACKENDS = frozenset({"eager", "compile"})


def _batching_problems(spec: BenchmarkSpec, task: Task) -> Iterator[tuple[str, str]]:
    """What continuous batching (collector/adapters/measure/tasks/batching.py) cannot do.
    Its attention implementations are eager (run as paged|eager), sdpa and flash on CUDA
    (transformers refuses flex_attention); the device part of that is the check above and,
    in the worker, backend_unavailable."""
    if task not in (Task.AUTO, Task.TEXT_GENERATION):
        yield "task", ("batching needs a causal language model (task text-generation), not "
                       f"{task.value}")
    if spec.attn_implementation is Attention.FLEX:
        yield "attn_implementation", ("batching runs attention eager (as paged|eager), sdpa "
                                      "or flash_attention_2; transformers refuses "
                                      "flex_attention under continuous batching")
    if spec.backend not in BATCHING_BACKENDS:
        yield "backend", (f"batching runs on backend {_names(BATCHING_BACKENDS)}, not "
                          f"{spec.backend}")
    if spec.measurement.mode is not MeasurementMode.WALL:
        yield "measurement", ("batching measures wall time only (its scheduler runs in a "
                              f"thread), not {spec.measurement.mode.value}")
    if isinstance(spec.model, SyntheticSource) and spec.model.extra_compute > 0:
        yield "model", "batching does not take extra_compute; use delay_ms"
    if getattr(spec.backend_settings(), "fullgraph", False):
        yield "compile", ("batching cannot compile with fullgraph: true (transformers keeps "
                          "paged attention out of the graph)")


def problem(spec: BenchmarkSpec, task: Task | None = None) -> tuple[str, str] | None:
    """The first of `problems`, or None when the backend can run `spec`."""
    return next(problems(spec, task), None)
