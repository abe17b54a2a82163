"""ONNX Runtime on a graph exported with torch.onnx's dynamo exporter; forward tasks only
(generation would need a decoding loop around the graph)."""

from collections.abc import Iterator
from typing import Any, Literal

from collector.domain.backends.base import BackendDeclaration, BackendSettings, Capability
from collector.domain.workload import FORWARD_TASKS, Dtype, MeasurementMode, Quantization


class OnnxRuntimeSettings(BackendSettings):
    """The execution provider. auto: CPU's on a cpu device, CUDA's on a cuda device;
    tensorrt: TensorRT's (on cuda, falling back to CUDA's for the nodes it does not take),
    where onnxruntime was built with it."""

    execution_provider: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"


# onnxruntime's providers, most wanted first, by execution_provider and device type.
_PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider",),
              "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider")}
_DEVICE = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}


def providers(settings: OnnxRuntimeSettings, device: str) -> tuple[str, ...]:
    """The execution providers a session gets on `device` (a device type or cuda:N)."""
    choice = settings.execution_provider
    return _PROVIDERS[device.split(":", maxsplit=1)[0] if choice == "auto" else choice]


def _check(settings: Any, device: str) -> Iterator[tuple[str, str]]:
    choice = settings.execution_provider
    if choice != "auto" and _DEVICE[choice] != device:
        yield "onnxruntime", (f"execution_provider {choice} runs on {_DEVICE[choice]}, "
                              f"not {device}")


BACKEND = BackendDeclaration(
    name="onnxruntime",
    summary="ONNX Runtime on the torch.onnx (dynamo) export of the model",
    capability=Capability(
        tasks=FORWARD_TASKS, devices=frozenset({"cpu", "cuda"}),
        dtypes=frozenset({Dtype.FLOAT32, Dtype.FLOAT16}),
        quantizations=frozenset({Quantization.NONE}),
        modes=frozenset({MeasurementMode.WALL}), attention=False, extra_compute=False),
    extra="onnx", settings=OnnxRuntimeSettings, identity="changed", check=_check)
