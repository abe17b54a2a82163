"""Fuzz `collector check-config` (and the schedule serve would build), `collector detect
--input` and the results files `compare`, `report` and `compare --pivot` read: 2,800 inputs
(mutated valid documents, documents built from the schema's own vocabulary with edge
values, random text; since issue 23 also identifier lengths, NaN, infinite and subnormal
values, strict types, model classes, workloads in two suites, repeated runs, HTML, ANSI and
markup in every string field, times of a series), each either accepted (and then holding
what it says: no bare NaN in JSON, no markup or escape sequence from data in what is shown)
or refused with exit 2 and one line per problem, never a traceback, each within a time
bound, each within a memory bound.

Most inputs go to what the CLI runs for the command (load_config; read_text, parse_series,
detect_series and detect_document):
the contract there is that only ConfigError / InputError escape, every problem one line
naming the file and line; main() turns exactly those into exit 2 (one `main()` costs 15 ms
of argparse and console set-up, the checks themselves 0.3-20 ms). A share goes through
main() itself, and a few of the nastiest inputs through a real subprocess with an
address-space limit. Hypothesis is derandomized (a fixed seed from each test's name) and
keeps no example database: CI runs the same inputs every time."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.adapters.files import read_text
from collector.adapters.scheduling import next_fire_times
from collector.cli import main
from collector.detect.offline import detect_series
from collector.domain.catalogue import Direction
from collector.domain.detection import DetectorSettings
from collector.domain.errors import ConfigError, InputError
from collector.present.documents import detect_document
from collector.present.series_input import parse_series

ROOT = Path(__file__).parents[2]
PER_INPUT_S = 10.0  # typical: 1-50 ms; a busy CI core is slow, a hang is slower
MEMORY_GROWTH_KB = 400_000  # max RSS growth of this process over one fuzz test
SUBPROCESS_AS_BYTES = 3 << 30  # address space of a spot-check subprocess


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    print_blob=False, suppress_health_check=list(HealthCheck))


class Overtime(BaseException):
    """One input ran past PER_INPUT_S (a BaseException: no `except Exception` hides it)."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise Overtime(f"one input ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_bound() -> Iterator[None]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < MEMORY_GROWTH_KB, f"max RSS grew {grown} KiB"


def scratch(factory: Any) -> Path:
    """One directory for every example of a run (each input overwrites the last)."""
    path = Path(factory.getbasetemp()) / "fuzz"
    path.mkdir(exist_ok=True)
    return path


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with time_bound(PER_INPUT_S), contextlib.redirect_stdout(out), (
            contextlib.redirect_stderr(err)):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def assert_config_outcome(code: int, err: str, path: Path) -> None:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    if code == 0:
        assert all(line.startswith("note: ") for line in lines), err
        return
    assert code == 2, (code, err)
    assert lines and lines[0].startswith("error: "), err
    for line in lines[1:]:  # one line per problem, each naming the file
        assert line.startswith(f"  {path}"), err


def assert_detect_outcome(code: int, out: str, err: str, path: Path) -> None:
    assert "Traceback" not in err, err
    if code == 0:
        assert all(line.startswith("note: ") for line in err.splitlines()), err
        assert json.loads(out)["format"] == "collector-detect"
        return
    assert code == 2, (code, err)
    (line,) = err.splitlines()
    assert re.match(f"error: {re.escape(str(path))}:[0-9]+: ", line), line  # file and line


# ---------------------------------------------------------------------------------------
# Mutations of valid documents

def mutated(base: str, vocabulary: list[str]) -> st.SearchStrategy[str]:
    edit = st.tuples(st.sampled_from(["insert", "delete", "replace", "duplicate"]),
                     st.floats(0, 1), st.integers(0, 40),
                     st.one_of(st.sampled_from(vocabulary), st.text(max_size=12)))

    def apply(edits: list[tuple[str, float, int, str]]) -> str:
        text = base
        for kind, where, length, payload in edits:
            at = int(where * len(text))
            if kind == "insert":
                text = text[:at] + payload + text[at:]
            elif kind == "delete":
                text = text[:at] + text[at + length:]
            elif kind == "replace":
                text = text[:at] + payload + text[at + len(payload):]
            else:
                text = text[:at] + text[at:at + length] * 3 + text[at:]
        return text

    return st.lists(edit, min_size=1, max_size=4).map(apply)


