"""OpenVINO on the CPU: the torch model converted by OpenVINO's own converter
(`openvino.convert_model`; optimum-intel does not allow transformers 5) with the benchmark's
inputs as the example, compiled for the CPU. fp32 benchmarks pin the inference precision to
f32: on CPUs with bf16 support OpenVINO otherwise computes in bf16 (errors of 1e-3 to 1e-2
on bert-tiny), which would be another workload under the same dtype label.
`export_time_seconds` is conversion plus compilation."""

from __future__ import annotations

from typing import Any

from collector.adapters.measure.backends.base import Context, Prepared, quiet, require
from collector.adapters.measure.backends.exported import numpy_inputs, timed
from collector.domain.model import BenchmarkSpec, Dtype


class OpenVino:
    def load_kwargs(self, spec: BenchmarkSpec) -> dict[str, Any]:  # noqa: ARG002 - interface
        return {}

    def prepare(self, model: Any, context: Context) -> Prepared:
        ov = require("openvino", "openvino")
        import torch

        settings: dict[str, Any] = {}
        if context.spec.dtype is Dtype.FLOAT32:
            settings["INFERENCE_PRECISION_HINT"] = "f32"
        if context.spec.threads is not None:
            settings["INFERENCE_NUM_THREADS"] = context.spec.threads

        def convert() -> Any:
            with quiet(), torch.inference_mode():
                converted = ov.convert_model(model, example_input=dict(context.inputs))
            return ov.compile_model(converted, "CPU", settings)

        compiled, export_s = timed(convert)
        request = compiled.create_infer_request()
        feeds = numpy_inputs(context.inputs)
        names = [port.get_any_name() for port in compiled.inputs]
        feeds = {name: feeds[name] for name in names if name in feeds}

        def step() -> None:
            request.infer(feeds)

        def outputs() -> Any:
            return torch.from_numpy(request.infer(feeds)[compiled.output(0)].copy()).float()

        return Prepared(step, None, {"export_time_seconds": export_s}, outputs)


BACKEND = OpenVino()
