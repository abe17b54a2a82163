"""What the exported-graph backends (ONNX Runtime, OpenVINO) share: numpy inputs and the
export's time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def numpy_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in inputs.items()}


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    """action() and its wall time in seconds."""
    start = time.perf_counter_ns()
    result = action()
    return result, (time.perf_counter_ns() - start) / 1e9