YAML_WORDS = [
    ":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b [*a, *a, *a]", "!!str ",
    "!!set ", "!foo ", "!!binary ", "!!int ", "\n", "\n  ", "  ", "'", '"', "#", ".inf",
    "-.inf", ".nan", "-1", "0", "0.5", "1e300", "9" * 80, "9" * 4400, "null", "true", "~",
    "<<: *a", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\t", "\\0", '"\\0"',
    '"\\ud800"', "\ufeff", "é", "\x85", "\u2028", "99 * * * *", "0 0 30 2 *", "*/0",
    "2020-01-01", "0x1F", "1_000", "3000000000", "9223372036854775808", "Mars/Olympus",
    "trust_remote_code: true", "revision: main", "[" * 60, "{a: " * 40,
]

SCHEDULED = """\
version: 1
serve: {grace_s: 10, misfire_grace_s: 60, outbox_retry_s: 30}
suites:
  s:
    schedule: {interval_s: 3600, jitter_s: 5, timezone: Europe/Paris}
    defaults: {sequence_length: 8, timeout_s: 60}
    benchmarks:
      - name: tiny
        model: {source: synthetic, architecture: GPT2LMHeadModel, config: {n_layer: 1}}
        matrix: {batch_size: [1, 2]}
        measurement: {min_iterations: 3, min_duration_s: 0, max_duration_s: 0.3}
  c:
    schedule: {cron: '*/15 2-4 * * mon-fri'}
    benchmarks:
      - name: hub
        model: {source: hub, id: org/m, revision: main}
"""
CONFIG_BASES = [SCHEDULED, (ROOT / "configs/examples/cpu-local.yml").read_text()]


# ---------------------------------------------------------------------------------------
# Documents built from the schema's vocabulary

EDGE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 2**31 - 1, 2**31, 2**63, 86_400, 86_401, 31_622_400,
                     31_622_401, 1e300, "", "x", "main", "a" * 40, "cpu", "cuda:0"]),
    st.text(max_size=8))


