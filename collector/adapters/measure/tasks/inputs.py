"""Synthetic inputs of the right shape and dtype for each task (worker side)."""

from __future__ import annotations

from typing import Any

import torch

from collector.adapters.measure.isolation import WorkerFailure
from collector.domain.model import BenchmarkSpec, FailureKind, Task

INPUT_SEED = 1234


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def _max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_target_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_length(needed: int, limit: int | None, what: str) -> None:
    if limit is not None and needed > limit:
        raise WorkerFailure(FailureKind.EXCEPTION, (
            f"{what} needs {needed} positions but the model supports at most {limit}; lower "
            "sequence_length/new_tokens or raise the model's position limit"))


def _token_ids(config: Any, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    vocab = int(_text_config(config).vocab_size)
    # Avoid the low ids, which are usually special tokens (pad/bos/eos).
    low = min(4, vocab - 1)
    return torch.randint(low, vocab, (batch, length), generator=generator)


def _pixels(config: Any, batch: int, dtype: torch.dtype,
            generator: torch.Generator) -> torch.Tensor:
    vision = getattr(config, "vision_config", None) or config
    size = vision.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    channels = getattr(vision, "num_channels", 3)
    return torch.randn((batch, channels, height, width), generator=generator).to(dtype)


def build_inputs(task: Task, config: Any, spec: BenchmarkSpec, dtype: torch.dtype,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
    """Model inputs and the number of input tokens per sample (0 where tokens don't apply)."""
    gen = torch.Generator().manual_seed(INPUT_SEED)
    batch, length = spec.batch_size, spec.sequence_length
    inputs: dict[str, torch.Tensor]
    tokens = 0
    if task in (Task.TEXT_GENERATION, Task.TEXT_CLASSIFICATION, Task.FEATURE_EXTRACTION):
        extra = spec.new_tokens if task is Task.TEXT_GENERATION else 0
        _check_length(length + extra, _max_positions(config), f"{task.value} input")
        inputs = {"input_ids": _token_ids(config, batch, length, gen),
                  "attention_mask": torch.ones((batch, length), dtype=torch.long)}
        tokens = length
    elif task is Task.IMAGE_CLASSIFICATION:
        inputs = {"pixel_values": _pixels(config, batch, dtype, gen)}
    elif task is Task.ZERO_SHOT_IMAGE_CLASSIFICATION:
        _check_length(length, _max_positions(_text_config(config)), "text input")
        inputs = {"input_ids": _token_ids(config, batch, length, gen),
                  "attention_mask": torch.ones((batch, length), dtype=torch.long),
                  "pixel_values": _pixels(config, batch, dtype, gen)}
        tokens = length
    elif task is Task.SPEECH_RECOGNITION:
        # Whisper-style log-mel features: the encoder expects exactly 2 x its positions frames.
        frames = 2 * int(config.max_source_positions)
        _check_length(spec.new_tokens, _max_positions(config), "generation")
        inputs = {"input_features": torch.randn((batch, int(config.num_mel_bins), frames),
                                                generator=gen).to(dtype)}
    else:
        raise WorkerFailure(FailureKind.EXCEPTION, f"no input builder for task {task.value}")
    return {k: v.to(device) for k, v in inputs.items()}, tokens
