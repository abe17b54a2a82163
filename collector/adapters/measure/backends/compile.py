"""torch.compile with the spec's mode, fullgraph and dynamic settings. For generation only
the forward is compiled (generate()'s loop stays Python); compilation happens on the first
call, whose time the worker reports as first call and compile time."""

from __future__ import annotations

from typing import Any

import torch

from collector.adapters.measure.backends.base import Context, Prepared
from collector.adapters.measure.backends.eager import Eager, torch_outputs, torch_step
from collector.domain.backends.compile import CompileSettings
from collector.domain.workload import GENERATION_TASKS


class Compiled(Eager):
    """Loads as eager does (attn_implementation); compiles when preparing."""

    def prepare(self, model: Any, context: Context) -> Prepared:
        settings = context.spec.settings(CompileSettings)
        generating = context.task in GENERATION_TASKS
        compiled = torch.compile(model.forward if generating else model, mode=settings.mode,
                                 fullgraph=settings.fullgraph, dynamic=settings.dynamic)
        if generating:
            model.forward = compiled
            target = model
        else:
            target = compiled
        return Prepared(torch_step(target, context), model,
                        outputs=torch_outputs(target, context))


BACKEND = Compiled()