def maybe(value: st.SearchStrategy[Any], odds: int = 16) -> st.SearchStrategy[Any]:
    """Mostly `value`, one time in `odds` an edge value: a document has a dozen or more
    fields, and with st.one_of (each branch half the time) nearly every one would be
    refused before its schedule or its numbers are read. A third are accepted now."""
    # Not st.integers: hypothesis favours the ends of a range.
    return st.sampled_from(range(odds)).flatmap(lambda d: EDGE if d == odds // 2 else value)


CRON_FIELD = st.sampled_from(["*", "*/5", "*/0", "0", "1", "2", "15", "29", "30", "31", "59",
                              "60", "99", "1-5", "5-1", "1,2", "mon", "mon-fri", "jan", "L",
                              "last", "?", "-1", "x"])
CRON = st.sampled_from(range(4)).flatmap(lambda d: st.lists(
    CRON_FIELD, min_size=5, max_size=5).map(" ".join) if d else st.one_of(
    st.lists(CRON_FIELD, min_size=4, max_size=6).map(" ".join), st.text(max_size=12)))
SECONDS = st.one_of(st.floats(0, 4e7), st.sampled_from([0.5, 1, 60, 3600, 86_400, 31_622_400]))
SCHEDULE = st.one_of(
    st.fixed_dictionaries({"cron": maybe(CRON)}, optional={"timezone": maybe(
        st.sampled_from(["UTC", "Europe/Paris", "Asia/Kathmandu", "Mars/X", "../x"]))}),
    st.fixed_dictionaries({"interval_s": maybe(SECONDS)}, optional={
        "jitter_s": maybe(SECONDS), "timezone": maybe(st.sampled_from(["UTC", "Etc/GMT-14"]))}))
SERVE = st.fixed_dictionaries({}, optional={
    "port": maybe(st.integers(-1, 70_000)), "grace_s": maybe(SECONDS),
    "misfire_grace_s": maybe(SECONDS), "outbox_retry_s": maybe(SECONDS),
    "run_at_start": maybe(st.booleans())})
INTS = maybe(st.integers(1, 16))  # EDGE has 2**31 - 1, 2**31, 2**63
JSONISH = st.recursive(EDGE, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
MODEL = maybe(st.one_of(
    st.fixed_dictionaries({"source": st.just("synthetic"), "architecture": maybe(
        st.sampled_from(["GPT2LMHeadModel", "BertModel"]))},
        optional={"config": maybe(st.dictionaries(st.text(max_size=6), JSONISH, max_size=3)),
                  "seed": INTS, "trust_remote_code": maybe(st.booleans())}),
    st.fixed_dictionaries({"source": st.just("hub"), "id": st.just("org/m")},
                          optional={"revision": maybe(st.sampled_from(["main", "0" * 40])),
                                    "trust_remote_code": maybe(st.booleans())}),
    st.fixed_dictionaries({"source": st.just("local"), "path": maybe(st.just("/m"))})))
MEASUREMENT = st.fixed_dictionaries({}, optional={
    "warmup_iterations": INTS, "min_iterations": INTS, "repetitions": INTS,
    "max_duration_s": maybe(st.sampled_from([5, 60, 86_400, 86_401])),
    "mode": maybe(st.sampled_from(["wall", "instructions"]))})
AXES = {"batch_size": INTS, "sequence_length": INTS, "new_tokens": INTS,
        "dtype": maybe(st.sampled_from(["float32", "bfloat16"])),
        "backend": maybe(st.sampled_from(["eager", "compile"])),
        "device": maybe(st.sampled_from(["cpu", "cuda", "cuda:1"]))}
SETTINGS_ = st.fixed_dictionaries({}, optional={
    **AXES, "threads": INTS, "timeout_s": maybe(SECONDS), "memory_limit_mb": INTS,
    "measurement": maybe(MEASUREMENT),
    "matrix": maybe(st.fixed_dictionaries({}, optional={
        k: maybe(st.lists(v, min_size=1, max_size=5)) for k, v in AXES.items()}))})
BENCH = st.builds(lambda name, model, rest: {"name": name, "model": model, **rest},
                  maybe(st.sampled_from(["a", "b"])), MODEL, SETTINGS_)
SUITE = st.fixed_dictionaries({"benchmarks": maybe(st.lists(BENCH, min_size=1, max_size=3)),
                               "schedule": maybe(SCHEDULE)},
                              optional={"defaults": maybe(SETTINGS_),
                                        "description": maybe(st.text(max_size=20))})
DOCUMENT = st.fixed_dictionaries(
    {"suites": maybe(st.dictionaries(st.sampled_from(["s", "t"]), SUITE, min_size=1,
                                     max_size=2))},
    optional={"version": maybe(st.just(1)), "serve": maybe(SERVE),
              "defaults": maybe(SETTINGS_),
              "storage": maybe(st.fixed_dictionaries({}, optional={
                  "local_path": maybe(st.just("x.db")),
                  "schema": maybe(st.sampled_from(["migrate", "refuse"]))})),
              "detection": maybe(st.fixed_dictionaries({}, optional={
                  "history_runs": maybe(st.integers(20, 5000)),
                  "min_effect": maybe(st.dictionaries(
                      st.sampled_from(["default", "latency_p50_seconds"]),
                      st.floats(0, 9)))}))})


def dump(document: Any) -> str:
    out = io.StringIO()
    YAML(typ="safe").dump(document, out)
    return out.getvalue()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def load_or_refuse(path: Path) -> None:
    """load_config accepts (and the accepted schedules give run times, built by the
    scheduler's own trigger_for) or raises ConfigError of one-line problems."""
    try:
        with time_bound(PER_INPUT_S):
            config = load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            text = str(problem)
            assert "\n" not in text and text.isprintable(), text
            assert text.startswith(str(path)), text
        return
    with time_bound(PER_INPUT_S):
        next_fire_times(config, count=2)


def check_config_cli(path: Path) -> None:
    code, _, err = cli("check-config", str(path))
    assert_config_outcome(code, err, path)
    if code == 0:
        code, _, err = cli("schedule", "--config", str(path))
        assert code == 0, err


ANY_CONFIG_BASE = st.one_of(*(mutated(base, YAML_WORDS) for base in CONFIG_BASES))


@fuzz(250)
@given(ANY_CONFIG_BASE)
def test_mutated_configs_are_accepted_or_refused_in_one_line_each(
        tmp_path_factory: Any, text: str) -> None:
    with memory_bound():
        load_or_refuse(write(scratch(tmp_path_factory), "fuzz.yml", text))


@fuzz(250)
@given(DOCUMENT)
def test_configs_from_the_schemas_vocabulary_are_accepted_or_refused(
        tmp_path_factory: Any, document: Any) -> None:
    with memory_bound():
        load_or_refuse(write(scratch(tmp_path_factory), "fuzz.yml", dump(document)))


@fuzz(200)
@given(st.text(alphabet=st.sampled_from(sorted(set("".join(YAML_WORDS)) | set("abs0123"))),
               max_size=200))
def test_random_yaml_text_is_accepted_or_refused(tmp_path_factory: Any, text: str) -> None:
    with memory_bound():
        load_or_refuse(write(scratch(tmp_path_factory), "fuzz.yml", "suites:\n" + text))


@fuzz(100)
@given(st.one_of(ANY_CONFIG_BASE, DOCUMENT.map(dump)))
def test_check_config_exits_0_or_2_with_one_line_per_problem(
        tmp_path_factory: Any, text: str) -> None:
    with memory_bound():
        check_config_cli(write(scratch(tmp_path_factory), "fuzz.yml", text))


# ---------------------------------------------------------------------------------------
# detect --input

VALUES = [1.0, 1.01, 0.99, 1.02, 1.0, 0.98, 1.3, 1.31, 1.29, 1.3, 1.32, 1.3]
CSV_BASE = "time,value,samples,contaminated\n" + "".join(
    f"2026-01-01T{i:02d}:00:00,{v},{v};{v * 1.01},{'true' if i == 3 else 'false'}\n"
    for i, v in enumerate(VALUES))
JSON_BASE = json.dumps({"points": [{"time": str(i), "value": v, "samples": [v, v * 1.01]}
                                   for i, v in enumerate(VALUES)]}, indent=1)
DATA_WORDS = [
    '"', ",", "\n", "\r\n", "[", "]", "{", "}", ":", "true", "false", "null", "NaN",
    "Infinity", "-Infinity", "-1", "0", "1e999", "1e308", "9" * 400, "9" * 5000, "\ufeff",
    ";", "x" * 200, '"value"', '"samples": [true]', '"contaminated": 2', "[" * 40, "\\u0000",
    "\x00", "\\ud800", "é", "value", "time", "samples", "contaminated", "yes", ",,,,",
]
POINT_VALUE = st.one_of(EDGE, st.floats(1e-300, 1e300), st.lists(EDGE, max_size=3))
POINT = st.fixed_dictionaries({}, optional={"value": POINT_VALUE, "time": POINT_VALUE,
                                            "samples": POINT_VALUE,
                                            "contaminated": POINT_VALUE})
JSON_SERIES = st.one_of(st.lists(POINT, max_size=20), st.fixed_dictionaries(
    {"points": st.one_of(st.lists(POINT, max_size=20), EDGE)}), JSONISH)
CELL = st.one_of(st.sampled_from(["1", "2.5", "-1", "nan", "inf", "true", "", "1;2", "x",
                                  "1e999", '"1,2"', '"a\nb"', "9" * 400]), st.text(max_size=6))
CSV_SERIES = st.builds(
    lambda header, rows: ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows),
    st.lists(st.sampled_from(["value", "time", "samples", "contaminated", "x", ""]),
             min_size=1, max_size=5),
    st.lists(st.lists(CELL, max_size=6), max_size=20))


def read_or_refuse(path: Path) -> None:
    """The detect command's steps accept, or InputError of one line naming file and line."""
    try:
        with time_bound(PER_INPUT_S):
            points = parse_series(read_text(path, what="series file"), str(path))
            changes = detect_series(points, Direction.LOWER_IS_BETTER, DetectorSettings())
            body = detect_document(points, changes, direction="lower_is_better",
                                   settings=DetectorSettings(), source=str(path), metric=None)
    except InputError as exc:
        text = str(exc)
        assert "\n" not in text and text.isprintable(), text
        assert re.match(re.escape(str(path)) + r":[0-9]+: ", text), text
        return
    json.dumps(body, allow_nan=False)  # what detect prints is strict JSON


def check_detect_cli(path: Path) -> None:
    code, out, err = cli("detect", "--input", str(path))
    assert_detect_outcome(code, out, err, path)


MUTATED_SERIES = st.one_of(mutated(CSV_BASE, DATA_WORDS).map(lambda t: (t, ".csv")),
                           mutated(JSON_BASE, DATA_WORDS).map(lambda t: (t, ".json")))
BUILT_SERIES = st.one_of(JSON_SERIES.map(lambda d: (json.dumps(d), ".json")),
                         CSV_SERIES.map(lambda t: (t, ".csv")),
                         st.text(alphabet=st.sampled_from(sorted(set("".join(DATA_WORDS)))),
                                 max_size=200).map(lambda t: (t, ".txt")))


@fuzz(600)
@given(MUTATED_SERIES)
def test_mutated_detect_inputs_are_accepted_or_refused_in_one_line(
        tmp_path_factory: Any, case: tuple[str, str]) -> None:
    text, suffix = case
    with memory_bound():
        read_or_refuse(write(scratch(tmp_path_factory), f"series{suffix}", text))


@fuzz(600)
@given(BUILT_SERIES)
def test_built_and_random_detect_inputs_are_accepted_or_refused(
        tmp_path_factory: Any, case: tuple[str, str]) -> None:
    text, suffix = case
    with memory_bound():
        read_or_refuse(write(scratch(tmp_path_factory), f"series{suffix}", text))


@fuzz(200)
@given(st.one_of(MUTATED_SERIES, BUILT_SERIES))
def test_detect_exits_0_or_2_with_one_line(tmp_path_factory: Any,
                                           case: tuple[str, str]) -> None:
    text, suffix = case
    with memory_bound():
        check_detect_cli(write(scratch(tmp_path_factory), f"series{suffix}", text))


# ---------------------------------------------------------------------------------------
# Spot checks through a real process, with an address-space limit

def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_AS_BYTES, SUBPROCESS_AS_BYTES))


