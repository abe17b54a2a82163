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


def make_outputs(model: Any, inputs: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    """One forward pass's first output (logits, or the last hidden state), on the CPU in
    float32: what the numerics fingerprint summarises."""
    def outputs() -> torch.Tensor:
        with torch.inference_mode():
            out = model(**inputs)
        first = out[0] if isinstance(out, tuple) else next(iter(out.values()))
        result: torch.Tensor = first.detach().float().cpu()
        return result

    return outputs
