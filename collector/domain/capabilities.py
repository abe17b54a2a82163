"""What each backend can run, without importing it: `check-config` rejects a combination no
backend can run (with the file, line and field), and the worker checks the same table once
the task is resolved, so an impossible benchmark is one clear failure, never a traceback.

One row per backend (collector.domain.model.Backend); the implementation is the module of the same
name under collector/adapters/measure/backends/. Whether the backend's package is installed is only
known in the worker (a `backend_unavailable` failure naming the pip extra to install).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from collector.domain.model import (
    GENERATION_TASKS,
    Attention,
    Backend,
    BenchmarkSpec,
    Dtype,
    MeasurementMode,
    Quantization,
    SyntheticSource,
    Task,
)

FORWARD_TASKS = frozenset(t for t in Task if t not in GENERATION_TASKS and t is not Task.AUTO)
ALL_TASKS = frozenset(t for t in Task if t is not Task.AUTO)
_TORCHAO = frozenset({Quantization.INT8_DYNAMIC, Quantization.INT8_WEIGHT_ONLY})
_BNB = frozenset({Quantization.BNB_INT8, Quantization.BNB_NF4})


@dataclass(frozen=True)
class Capability:
    tasks: frozenset[Task]
    devices: frozenset[str]  # device types: cpu, cuda
    dtypes: frozenset[Dtype]
    quantizations: frozenset[Quantization]
    modes: frozenset[MeasurementMode]
    attention: bool  # honours attn_implementation
    extra_compute: bool  # runs the torch module, so extra_compute can hook it
    extra: str | None  # the pip extra that installs it (`pip install collector[<extra>]`)


CAPABILITIES: dict[Backend, Capability] = {
    Backend.EAGER: Capability(
        ALL_TASKS, frozenset({"cpu", "cuda"}), frozenset(Dtype),
        frozenset({Quantization.NONE}) | _TORCHAO | _BNB,
        frozenset(MeasurementMode), attention=True, extra_compute=True, extra=None),
    Backend.COMPILE: Capability(
        ALL_TASKS, frozenset({"cpu", "cuda"}), frozenset(Dtype),
        frozenset({Quantization.NONE}) | _TORCHAO,
        frozenset(MeasurementMode), attention=True, extra_compute=True, extra=None),
    # Exported graphs of forward tasks; generation would need a decoding loop around them.
    Backend.ONNXRUNTIME: Capability(
        FORWARD_TASKS, frozenset({"cpu", "cuda"}), frozenset({Dtype.FLOAT32, Dtype.FLOAT16}),
        frozenset({Quantization.NONE}), frozenset({MeasurementMode.WALL}),
        attention=False, extra_compute=False, extra="onnx"),
    Backend.OPENVINO: Capability(
        FORWARD_TASKS, frozenset({"cpu"}), frozenset({Dtype.FLOAT32}),
        frozenset({Quantization.NONE}), frozenset({MeasurementMode.WALL}),
        attention=False, extra_compute=False, extra="openvino"),
}

_QUANT_DEVICES = {**dict.fromkeys(_TORCHAO, "cpu"), **dict.fromkeys(_BNB, "cuda")}


def _names(values: frozenset[Dtype] | frozenset[Quantization] | frozenset[Task]
           | frozenset[str] | frozenset[MeasurementMode]) -> str:
    return ", ".join(sorted(v if isinstance(v, str) else v.value for v in values))


def problems(spec: BenchmarkSpec, task: Task | None = None) -> Iterator[tuple[str, str]]:
    """(field, message) for each thing `spec`'s backend cannot do. `task`: the resolved
    task where known (the worker's), else the spec's own (`auto` is checked in the worker)."""
    can = CAPABILITIES[spec.backend]
    name = spec.backend.value
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
    if (isinstance(spec.model, SyntheticSource) and spec.model.extra_compute > 0
            and not can.extra_compute):
        yield "model", (f"extra_compute hooks the torch module, which backend {name} does "
                        "not run; use delay_ms")
    yield from _onnxruntime_problems(spec, device)


# onnxruntime's providers, most wanted first, by execution_provider and device type.
_ORT_PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider",),
                  "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider")}
_ORT_DEVICE = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}


def onnxruntime_providers(spec: BenchmarkSpec) -> tuple[str, ...]:
    """The execution providers an onnxruntime benchmark's session gets."""
    choice = spec.onnxruntime.execution_provider
    return _ORT_PROVIDERS[spec.device.split(":")[0] if choice == "auto" else choice]


def _onnxruntime_problems(spec: BenchmarkSpec, device: str) -> Iterator[tuple[str, str]]:
    choice = spec.onnxruntime.execution_provider
    if spec.backend is Backend.ONNXRUNTIME and choice != "auto" and _ORT_DEVICE[choice] != device:
        yield "onnxruntime", (f"execution_provider {choice} runs on {_ORT_DEVICE[choice]}, "
                              f"not {spec.device}")


def problem(spec: BenchmarkSpec, task: Task | None = None) -> tuple[str, str] | None:
    """The first of `problems`, or None when the backend can run `spec`."""
    return next(problems(spec, task), None)
