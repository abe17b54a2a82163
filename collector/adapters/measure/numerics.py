"""The outputs' fingerprint (worker side): a fixed, small sample of one call's first output
on the fixed synthetic inputs (for generation: the new token ids of one greedy call), sent
with the raw samples so the parent can tell a backend or an upgrade that is faster but
computes something else (collector/analysis/numerics.py)."""

from __future__ import annotations

import torch

from collector.analysis.numerics import (
    SAMPLE_KEY,
    SAMPLE_SIZE,
    TOKENS_KEY,
    TOP1_KEY,
    TOP1_SIZE,
)


def outputs_fingerprint(output: torch.Tensor, generating: bool) -> dict[str, list[float]]:
    """The fingerprint of a task's outputs: token ids for generation, else a sample."""
    return token_fingerprint(output) if generating else fingerprint(output)


def fingerprint(output: torch.Tensor) -> dict[str, list[float]]:
    """Exactly SAMPLE_SIZE values at evenly spaced positions of the flattened output, and
    the argmax over the last dimension of TOP1_SIZE evenly spaced rows (the top-1 class or
    token, or the strongest hidden unit). Fixed sizes (positions repeat in small outputs),
    so the parent can cut one fingerprint out of the repetitions' concatenated samples."""
    flat = output.reshape(-1).float()
    rows = output.reshape(-1, output.shape[-1]) if output.dim() > 1 else output.reshape(1, -1)
    values = flat[torch.linspace(0, flat.numel() - 1, SAMPLE_SIZE).long()]
    top1 = rows[torch.linspace(0, rows.shape[0] - 1, TOP1_SIZE).long()].argmax(dim=-1)
    return {SAMPLE_KEY: [float(v) for v in values], TOP1_KEY: [float(v) for v in top1]}


def token_fingerprint(tokens: torch.Tensor) -> dict[str, list[float]]:
    """A generation's fingerprint: its new token ids, row by row (batch x new_tokens values,
    a size the parent knows from the spec)."""
    return {TOKENS_KEY: [float(v) for v in tokens.reshape(-1)]}
