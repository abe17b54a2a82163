"""Values and documents that `check-config` used to accept but `serve`, `run-once` or the
stores could not take, and YAML that crashed the loader: each is now one problem naming the
file, the line and the field."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collector.adapters.config import load_config
from collector.adapters.config.bounds import MAX_BENCHMARKS
from collector.domain.errors import ConfigError, ConfigProblem
from tests.unit.test_config import BENCH


def _known(_name: str) -> bool:
    return True


def problems_of(tmp_path: Path, text: str) -> list[ConfigProblem]:
    path = tmp_path / "c.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, architecture_known=_known)
    for problem in caught.value.problems:
        assert "\n" not in str(problem)
        assert str(problem).startswith(f"{path}:")
    return caught.value.problems


def scheduled(schedule: str, serve: str = "{}") -> str:
    return f"serve: {serve}\n" + BENCH.replace("  s:\n", f"  s:\n    schedule: {schedule}\n")


# (name, text, line, field, message fragment): one problem each.
REFUSED = [
    ("cron minute 99", scheduled("{cron: '99 * * * *'}"), 4, "suites.s.schedule.cron",
     "invalid cron expression: Error validating expression '99'"),
    ("cron that never fires", scheduled("{cron: '0 0 30 2 *'}"), 4, "suites.s.schedule.cron",
     "never fires"),
    ("cron with zero step", scheduled("{cron: '*/0 * * * *'}"), 4, "suites.s.schedule.cron",
     "Increment must be higher than 0"),
    ("infinite interval", scheduled("{interval_s: .inf}"), 4, "suites.s.schedule.interval_s",
     "less than or equal to 31622400 (got inf)"),
    ("interval 1e300", scheduled("{interval_s: 1e300}"), 4, "suites.s.schedule.interval_s",
     "less than or equal to 31622400"),
    ("nan interval", scheduled("{interval_s: .nan}"), 4, "suites.s.schedule.interval_s",
     "(got nan)"),
    ("jitter 1e20", scheduled("{interval_s: 60, jitter_s: 1e20}"), 4,
     "suites.s.schedule.jitter_s", "less than or equal to 31622400"),
    ("jitter on a cron schedule", scheduled("{cron: '0 * * * *', jitter_s: 5}"), 4,
     "suites.s.schedule", "jitter_s applies to interval_s only"),
    ("fractional misfire grace", scheduled("{interval_s: 60}", "{misfire_grace_s: 0.5}"), 1,
     "serve.misfire_grace_s", "valid integer (got 0.5)"),
    ("infinite grace", scheduled("{interval_s: 60}", "{grace_s: .inf}"), 1, "serve.grace_s",
     "less than or equal to 86400 (got inf)"),
    ("infinite outbox retry", scheduled("{interval_s: 60}", "{outbox_retry_s: .inf}"), 1,
     "serve.outbox_retry_s", "less than or equal to 86400"),
    ("infinite timeout", BENCH + "        timeout_s: .inf\n", 8,
     "suites.s.benchmarks[0].timeout_s", "less than or equal to 86400 (got inf)"),
    ("infinite max duration", BENCH + "        measurement: {max_duration_s: .inf}\n", 8,
     "suites.s.benchmarks[0].measurement.max_duration_s", "less than or equal to 86400"),
    ("sequence length over int4", BENCH + "        sequence_length: 3000000000\n", 8,
     "suites.s.benchmarks[0].sequence_length", "less than or equal to 2147483647"),
    ("matrix batch size over int4", BENCH + "        matrix: {batch_size: [1, 3000000000]}\n",
     8, "suites.s.benchmarks[0].matrix.batch_size[1]", "less than or equal to 2147483647"),
    ("seed over 64 bits", BENCH + "          seed: 99999999999999999999\n", 8,
     "suites.s.benchmarks[0].model.seed", "fits in 64 bits"),
    ("timescale interval overflow",
     BENCH + "storage: {timescaledb: {compress_after: 99999999999 days}}\n", 8,
     "storage.timescaledb.compress_after", "should match pattern"),
    ("remote code at a branch",
     BENCH.replace("source: synthetic\n          architecture: GPT2LMHeadModel",
                   "source: hub\n          id: org/model\n          trust_remote_code: true"
                   "\n          revision: main"), 9, "suites.s.benchmarks[0].model.revision",
     "pin revision to a full 40-character commit hash (got 'main')"),
    ("remote code without a revision",
     BENCH.replace("source: synthetic\n          architecture: GPT2LMHeadModel",
                   "source: hub\n          id: org/model\n          trust_remote_code: true"),
     6, "suites.s.benchmarks[0].model.revision", "(got 'main')"),
    ("remote code at a short hash",
     BENCH.replace("source: synthetic\n          architecture: GPT2LMHeadModel",
                   "source: hub\n          id: org/model\n          trust_remote_code: true"
                   "\n          revision: 1a2b3c4"), 9, "suites.s.benchmarks[0].model.revision",
     "(got '1a2b3c4')"),
    # YAML
    ("5000-deep nesting", BENCH + "          config: {x: " + "[" * 5000 + "]" * 5000 + "}\n",
     # A long field path is cut at 100 characters.
     8, ("suites.s.benchmarks[0].model.config.x" + "[0]" * 30)[:97] + "...",
     "nested more than 32 levels deep"),
    ("4301-digit integer", BENCH + "        batch_size: " + "9" * 4301 + "\n", 8,
     "suites.s.benchmarks[0].batch_size", "an integer of 4,301 characters; at most 64"),
    ("custom tag in model.config", BENCH + "          config: {n_layer: !foo 2}\n", 8,
     "suites.s.benchmarks[0].model.config.n_layer", "YAML tag !foo is not allowed"),
    ("set in model.config", BENCH + "          config: {layers: !!set {a, b}}\n", 8,
     "suites.s.benchmarks[0].model.config.layers", "YAML tag !!set is not allowed"),
    ("date in model.config", BENCH + "          config: {released: 2020-01-01}\n", 8,
     "suites.s.benchmarks[0].model.config.released", "got a date ('2020-01-01'); quote it"),
    ("infinity in model.config", BENCH + "          config: {scale: .inf}\n", 8,
     "suites.s.benchmarks[0].model.config.scale", "not a finite number"),
    ("huge integer in model.config", BENCH + "          config: {n: 99999999999999999999}\n",
     8, "suites.s.benchmarks[0].model.config.n", "out of the 64-bit range"),
    ("NUL in a string", BENCH + '          config: {name: "a\\0b"}\n', 8,
     "suites.s.benchmarks[0].model.config.name", "NUL character"),
    ("lone surrogate", BENCH + '          config: {name: "a\\ud800"}\n', 8,
     "suites.s.benchmarks[0].model.config.name", "lone surrogate"),
    ("recursive alias", "x: &x [*x]\n" + BENCH, 1, "x[0]", "alias *x refers to a collection"),
    ("control character", BENCH + "        name2: \x01\n", 8, "", "invalid YAML: unacceptable "
     "character #x0001"),
    ("3-line matrix of 64,000", BENCH + "        matrix:\n"
     f"          batch_size: [{', '.join(str(i) for i in range(1, 41))}]\n"
     f"          sequence_length: [{', '.join(str(i) for i in range(1, 41))}]\n"
     f"          new_tokens: [{', '.join(str(i) for i in range(1, 41))}]\n", 8,
     "suites.s.benchmarks[0].matrix", "expands to 64,000 benchmarks (40 batch_size x 40 "
     "sequence_length x 40 new_tokens); at most 1,000 per file"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"),
                         [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_values_serve_or_the_stores_cannot_take_are_refused_with_file_line_and_field(
        tmp_path: Path, text: str, line: int, field: str, fragment: str) -> None:
    (problem,) = problems_of(tmp_path, text)
    assert (problem.line, problem.field) == (line, field), str(problem)
    assert fragment in problem.message, str(problem)


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 10)}]")
    text = "\n".join(lines) + "\n" + BENCH
    assert len(text.encode()) < 600  # about 10**7 nodes once expanded
    started = time.monotonic()
    (problem,) = problems_of(tmp_path, text)
    assert time.monotonic() - started < 2
    assert problem.line == 5 and problem.field.startswith("e")
    assert "more than 20,000 nodes (aliases expanded)" in problem.message


def test_a_file_over_one_mib_is_refused_unread(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, BENCH + "#" * (1 << 20))
    assert problem.line is None and "larger than 1 MiB" in problem.message


def test_a_byte_order_mark_is_fine_and_bad_bytes_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.yml"
    path.write_bytes(b"\xef\xbb\xbf" + BENCH.encode())
    assert load_config(path, architecture_known=_known).benchmark_count == 1
    path.write_bytes(BENCH.encode() + b"        name2: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, architecture_known=_known)
    (problem,) = caught.value.problems
    assert problem.line == 8 and "not UTF-8 text (byte 0xff)" in problem.message


def test_matrices_count_across_the_file(tmp_path: Path) -> None:
    half = MAX_BENCHMARKS // 2 + 1
    values = ", ".join(str(i) for i in range(1, half + 1))
    second = BENCH.split("benchmarks:\n")[1].replace("name: b", "name: c")
    text = (BENCH + f"        matrix: {{batch_size: [{values}]}}\n" + second
            + f"        matrix: {{sequence_length: [{values}]}}\n")
    (problem,) = problems_of(tmp_path, text)
    assert problem.field == "suites.s.benchmarks[1].matrix" and problem.line == 13
    assert f"and {half:,} come before it" in problem.message


def test_keys_with_newlines_do_not_split_the_message(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, BENCH + '        "bad\\nkey": 1\n')
    assert str(problem).endswith("suites.s.benchmarks[0].bad\\nkey: unknown key; expected "
                                 "one of: attn_implementation, backend, batch_size, "
                                 "batching, compile, device, dtype, kernels, matrix, "
                                 "measurement, memory_limit_mb, model, name, new_tokens, "
                                 "onnxruntime, quantization, sdpa_backend, sequence_length, "
                                 "serving, task, threads, timeout_s")


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(scheduled("{interval_s: 31622400, jitter_s: 31622400}",
                              "{grace_s: 86400, misfire_grace_s: 31622400, "
                              "outbox_retry_s: 86400}")
                    + "          seed: 9223372036854775807\n"
                      "          config: {n: -9223372036854775808, nested: {x: [1.5, null]}}\n"
                      "        timeout_s: 86400\n        sequence_length: 2147483647\n"
                      "        measurement: {max_duration_s: 86400, min_duration_s: 86400}\n")
    config = load_config(path, architecture_known=_known)
    (spec,) = config.suites[0].benchmarks
    assert spec.timeout_s == 86400 and spec.sequence_length == 2**31 - 1
    assert config.serve.misfire_grace_s == 31622400
    hub = BENCH.replace("source: synthetic\n          architecture: GPT2LMHeadModel",
                        "source: hub\n          id: org/model\n          trust_remote_code: "
                        "true\n          revision: " + "0123456789abcdef" * 2 + "01234567")
    path.write_text(hub)
    assert load_config(path, architecture_known=_known).benchmark_count == 1
