"""PyTorch eager mode: the model as transformers builds it, with the attention
implementation the spec asks for."""

from __future__ import annotations

from typing import Any

from collector.adapters.measure.backends.base import Context, Prepared, require
from collector.adapters.measure.tasks import forward, generation
from collector.domain.model import GENERATION_TASKS, Attention, BenchmarkSpec


class Eager:
    def load_kwargs(self, spec: BenchmarkSpec) -> dict[str, Any]:
        if spec.attn_implementation is None:
            return {}
        if spec.attn_implementation is Attention.FLASH:  # built against the local CUDA
            require("flash_attn", None, "flash-attn --no-build-isolation")
        return {"attn_implementation": spec.attn_implementation.value}

    def prepare(self, model: Any, context: Context) -> Prepared:
        return Prepared(torch_step(model, context), model, outputs=torch_outputs(model, context))


def torch_step(model: Any, context: Context) -> Any:
    """The step of a torch module: a forward pass, or a generate() call."""
    if context.task in GENERATION_TASKS:
        return generation.make_step(model, context.inputs, context.spec.new_tokens,
                                    context.sync)
    return forward.make_step(model, context.inputs)


def torch_outputs(model: Any, context: Context) -> Any:
    """What the numerics fingerprint reads: the first output of a forward pass, or the new
    token ids of one generate() call."""
    if context.task in GENERATION_TASKS:
        return generation.make_outputs(model, context.inputs, context.spec.new_tokens)
    return forward.make_outputs(model, context.inputs)


BACKEND = Eager()
