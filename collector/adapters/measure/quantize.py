"""Weight quantization as its own dimension, applied to the loaded torch model.

CPU: torchao's int8 configs on every nn.Linear (dynamic activation + int8 weight, or int8
weight only). CUDA: bitsandbytes 8-bit or 4-bit NF4, which transformers applies while loading
(`load_kwargs`). A missing package is a `backend_unavailable` failure naming the extra.
"""

from __future__ import annotations

from typing import Any

import torch

from collector.adapters.measure.backends.base import quiet, require
from collector.domain.model import BenchmarkSpec, Quantization


def load_kwargs(spec: BenchmarkSpec) -> dict[str, Any]:
    """from_pretrained arguments of quantizations applied while loading (bitsandbytes)."""
    if spec.quantization not in (Quantization.BNB_INT8, Quantization.BNB_NF4):
        return {}
    require("bitsandbytes", "quant-cuda")
    from transformers import BitsAndBytesConfig

    if spec.quantization is Quantization.BNB_INT8:
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)}


def quantize(model: Any, spec: BenchmarkSpec) -> Any:
    """The model with the spec's post-load quantization applied (in place for torchao)."""
    if spec.quantization not in (Quantization.INT8_DYNAMIC, Quantization.INT8_WEIGHT_ONLY):
        return model
    with quiet():
        torchao = require("torchao.quantization", "quant")
    config = (torchao.Int8DynamicActivationInt8WeightConfig()
              if spec.quantization is Quantization.INT8_DYNAMIC
              else torchao.Int8WeightOnlyConfig())
    torchao.quantize_(model, config)
    return model


def int8_matmul(spec: BenchmarkSpec, device: torch.device) -> str | None:
    """Which int8 matmul torchao's int8-dynamic runs on this CPU (None for other
    quantizations and devices): what explains its speed against fp32. Eager, torchao 0.18
    multiplies through torch._int_mm, oneDNN's u8s8 kernel where the CPU has AVX512-VNNI
    but no AMX, else its s8s8 kernel; without oneDNN, torch's reference int8 GEMM (an
    order of magnitude slower). Compiled, Inductor fuses it (int8 mm in float, then
    rescaled)."""
    if spec.quantization is not Quantization.INT8_DYNAMIC or device.type != "cpu":
        return None
    if spec.backend == "compile":
        return "Inductor (fused, compiled)"
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return "reference int8 GEMM (oneDNN off: slow)"
    return f"oneDNN {_onednn_kernel()}"


def _onednn_kernel() -> str:
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        from torchao.utils import (  # private helpers: the ones torchao itself decides by
            _cpu_is_amx_tile_supported,
            _cpu_is_vnni_supported,
        )
    except ImportError:  # another torchao: say what the CPU offers
        return f"({capability})"
    if _cpu_is_amx_tile_supported():
        return "s8s8 (AMX)"
    return "u8s8 (AVX512-VNNI)" if _cpu_is_vnni_supported() else f"s8s8 ({capability}, no VNNI)"
