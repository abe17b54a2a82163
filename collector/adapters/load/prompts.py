"""Prompts for a serving run: synthetic ones of seeded lengths, or a JSON Lines file.

Synthetic prompts are whitespace-separated words drawn from a word list. The default list,
`w3` .. `w4095`, is exactly one token per word for the offline WordLevel tokenizer of the
synthetic models (ids 0..2 are its special tokens), so a prompt of n words is n input
tokens there; for any other tokenizer the count is approximate, and what is recorded is the
server's own `usage.prompt_tokens` whenever it sends one.

Lengths (`collector.domain.serving.Lengths`) are fixed or drawn per request from one
`random.Random(seed)`: uniform on mean +- spread x mean, or normal with sd spread x mean,
rounded and clipped to >= 1. The draws come in a fixed order (input length, output length,
then the words, request after request), so a seed gives the same prompts every time.

A prompts file holds one JSON object per line, `{"prompt": str, "output_tokens": int}`
(`output_tokens` optional), read bounded (file size, line length, line count); every
problem is reported as `file:line: field: what is wrong` (a ConfigError).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.domain.errors import ConfigError, ConfigProblem
from collector.domain.serving import Lengths

DEFAULT_WORDS: tuple[str, ...] = tuple(f"w{i}" for i in range(3, 4096))
MAX_FILE_BYTES = 256 << 20
MAX_LINE_BYTES = 1 << 20
MAX_LINES = 1_000_000
MAX_TOKENS = 1_000_000  # a Lengths' mean is at most this; a file's output_tokens too
_FIELDS = ("prompt", "output_tokens")


@dataclass(frozen=True)
class Prompt:
    """One request's prompt. `input_tokens`: the planned count (exact for the default words
    and the WordLevel tokenizer, else the number of words: an estimate the server's usage
    replaces); `output_tokens`: max_tokens to ask for."""

    text: str
    input_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if self.output_tokens < 1:
            raise ValueError("a prompt asks for at least one output token")


def draw_length(lengths: Lengths, rng: random.Random) -> int:
    """One length drawn from `lengths` (>= 1)."""
    if lengths.distribution == "fixed" or lengths.spread == 0:
        return lengths.mean
    width = lengths.spread * lengths.mean
    if lengths.distribution == "uniform":
        value = rng.uniform(lengths.mean - width, lengths.mean + width)
    else:
        value = rng.gauss(lengths.mean, width)
    return max(1, min(MAX_TOKENS, round(value)))


def synthetic(input_tokens: Lengths, output_tokens: Lengths, seed: int, *,
              words: Sequence[str] = DEFAULT_WORDS) -> Iterator[Prompt]:
    """An endless, reproducible stream of synthetic prompts."""
    if not words or any(not w or w.split() != [w] for w in words):
        raise ValueError("the word list must hold non-empty words without whitespace")
    rng = random.Random(seed)  # noqa: S311 - seeded synthetic prompts, not crypto
    while True:
        n_in = draw_length(input_tokens, rng)
        n_out = draw_length(output_tokens, rng)
        yield Prompt(" ".join(rng.choices(words, k=n_in)), n_in, n_out)


def cycled(prompts: Sequence[Prompt]) -> Iterator[Prompt]:
    """The prompts of a file, in order, over and over."""
    if not prompts:
        raise ValueError("no prompts to cycle")
    while True:
        yield from prompts


def _problem(path: str, line: int | None, field: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path, line, field, message)])


def read_prompts_file(path: str | os.PathLike[str], *, default_output_tokens: int,
                      max_bytes: int = MAX_FILE_BYTES, max_line_bytes: int = MAX_LINE_BYTES,
                      max_lines: int = MAX_LINES) -> list[Prompt]:
    """The prompts of a JSON Lines file (blank lines skipped). A line without
    `output_tokens` asks for `default_output_tokens`. Raises ConfigError naming the file,
    the line and the field of the first problem."""
    where = str(path)
    try:
        handle = Path(path).open("rb")  # noqa: SIM115 - closed below, size checked first
    except OSError as error:
        raise _problem(where, None, "prompts_file",
                       f"cannot read it: {error.strerror or error}") from None
    prompts: list[Prompt] = []
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
        except OSError as error:  # pragma: no cover - fstat of an open file
            raise _problem(where, None, "prompts_file", f"cannot stat it: {error}") from None
        if size > max_bytes:
            raise _problem(where, None, "prompts_file",
                           f"file is {size} bytes, over the limit of {max_bytes}")
        total = 0
        number = 0
        while True:
            try:
                raw = handle.readline(max_line_bytes + 1)
            except OSError as error:
                raise _problem(where, number + 1, "prompts_file",
                               f"cannot read it: {error}") from None
            if not raw:
                break
            number += 1
            total += len(raw)
            if total > max_bytes:  # a file that grows while read, or a device
                raise _problem(where, number, "prompts_file",
                               f"over the limit of {max_bytes} bytes")
            if len(raw) > max_line_bytes:
                raise _problem(where, number, "(line)",
                               f"line longer than {max_line_bytes} bytes")
            if number > max_lines:
                raise _problem(where, number, "(line)", f"more than {max_lines} lines")
            if not raw.strip():
                continue
            prompts.append(_parse_line(raw, where, number, default_output_tokens))
    if not prompts:
        raise _problem(where, None, "prompts_file", "no prompts in the file")
    return prompts


def _parse_line(raw: bytes, where: str, number: int, default_output_tokens: int) -> Prompt:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _problem(where, number, "(line)",
                       f"not UTF-8 (byte {error.start})") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        detail = error.msg if isinstance(error, json.JSONDecodeError) else "too deeply nested"
        raise _problem(where, number, "(line)", f"not JSON: {detail}") from None
    if not isinstance(document, dict):
        raise _problem(where, number, "(line)",
                       f"expected an object, got {type(document).__name__}")
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        raise _problem(where, number, unknown[0],
                       f"unknown field (known: {', '.join(_FIELDS)})")
    prompt = document.get("prompt")
    if not isinstance(prompt, str):
        got = "missing" if "prompt" not in document else type(prompt).__name__
        raise _problem(where, number, "prompt", f"must be a string, got {got}")
    if not prompt.strip():
        raise _problem(where, number, "prompt", "must not be empty")
    output = document.get("output_tokens", default_output_tokens)
    if isinstance(output, bool) or not isinstance(output, int):
        raise _problem(where, number, "output_tokens",
                       f"must be an integer, got {type(output).__name__}")
    if not 1 <= output <= MAX_TOKENS:
        raise _problem(where, number, "output_tokens",
                       f"must be within 1..{MAX_TOKENS}, got {output}")
    return Prompt(prompt, len(prompt.split()), output)
