"""ONNX Runtime: the model exported with torch.onnx's dynamo exporter (the maintained one;
the TorchScript exporter is deprecated, and optimum-onnx does not allow transformers 5), at
the benchmark's own shapes, then run by an InferenceSession on the CPU execution provider, or
CUDA's where the device is cuda, or TensorRT's when `onnxruntime.execution_provider` says so
(collector.domain.backends.onnxruntime.providers). `export_time_seconds` is export plus
session creation."""

from __future__ import annotations

from typing import Any

from collector.adapters.measure.backends.base import Context, Prepared, quiet, require
from collector.adapters.measure.backends.exported import numpy_inputs, timed
from collector.adapters.measure.isolation import WorkerFailure
from collector.domain.backends.onnxruntime import OnnxRuntimeSettings, providers
from collector.domain.model import BenchmarkSpec, FailureKind

_PACKAGES = {"CPUExecutionProvider": "onnxruntime",
             "CUDAExecutionProvider": "onnxruntime-gpu (CUDA and cuDNN matching it)",
             "TensorrtExecutionProvider": "onnxruntime-gpu and TensorRT (its libnvinfer)"}


class OnnxRuntime:
    def load_kwargs(self, spec: BenchmarkSpec) -> dict[str, Any]:  # noqa: ARG002 - interface
        return {}

    def prepare(self, model: Any, context: Context) -> Prepared:
        ort = require("onnxruntime", "onnx")
        require("onnxscript", "onnx")
        import torch

        wanted = list(providers(context.spec.settings(OnnxRuntimeSettings),
                                context.spec.device))
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
                f"onnxruntime here has no {wanted[0]} (it has {', '.join(available)}); "
                f"install {_PACKAGES[wanted[0]]}"))
        chosen = [p for p in wanted if p in available]
        path = context.workdir / "model.onnx"

        def export() -> Any:
            with quiet(), torch.inference_mode():
                torch.onnx.export(model, (), str(path), kwargs=dict(context.inputs),
                                  dynamo=True, external_data=True, verbose=False)
            options = ort.SessionOptions()
            if context.spec.threads is not None:
                options.intra_op_num_threads = context.spec.threads
            options.log_severity_level = 3  # errors only
            return ort.InferenceSession(str(path), options, providers=chosen)

        session, export_s = timed(export)
        feeds = numpy_inputs(context.inputs)
        names = [i.name for i in session.get_inputs()]
        missing = sorted(set(names) - set(feeds))
        if missing:
            raise WorkerFailure(FailureKind.EXCEPTION, (
                f"the exported graph wants inputs {', '.join(missing)} that this task does "
                "not build"))
        feeds = {name: feeds[name] for name in names}
        first = session.get_outputs()[0].name

        def step() -> None:
            session.run(None, feeds)

        def outputs() -> Any:
            return torch.from_numpy(session.run([first], feeds)[0]).float()

        return Prepared(step, None, {"export_time_seconds": export_s}, outputs)


BACKEND = OnnxRuntime()