BOMB = "".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
    *(f"{n}: &{n} [{','.join([f'*{p}'] * 10)}]\n" for n, p in zip("bcdefgh", "abcdefg",
                                                                      strict=True)),
    "suites: {s: {benchmarks: [{name: b, model: {source: synthetic, architecture: X}}]}}\n"])
SPOT_CHECKS = [
    ("check-config", "deep.yml", "suites: " + "[" * 5000 + "]" * 5000 + "\n"),
    ("check-config", "bomb.yml", BOMB),
    ("check-config", "int.yml", "suites: " + "9" * 5000 + "\n"),
    ("detect", "deep.json", "[" * 100_000 + "]" * 100_000),
    ("detect", "field.csv", "value\n" + "1" * 200_000 + "\n"),
    ("detect", "int.json", '[{"value": ' + "9" * 5000 + "}]"),
]


def test_spot_checks_through_a_real_process_with_bounded_memory(tmp_path: Path) -> None:
    for command, name, text in SPOT_CHECKS:
        path = tmp_path / name
        path.write_text(text)
        argv = [command, str(path)] if command == "check-config" else [
            command, "--input", str(path)]
        done = subprocess.run([sys.executable, "-m", "collector", *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False,
                              preexec_fn=_limit)
        assert done.returncode == 2, (name, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        problems = done.stderr.splitlines()
        assert problems and all(str(path) in line for line in problems[-1:]), done.stderr


# ---------------------------------------------------------------------------------------
# Round 2 (issue 23): identifier lengths, NaN/inf/subnormal values, strict types, model
# classes, duplicate workloads and runs, HTML/ANSI in every string field, times of a series

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "\x1b[2J\x1b[31mred",
           "\x1b]0;title\x07", "[bold red]markup[/]", "&lt;b&gt;", "|a|b|", "`code`",
           "**x** _y_", "\u202egnp.exe", "a\u200bb", "\x85", "\u2028", "line\nbreak", "é", ""]
HOSTILE_TEXT = st.one_of(st.sampled_from(HOSTILE), st.builds(
    lambda a, b: a + b, st.text(max_size=4), st.sampled_from(HOSTILE)))
IDENTIFIER = st.builds(lambda n, c: c * n, st.sampled_from([1, 63, 64, 199, 200, 201, 500,
                                                            501, 5000]),
                       st.sampled_from(["a", "B", "9", "-", "_", ".", "é", "\x1b"]))
EXTREME = st.sampled_from([math.nan, math.inf, -math.inf, 5e-324, 2.2e-308, 1e308, -0.0, 0,
                           -1, 1e-18, 1e18, True, False, "8", "1", "nan", 8.0, 2**31, 2**63])
MODEL_CLASSES = ["GPT2LMHeadModel", "BertModel", "BertForSequenceClassification",
                 "WhisperForConditionalGeneration", "SpeechT5HifiGan"]
NOT_MODEL_CLASSES = ["AutoConfig", "BertTokenizer", "Trainer", "PreTrainedModel", "BertConfig",
                     "AutoModel", "BertPreTrainedModel", "BertLayer", "MODEL_MAPPING"]
CONFIG_KEYS = st.sampled_from(["n_layer", "n_head", "__class__", "_private", "__init__", "a b",
                               "1x", "hidden_size"])


def r2_maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`value` two times in three, else an extreme: most documents still get far."""
    return st.sampled_from(range(3)).flatmap(lambda d: value if d else EXTREME)


R2_MODEL = st.one_of(
    st.fixed_dictionaries(
        {"source": st.just("synthetic"), "architecture": st.one_of(
            st.sampled_from(MODEL_CLASSES + NOT_MODEL_CLASSES), IDENTIFIER)},
        optional={"config": st.dictionaries(CONFIG_KEYS, st.one_of(
            st.integers(1, 4), EXTREME, st.dictionaries(CONFIG_KEYS, st.integers(1, 4),
                                                        max_size=2)), max_size=3),
                  "seed": r2_maybe(st.integers(0, 9)),
                  "trust_remote_code": r2_maybe(st.booleans())}),
    st.fixed_dictionaries({"source": st.just("hub"), "id": st.one_of(
        st.just("org/m"), IDENTIFIER, HOSTILE_TEXT)}, optional={
        "revision": st.one_of(st.just("main"), IDENTIFIER, HOSTILE_TEXT)}))
R2_BENCH = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["a", "b"]), IDENTIFIER), "model": R2_MODEL},
    optional={"threads": st.one_of(st.integers(1, 4), st.sampled_from([1024, 1025, 3000]),
                                   EXTREME),
              "batch_size": r2_maybe(st.integers(1, 4)),
              "timeout_s": r2_maybe(st.floats(1, 100)),
              "measurement": st.fixed_dictionaries({}, optional={
                  "repetitions": r2_maybe(st.integers(1, 3)),
                  "max_duration_s": r2_maybe(st.floats(0.1, 5))})})


def _r2_document(benches: list[dict[str, Any]], shared: bool, names: tuple[str, str],
                 description: str) -> dict[str, Any]:
    """Two suites; with `shared` both hold the same benchmarks (a workload in two suites)."""
    first, second = names
    return {"version": 1, "suites": {
        first: {"benchmarks": benches, "description": description},
        second: {"benchmarks": benches if shared else [{**b, "batch_size": 7}
                                                       for b in benches]}}}


R2_DOCUMENT = st.builds(_r2_document, st.lists(R2_BENCH, min_size=1, max_size=3),
                        st.booleans(), st.tuples(st.one_of(st.just("s"), IDENTIFIER),
                                                 st.sampled_from(["t", "u"])),
                        HOSTILE_TEXT)


def assert_config_accepted_right(config: Any) -> None:
    """What an accepted config holds is what it says: integers are integers, threads are
    bounded, a synthetic architecture is a model class, config keys are attribute names,
    and no workload is in two places."""
    from collector.adapters.config.bounds import MAX_THREADS
    from collector.adapters.config.expand import transformers_architecture_known
    from collector.domain.model import SyntheticSource

    seen: set[str] = set()
    for suite in config.suites:
        for spec in suite.benchmarks:
            assert type(spec.batch_size) is int and type(spec.sequence_length) is int
            assert spec.threads is None or (type(spec.threads) is int
                                            and 1 <= spec.threads <= MAX_THREADS)
            if isinstance(spec.model, SyntheticSource):
                assert transformers_architecture_known(spec.model.architecture) in (True, None)
                assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key)
                           for key in spec.model.config)
                assert type(spec.model.seed) is int
            identity = json.dumps(spec.identity(), sort_keys=True)
            assert identity not in seen, spec.label
            seen.add(identity)


@fuzz(200)
@given(R2_DOCUMENT)
def test_round2_configs_are_refused_in_one_line_each_or_hold_what_they_say(
        tmp_path_factory: Any, document: Any) -> None:
    path = write(scratch(tmp_path_factory), "fuzz.yml", dump(document))
    with memory_bound():
        try:
            with time_bound(PER_INPUT_S):
                config = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                text = str(problem)
                assert "\n" not in text and text.isprintable(), text
                assert text.startswith(str(path)), text
            return
        assert_config_accepted_right(config)


@fuzz(60)
@given(R2_DOCUMENT)
def test_round2_check_config_exits_0_or_2_with_one_line_per_problem(
        tmp_path_factory: Any, document: Any) -> None:
    with memory_bound():
        check_config_cli(write(scratch(tmp_path_factory), "fuzz.yml", dump(document)))


# -- results files: compare, report and the pivot --

def _results_base(latency: float) -> dict[str, Any]:
    from collector.present.documents import results_document
    from tests.helpers import make_run

    return results_document([make_run(models=("bert", "vit"), latency=latency,
                                      fail="vit" if latency > 0.01 else None)])


RESULTS_BASES = (_results_base(0.01), _results_base(0.0105))
JSON_LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1", "0", "5e-324", "2.2e-308",
                 "1e-18", "1e18", "1e308", "true", '"1"', "1" + "0" * 30, "null", "[]"]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path, node


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        document = document[part]
    document[path[-1]] = value


EDIT = st.tuples(st.sampled_from(["metric", "string", "append", "duplicate", "length"]),
                 st.floats(0, 1, exclude_max=True), st.sampled_from(JSON_LITERALS),
                 st.one_of(HOSTILE_TEXT, st.just("lone \ud800 surrogate")))


def results_text(base: dict[str, Any], edits: list[tuple[str, float, str, str]]) -> str:
    """`base` edited: metrics set to edge literals (NaN, infinities, subnormals, negative,
    huge, not numbers), string fields replaced by or suffixed with HTML/ANSI/markup, long
    identifiers, the run repeated (as the file holds it: same id)."""
    document = copy.deepcopy(base)
    literals: dict[str, str] = {}
    for kind, where, literal, text in edits:
        leaves = list(_leaves(document))
        metrics = [p for p, _ in leaves if "metrics" in p and "reading" not in p]
        strings = [p for p, v in leaves if isinstance(v, str)
                   and p[-1] not in ("format", "run_id", "series_id")]
        if kind == "metric" and metrics:
            mark = f"@@{len(literals)}@@"
            literals[mark] = literal
            _set(document, metrics[int(where * len(metrics))], mark)
        elif kind in ("string", "append") and strings:
            path = strings[int(where * len(strings))]
            old = dict(leaves)[path]
            _set(document, path, text if kind == "string" else old + text)
        elif kind == "length":
            document["runs"][0]["host"] = "h" * int(10 ** (1 + 4 * where))
        elif kind == "duplicate":
            document["runs"].append(copy.deepcopy(document["runs"][0]))
    out = json.dumps(document)
    for mark, literal in literals.items():
        out = out.replace(f'"{mark}"', literal)
    return out


def assert_results_outcome(code: int, out: str, err: str, form: str,
                           paths: list[Path]) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2, 5), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if not line.startswith("note: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        # A file's problem names the file; what is wrong with the comparison says so.
        assert any(str(p) in lines[0] for p in paths) or lines[0].startswith(
            ("error: nothing to", "error: no result has")), lines[0]
        return
    out.encode("utf-8")  # printable on any terminal: no lone surrogates
    for invisible in ("\x1b", "\x07", "\u202e", "\u200b", "\u2028", "\x85"):
        assert invisible not in out, (invisible, out)
    if form == "json":
        json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))
    elif form == "markdown":
        assert re.search(r"(?<!\\)(<script|<img|&lt;|\[bold)", out) is None, out


COMMANDS = st.sampled_from([
    ("compare", "json"), ("compare", "markdown"), ("compare", "table"), ("twice", "json"),
    ("report", "markdown"), ("pivot", "table"), ("pivot", "markdown")])


@fuzz(200)
@given(st.lists(EDIT, min_size=0, max_size=4), st.lists(EDIT, min_size=0, max_size=2),
       COMMANDS)
def test_results_files_are_compared_reported_and_laid_out_or_refused_in_one_line(
        tmp_path_factory: Any, edits_a: list[Any], edits_b: list[Any],
        command: tuple[str, str]) -> None:
    directory = scratch(tmp_path_factory)
    a = write(directory, "a.json", results_text(RESULTS_BASES[0], edits_a))
    b = write(directory, "b.json", results_text(RESULTS_BASES[1], edits_b))
    name, form = command
    argv = {"compare": ["compare", str(a), str(b)],
            "twice": ["compare", "--a", str(a), str(a), "--b", str(b), str(b)],
            "report": ["report", "--a", str(a), "--b", str(b)],
            "pivot": ["compare", "--pivot", "model:batch_size", str(a)]}[name]
    with memory_bound():
        code, out, err = cli(*argv, "--format", form)
    assert_results_outcome(code, out, err, form, [a, b])


# -- detect: times and extreme values --

TIME_KINDS = st.sampled_from(["naive", "utc", "paris", "number", "garbage", "empty"])


def _time_text(kind: str, i: int) -> str:
    return {"naive": f"2026-03-01T{i % 24:02d}:{i // 24:02d}:00",
            "utc": f"2026-03-01T{i % 24:02d}:{i // 24:02d}:00Z",
            "paris": f"2026-03-01T{i % 24:02d}:{i // 24:02d}:00+0{1 + i % 2}:00",
            "number": str(i * 1.5), "garbage": "soon", "empty": ""}[kind]


SERIES_VALUES = st.sampled_from([1.0, 1.3, 1e-308, 1e308, 5e-324, 1e-18, 1e18, 1e-19, 2e18])
TIMED_SERIES = st.builds(
    lambda kinds, order, values: "time,value\n" + "".join(
        f"{_time_text(kind, i)},{value}\n"
        for kind, i, value in zip(kinds, order, values, strict=False)),
    st.lists(TIME_KINDS, min_size=30, max_size=30).map(
        lambda kinds: kinds if kinds[0] == "garbage" else [kinds[0]] * 28 + kinds[28:]),
    st.permutations(range(30)).map(lambda p: p if p[0] % 2 else sorted(p)),
    st.lists(st.one_of(st.just(1.0), st.just(1.3), SERIES_VALUES), min_size=30,
             max_size=30).map(lambda v: sorted(v, key=lambda x: x != 1.0)))


def _instant(text: str) -> Any:
    from datetime import datetime

    return float(text) if re.fullmatch(r"[0-9.]+", text) else datetime.fromisoformat(text)


@fuzz(150)
@given(TIMED_SERIES)
def test_detect_times_are_ordered_or_refused_and_changes_follow_them(
        tmp_path_factory: Any, text: str) -> None:
    path = write(scratch(tmp_path_factory), "timed.csv", text)
    with memory_bound():
        try:
            with time_bound(PER_INPUT_S):
                points = parse_series(read_text(path, what="series file"), str(path))
                changes = detect_series(points, Direction.LOWER_IS_BETTER, DetectorSettings())
        except InputError as exc:
            assert re.match(re.escape(str(path)) + r":[0-9]+: ", str(exc)), str(exc)
            return
    times = [p.time for p in points]
    if times[0] is not None:
        instants = [_instant(t) for t in times if t is not None]
        assert len(instants) == len(times)
        assert all(x <= y for x, y in itertools.pairwise(instants))
        for change in changes:
            if change["detected_time"] is not None:
                assert _instant(change["start_time"]) <= _instant(change["detected_time"])
