"""Synthetic prompts (seeded lengths, exact word counts) and the prompts file reader."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from collector.adapters.load.prompts import (
    DEFAULT_WORDS,
    Prompt,
    cycled,
    read_prompts_file,
    synthetic,
)
from collector.domain.errors import ConfigError
from collector.domain.serving import Lengths


def take(n: int, lengths_in: Lengths, lengths_out: Lengths, seed: int) -> list[Prompt]:
    return list(itertools.islice(synthetic(lengths_in, lengths_out, seed), n))


def test_default_words_are_w3_to_w4095() -> None:
    assert DEFAULT_WORDS[0] == "w3"
    assert DEFAULT_WORDS[-1] == "w4095"
    assert len(DEFAULT_WORDS) == 4093


def test_fixed_lengths_are_exact_word_counts() -> None:
    prompts = take(20, Lengths(mean=17), Lengths(mean=5), 0)
    assert all(len(p.text.split()) == p.input_tokens == 17 for p in prompts)
    assert all(p.output_tokens == 5 for p in prompts)
    assert all(w in set(DEFAULT_WORDS) for p in prompts for w in p.text.split())


def test_the_seed_makes_the_same_prompts() -> None:
    lengths = Lengths(mean=40, distribution="uniform", spread=0.5)
    assert take(30, lengths, lengths, 3) == take(30, lengths, lengths, 3)
    assert take(30, lengths, lengths, 3) != take(30, lengths, lengths, 4)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_drawn_lengths_vary_within_their_bounds(distribution: str) -> None:
    lengths = Lengths(mean=100, distribution=distribution, spread=0.2)
    prompts = take(2000, lengths, Lengths(mean=3), 1)
    sizes = [p.input_tokens for p in prompts]
    assert all(len(p.text.split()) == p.input_tokens >= 1 for p in prompts)
    assert len(set(sizes)) > 10
    average = sum(sizes) / len(sizes)
    assert 97 <= average <= 103  # sd of the mean: 20 / sqrt(2000) = 0.45 (uniform: 0.26)
    if distribution == "uniform":
        assert min(sizes) >= 80
        assert max(sizes) <= 120


def test_normal_lengths_are_clipped_to_one() -> None:
    prompts = take(500, Lengths(mean=1, distribution="normal", spread=1.0), Lengths(mean=1), 0)
    assert min(p.input_tokens for p in prompts) == 1


def test_a_custom_word_list_must_hold_words() -> None:
    with pytest.raises(ValueError, match="word list"):
        next(synthetic(Lengths(mean=2), Lengths(mean=2), 0, words=["a b"]))
    prompt = next(synthetic(Lengths(mean=3), Lengths(mean=2), 0, words=["x"]))
    assert prompt.text == "x x x"


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "prompts.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_file_gives_prompts_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, '{"prompt": "hello there world", "output_tokens": 7}\n\n'
                           '{"prompt": "second"}\n')
    prompts = read_prompts_file(path, default_output_tokens=16)
    assert prompts == [Prompt("hello there world", 3, 7), Prompt("second", 1, 16)]
    assert list(itertools.islice(cycled(prompts), 3)) == [*prompts, prompts[0]]


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ('{"prompt": "a"}\n{"prompt": 3}\n', 2, "prompt", "must be a string, got int"),
    ('{"output_tokens": 3}\n', 1, "prompt", "got missing"),
    ('{"prompt": "  "}\n', 1, "prompt", "must not be empty"),
    ('{"prompt": "a", "output_tokens": "9"}\n', 1, "output_tokens", "must be an integer"),
    ('{"prompt": "a", "output_tokens": true}\n', 1, "output_tokens", "must be an integer"),
    ('{"prompt": "a", "output_tokens": 0}\n', 1, "output_tokens", "within 1..1000000"),
    ('{"prompt": "a", "output_token": 3}\n', 1, "output_token", "unknown field"),
    ('{"prompt": "a"}\n{"prompt": \n', 2, "(line)", "not JSON"),
    ('["a"]\n', 1, "(line)", "expected an object, got list"),
    (b'{"prompt": "\xff"}\n', 1, "(line)", "not UTF-8"),
    ("\n\n", None, "prompts_file", "no prompts"),
])
def test_each_problem_names_file_line_and_field(tmp_path: Path, text: str | bytes,
                                                line: int | None, field: str,
                                                message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_prompts_file(path, default_output_tokens=4)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), line, field)
    assert message in problem.message
    where = f"{path}:{line}" if line is not None else str(path)
    assert f"{where}: {field}: " in str(caught.value)


def test_reads_are_bounded(tmp_path: Path) -> None:
    long_line = write(tmp_path, json.dumps({"prompt": "w " * 600}) + "\n")
    with pytest.raises(ConfigError, match=r":1: \(line\): line longer than 1000 bytes"):
        read_prompts_file(long_line, default_output_tokens=1, max_line_bytes=1000)
    many = write(tmp_path, '{"prompt": "a"}\n' * 11)
    with pytest.raises(ConfigError, match=r":11: \(line\): more than 10 lines"):
        read_prompts_file(many, default_output_tokens=1, max_lines=10)
    with pytest.raises(ConfigError, match="over the limit of 100"):
        read_prompts_file(many, default_output_tokens=1, max_bytes=100)
    with pytest.raises(ConfigError, match="cannot read it"):
        read_prompts_file(tmp_path / "missing.jsonl", default_output_tokens=1)
