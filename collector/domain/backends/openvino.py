"""OpenVINO on the model converted by OpenVINO's own converter; forward tasks, CPU."""

from collector.domain.backends.base import BackendDeclaration, Capability
from collector.domain.workload import FORWARD_TASKS, Dtype, MeasurementMode, Quantization

BACKEND = BackendDeclaration(
    name="openvino",
    summary="OpenVINO on the model converted by ov.convert_model",
    capability=Capability(
        tasks=FORWARD_TASKS, devices=frozenset({"cpu"}), dtypes=frozenset({Dtype.FLOAT32}),
        quantizations=frozenset({Quantization.NONE}),
        modes=frozenset({MeasurementMode.WALL}), attention=False, extra_compute=False),
    extra="openvino")
