"""PyTorch eager mode: the model as transformers builds it (the reference backend)."""

from collector.domain.backends.base import BackendDeclaration, Capability
from collector.domain.workload import (
    ALL_TASKS,
    BNB_QUANTIZATIONS,
    TORCHAO_QUANTIZATIONS,
    Dtype,
    MeasurementMode,
    Quantization,
)

BACKEND = BackendDeclaration(
    name="eager",
    summary="PyTorch eager mode: the model as transformers builds it",
    capability=Capability(
        tasks=ALL_TASKS, devices=frozenset({"cpu", "cuda"}), dtypes=frozenset(Dtype),
        quantizations=frozenset({Quantization.NONE}) | TORCHAO_QUANTIZATIONS
        | BNB_QUANTIZATIONS,
        modes=frozenset(MeasurementMode), attention=True, extra_compute=True))
