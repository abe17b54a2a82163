"""Timing generate() with a timestamp per new token (causal LMs, speech seq2seq).

A StoppingCriteria is called by generate() right after each new token is chosen; it records a
perf_counter_ns timestamp (after a CUDA synchronize, so GPU work is counted) and never stops
generation. min_new_tokens = max_new_tokens forces exactly `new_tokens` tokens, so random
weights that happen to emit EOS early don't shorten the measurement.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from collector.domain.stats import mean, percentile


class _TokenClock(StoppingCriteria):
    def __init__(self, sync: Callable[[], None] | None) -> None:
        self.stamps: list[int] = []
        self._sync = sync

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor,
                 **kwargs: Any) -> torch.Tensor:
        if self._sync is not None:
            self._sync()
        self.stamps.append(time.perf_counter_ns())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _config(model: Any, new_tokens: int) -> Any:
    """Greedy, exactly `new_tokens` new tokens."""
    config = copy.deepcopy(model.generation_config)
    config.update(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  num_beams=1, max_length=None, min_length=None)
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id if config.eos_token_id is not None else 0
    return config


def make_outputs(model: Any, inputs: dict[str, torch.Tensor],
                 new_tokens: int) -> Callable[[], torch.Tensor]:
    """One greedy generate() call's new token ids (batch x new_tokens, on the CPU): what the
    numerics fingerprint of a generation benchmark is."""
    config = _config(model, new_tokens)

    def outputs() -> torch.Tensor:
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        # The new tokens are the last ones: prompts (or decoder start tokens) come first.
        result: torch.Tensor = sequences[:, -new_tokens:].detach().cpu()
        return result

    return outputs


def make_step(model: Any, inputs: dict[str, torch.Tensor], new_tokens: int,
              sync: Callable[[], None] | None) -> Callable[[], list[int]]:
    """A step that runs generate() and returns token times (ns) relative to its start."""
    config = _config(model, new_tokens)

    def step() -> list[int]:
        clock = _TokenClock(sync)
        start = time.perf_counter_ns()
        with torch.inference_mode():
            model.generate(**inputs, generation_config=config,
                           stopping_criteria=StoppingCriteriaList([clock]))
        return [stamp - start for stamp in clock.stamps]

    return step


def token_metrics(token_times_ns: Sequence[Sequence[int]], batch_size: int,
                  prompt_tokens: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """TTFT, inter-token latency, decode and prefill rates from per-call token timestamps."""
    ttft = [times[0] / 1e9 for times in token_times_ns if times]
    itl = [(b - a) / 1e9 for times in token_times_ns for a, b in itertools.pairwise(times)]
    decode_rates = [batch_size * (len(times) - 1) / ((times[-1] - times[0]) / 1e9)
                    for times in token_times_ns if len(times) > 1 and times[-1] > times[0]]
    metrics: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    if ttft:
        ordered = sorted(ttft)
        metrics["time_to_first_token_p50_seconds"] = percentile(ordered, 50)
        metrics["time_to_first_token_mean_seconds"] = mean(ordered)
        samples["time_to_first_token_seconds"] = ttft
        if prompt_tokens > 0:
            metrics["prefill_tokens_per_second"] = (batch_size * prompt_tokens
                                                    / percentile(ordered, 50))
    if itl:
        ordered = sorted(itl)
        metrics["inter_token_latency_mean_seconds"] = mean(ordered)
        metrics["inter_token_latency_p90_seconds"] = percentile(ordered, 90)
        samples["inter_token_latency_seconds"] = itl
    if decode_rates:
        metrics["decode_tokens_per_second"] = percentile(sorted(decode_rates), 50)
    return metrics, samples
