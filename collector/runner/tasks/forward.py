"""Timing one forward pass (encoders, vision, multimodal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def make_step(model: Any, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode():
            model(**inputs)

    return step
