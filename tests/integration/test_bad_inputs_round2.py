"""Bad input, second round (issue 23 points 7, 9, 10, 11 and 12): each case a clear error
(exit 2, one line naming the file, line or field; no traceback) or a right answer, never a
wrong one; every file read stops at its bound.

Most cases run `main()` in this process (15 ms each); the ones about memory, streams and
sockets run the CLI as a user does, in a subprocess with an address-space limit."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.cli import main
from collector.domain.errors import ConfigError
from collector.domain.model import HubSource
from collector.present.documents import results_document
from tests.helpers import TINY_MODELS, make_run

ROOT = Path(__file__).parents[2]
MEMORY_LIMIT = 2 << 30  # address space of a subprocess: an unbounded read dies well before


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_error(code: int, err: str) -> str:
    """The single `error:` line of a refusal (exit 2); a config problem's two lines (its
    summary, then the problem naming file, line and field) are read as one."""
    assert code == 2, err
    assert "Traceback" not in err, err
    err = re.sub(r"problems? in the configuration\n  ", "problem in the configuration: ", err)
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def usage_error(*argv: str) -> str:
    """What argparse says of a bad option value (it exits 2 itself)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    assert "Traceback" not in err.getvalue()
    return err.getvalue()


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*argv: str, env: dict[str, str] | None = None,
                stdin: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *argv], cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200", **(env or {})},
                          stdin=stdin, capture_output=True, text=True, timeout=120,
                          check=False, preexec_fn=_limit)


def write_results(path: Path, *runs: Any) -> Path:
    path.write_text(json.dumps(results_document(list(runs))))
    return path


def write_config(path: Path, document: dict[str, Any]) -> Path:
    with path.open("w") as handle:
        YAML().dump(document, handle)
    return path


def bench(name: str = "b", model: str = "gpt2", **fields: Any) -> dict[str, Any]:
    return {"name": name, "model": copy.deepcopy(TINY_MODELS[model]), "sequence_length": 8,
            **fields}


def config_with(tmp_path: Path, *benchmarks: dict[str, Any], **top: Any) -> Path:
    return write_config(tmp_path / "c.yml", {"version": 1, "suites": {
        "s": {"benchmarks": list(benchmarks), "schedule": {"interval_s": 3600}}}, **top})


def refused_config(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


# ---------------------------------------------------------------------------------------
# 7. Duplicate runs fake a regression

def test_a_run_given_three_times_counts_once(tmp_path: Path) -> None:
    """Three copies of one run a side made a 4% difference look certain (interval
    [1.040, 1.040], slower, exit 5); a run counts once, so the verdict is the one of one
    copy a side: the same."""
    a = write_results(tmp_path / "a.json", make_run(latency=0.0100, models=("bert",)))
    b = write_results(tmp_path / "b.json", make_run(latency=0.0104, models=("bert",)))
    once = cli("compare", "--a", str(a), "--b", str(b), "--format", "json",
               "--fail-on-regression")
    thrice = cli("compare", "--a", str(a), str(a), str(a), "--b", str(b), str(b), str(b),
                 "--format", "json", "--fail-on-regression")
    assert once[0] == 0, once[2]
    assert thrice[0] == 0, thrice[1] + thrice[2]
    assert json.loads(thrice[1])["rows"] == json.loads(once[1])["rows"]
    assert "given 3 times; it counts once" in thrice[2]


def test_a_run_on_both_sides_is_refused(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a.json", make_run(models=("bert",)))
    b = write_results(tmp_path / "b.json", make_run(models=("bert",)))
    code, _, err = cli("compare", str(a), str(a), "--fail-on-regression")
    line = one_error(code, err)
    assert "is on both sides" in line and str(a) in line
    mixed = cli("compare", "--a", str(a), "--b", str(b), str(a))
    assert "is on both sides" in one_error(mixed[0], mixed[2])


def test_one_run_id_with_two_different_results_is_refused(tmp_path: Path) -> None:
    run = make_run(models=("bert",), run_id="ab" * 16)
    a = write_results(tmp_path / "a.json", run)
    other = write_results(tmp_path / "a2.json", make_run(models=("bert",), run_id="ab" * 16,
                                                         latency=0.5))
    b = write_results(tmp_path / "b.json", make_run(models=("bert",)))
    code, _, err = cli("compare", "--a", str(a), str(other), "--b", str(b))
    assert "two sets of results" in one_error(code, err)


# ---------------------------------------------------------------------------------------
# 9. Tracebacks

def test_detect_values_of_1e_minus_308_and_1e308_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("value\n" + "1e-308\n" * 10 + "1e308\n" * 10)
    code, _, err = cli("detect", "--input", str(path))
    line = one_error(code, err)
    assert line.startswith(f"error: {path}:2: value: ") and "1e-18 to 1e+18" in line


def with_latency(path: Path, value: float) -> Path:
    """A results file of one run of bert whose p50 latency is `value` (set in the JSON:
    the reading results_document derives would not survive such values)."""
    document = results_document([make_run(models=("bert",))])
    document["runs"][0]["results"][0]["metrics"]["latency_p50_seconds"] = value
    path.write_text(json.dumps(document))
    return path


def test_compare_of_1e308_against_5e_minus_324_is_refused(tmp_path: Path) -> None:
    a = with_latency(tmp_path / "a.json", 1e308)
    b = with_latency(tmp_path / "b.json", 5e-324)
    code, _, err = cli("compare", str(a), str(b))
    line = one_error(code, err)
    assert f"{a}: runs[0].results[0].metrics.latency_p50_seconds" in line, line
    assert "outside what any metric measures" in line


def test_compare_of_far_apart_but_valid_values_does_not_overflow(tmp_path: Path) -> None:
    """Two runs 34 orders of magnitude apart on one side, one on the other: a prediction
    interval e^±860 wide, an answer (same) and not OverflowError."""
    a = tmp_path / "a.json"
    document = results_document([make_run(models=("bert",)), make_run(models=("bert",))])
    for run, value in zip(document["runs"], (1e-17, 1e17), strict=True):
        run["results"][0]["metrics"]["latency_p50_seconds"] = value
    a.write_text(json.dumps(document))
    b = with_latency(tmp_path / "b.json", 1e17)
    for form in ("table", "json", "markdown"):
        code, out, err = cli("compare", str(a), str(b), "--format", form,
                             "--fail-on-regression")
        assert code == 0 and "Traceback" not in err, err
        if form == "json":
            rows = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c}"))["rows"]
            [row] = [r for r in rows if r["metric"] == "latency_p50_seconds"]
            assert row["verdict"] == "same"


def test_schedule_count_is_bounded(tmp_path: Path) -> None:
    config = config_with(tmp_path, bench())
    for count in ("100000000", "0", "-1", "x"):
        assert "argument --count" in usage_error("schedule", "--config", str(config),
                                                 "--count", count)
    code, out, err = cli("schedule", "--config", str(config), "--count", "1000")
    assert code == 0, err
    assert out.count(",") == 999


def test_a_rare_cron_lists_the_run_times_before_the_year_9999(tmp_path: Path) -> None:
    """Feb 29 on a Monday: about every 28 years, so 1,000 run times pass the year 9999."""
    config = write_config(tmp_path / "c.yml", {"version": 1, "suites": {"s": {
        "benchmarks": [bench()], "schedule": {"cron": "0 0 29 2 mon"}}}})
    code, out, err = cli("schedule", "--config", str(config), "--count", "1000")
    assert code == 0 and "Traceback" not in err, err
    assert "next: " in out


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path, taken_port: int) -> None:
    config = config_with(tmp_path, bench())
    done = run_limited("serve", "--config", str(config), "--port", str(taken_port),
                       "--local-store", str(tmp_path / "db.sqlite"))
    line = one_error(done.returncode, done.stderr)
    assert f"127.0.0.1:{taken_port}" in line and "in use" in line


def test_serve_on_an_address_of_another_machine_is_one_line(tmp_path: Path) -> None:
    config = config_with(tmp_path, bench(), serve={"host": "192.0.2.1"})  # TEST-NET-1
    done = run_limited("serve", "--config", str(config), "--port", "0",
                       "--local-store", str(tmp_path / "db.sqlite"))
    line = one_error(done.returncode, done.stderr)
    assert "192.0.2.1" in line and "serve.host" in line


def test_serve_port_out_of_range_is_refused(tmp_path: Path) -> None:
    config = config_with(tmp_path, bench())
    assert "argument --port" in usage_error("serve", "--config", str(config), "--port", "70000")


# ---------------------------------------------------------------------------------------
# 10. Unbounded reads

def test_read_bounded_stops_at_the_bound_on_dev_zero_and_an_endless_pipe() -> None:
    from collector.adapters.files import ReadFailure, read_bounded

    with pytest.raises(ReadFailure, match="larger than 1 MiB"):
        read_bounded("/dev/zero", 1 << 20)
    read_end, write_end = os.pipe()

    def endless() -> None:
        with contextlib.suppress(OSError), os.fdopen(write_end, "wb") as out:
            while True:
                out.write(b"x" * 65536)

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    try:
        with pytest.raises(ReadFailure, match="larger than 64 KiB"):
            read_bounded(f"/dev/fd/{read_end}", 64 << 10)
    finally:
        os.close(read_end)
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert read_bounded("/dev/null", 10) == b""


@pytest.mark.parametrize(("argv", "bound"), [
    (("detect", "--input", "/dev/zero"), "larger than 64 MiB"),
    (("compare", "{a}", "/dev/zero"), "larger than 64 MiB"),
    (("report", "/dev/zero"), "larger than 64 MiB"),
    (("check-config", "/dev/zero"), "larger than 1 MiB"),
])
def test_dev_zero_stops_at_the_bound(tmp_path: Path, argv: tuple[str, ...],
                                     bound: str) -> None:
    a = write_results(tmp_path / "a.json", make_run(models=("bert",)))
    done = run_limited(*(part.format(a=a) for part in argv))
    line = one_error(done.returncode, done.stderr)
    assert "/dev/zero" in line and bound in line


def test_an_endless_stream_on_stdin_stops_at_the_bound(tmp_path: Path) -> None:
    yes = shutil.which("yes")
    assert yes is not None
    with subprocess.Popen([yes, "1.0"], stdout=subprocess.PIPE) as endless:
        done = run_limited("detect", "--input", "/dev/stdin", stdin=endless.stdout)
        endless.kill()
    assert "larger than 64 MiB" in one_error(done.returncode, done.stderr)


def test_secret_files_on_dev_zero_stop_at_the_bound(tmp_path: Path) -> None:
    config = config_with(tmp_path, bench())
    token = run_limited("serve", "--config", str(config), "--port", "0",
                        env={"COLLECTOR_ALERTS_TOKEN_FILE": "/dev/zero"})
    line = one_error(token.returncode, token.stderr)
    assert "larger than 64 KiB" in line, token.stderr
    url = config_with(tmp_path, bench(), storage={"database_url_file": "/dev/zero"})
    database = run_limited("serve", "--config", str(url), "--port", "0",
                           "--local-store", str(tmp_path / "db.sqlite"))
    assert database.returncode == 4 and "Traceback" not in database.stderr, database.stderr
    assert "database URL file /dev/zero: larger than 64 KiB" in database.stderr


# ---------------------------------------------------------------------------------------
# 11. Accepted but wrong: the config

NOT_MODELS = ["AutoConfig", "BertTokenizer", "Trainer", "PreTrainedModel", "BertConfig",
              "AutoModel", "AutoModelForCausalLM", "BertPreTrainedModel", "BertLayer",
              "MODEL_MAPPING", "pipeline"]
MODELS = ["GPT2LMHeadModel", "BertModel", "BertForSequenceClassification", "CLIPModel",
          "WhisperForConditionalGeneration", "SpeechT5HifiGan", "ReformerModelWithLMHead"]


@pytest.mark.parametrize("architecture", NOT_MODELS)
def test_an_architecture_that_is_not_a_model_class_is_refused(tmp_path: Path,
                                                               architecture: str) -> None:
    pytest.importorskip("transformers")
    entry = bench()
    entry["model"] = {"source": "synthetic", "architecture": architecture}
    [problem] = refused_config(config_with(tmp_path, entry))
    assert "model.architecture" in problem and architecture in problem
    assert "expected a" in problem and "model class" in problem


@pytest.mark.parametrize("architecture", MODELS)
def test_model_classes_are_accepted(tmp_path: Path, architecture: str) -> None:
    pytest.importorskip("transformers")
    entry = bench()
    entry["model"] = {"source": "synthetic", "architecture": architecture}
    assert load_config(config_with(tmp_path, entry)).benchmark_count == 1


def test_check_config_tells_model_classes_without_loading_torch(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    entry = bench()
    entry["model"] = {"source": "synthetic", "architecture": "AutoConfig"}
    config = config_with(tmp_path, entry)
    probe = ("import sys; from collector.cli import main; code = main(['check-config', "
             f"{str(config)!r}]); print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "'AutoConfig' is an Auto class" in done.stderr


@pytest.mark.parametrize("key", ["__class__", "_name_or_path", "__init__", "a b", "1x"])
def test_model_config_keys_are_attribute_names(tmp_path: Path, key: str) -> None:
    entry = bench()
    entry["model"]["config"] = {**entry["model"]["config"], key: 1}
    [problem] = refused_config(config_with(tmp_path, entry))
    assert f"model.config.{key}: not a configuration attribute" in problem


def test_a_dunder_key_in_a_sub_config_is_refused(tmp_path: Path) -> None:
    entry = bench("c", "clip")
    entry["model"]["config"]["text_config"]["__dict__"] = {}
    entry["model"]["config"]["id2label"] = {"0": "a", "1": "b"}  # label maps stay free
    [problem] = refused_config(config_with(tmp_path, entry))
    assert "model.config.text_config.__dict__: not a configuration attribute" in problem


def test_threads_are_bounded_and_noted_above_the_hosts_cores(tmp_path: Path) -> None:
    [problem] = refused_config(config_with(tmp_path, bench(threads=3000)))
    assert "threads" in problem and "1024" in problem
    cores = len(os.sched_getaffinity(0))
    config = config_with(tmp_path, bench(threads=cores + 1))
    notes = load_config(config).notes
    assert any(f"threads {cores + 1} is more than the {cores} core(s)" in n for n in notes)
    code, _, err = cli("check-config", str(config))
    assert code == 0 and f"note: {config}:" in err and "threads" in err, err
    assert not load_config(config_with(tmp_path, bench(threads=cores))).notes


@pytest.mark.parametrize(("where", "value"), [
    (("batch_size",), True), (("batch_size",), "8"), (("batch_size",), 8.0),
    (("sequence_length",), "16"), (("threads",), True), (("timeout_s",), "60"),
    (("timeout_s",), True), (("measurement", "repetitions"), "3"),
    (("measurement", "max_duration_s"), "2"), (("matrix", "batch_size"), [1, "2"]),
    (("model", "seed"), "1"), (("model", "trust_remote_code"), "yes"),
    (("model", "delay_ms"), True), (("compile",), {"fullgraph": "yes"}),
])
def test_numbers_and_flags_are_strict(tmp_path: Path, where: tuple[str, ...],
                                      value: Any) -> None:
    entry = bench()
    target = entry
    for part in where[:-1]:
        target = target.setdefault(part, {})
    target[where[-1]] = value
    problems = refused_config(config_with(tmp_path, entry))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{tmp_path / 'c.yml'}:"), problems


@pytest.mark.parametrize(("section", "field", "value"), [
    ("serve", "port", "9464"), ("serve", "run_at_start", "yes"), ("serve", "grace_s", True),
    ("detection", "history_runs", True), ("report", "high_latency_ms", "100"),
    ("storage", "connect_timeout_s", "10"),
])
def test_section_numbers_and_flags_are_strict(tmp_path: Path, section: str, field: str,
                                              value: Any) -> None:
    [problem] = refused_config(config_with(tmp_path, bench(), **{section: {field: value}}))
    assert f"{section}.{field}" in problem


def test_integers_written_other_ways_and_float_fields_given_integers_still_load(
        tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("version: 1\nsuites:\n  s:\n    benchmarks:\n      - name: b\n"
                      "        model: {source: synthetic, architecture: GPT2LMHeadModel}\n"
                      "        batch_size: 0x2\n        sequence_length: 1_024\n"
                      "        timeout_s: 60\n        measurement: {max_duration_s: 2.5}\n")
    [spec] = load_config(config).suites[0].benchmarks
    assert (spec.batch_size, spec.sequence_length, spec.timeout_s) == (2, 1024, 60.0)


def test_a_workload_in_two_suites_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", {"version": 1, "suites": {
        "nightly": {"benchmarks": [bench("first")]},
        "hourly": {"benchmarks": [bench("again")]}}})
    [problem] = refused_config(config)
    assert "suites.hourly.benchmarks[0].name: repeats the workload of benchmark 'first' of " \
           "suite 'nightly'" in problem
    # Another batch size is another workload: both suites keep theirs.
    config = write_config(tmp_path / "c.yml", {"version": 1, "suites": {
        "nightly": {"benchmarks": [bench("first")]},
        "hourly": {"benchmarks": [bench("again", batch_size=2)]}}})
    assert load_config(config).benchmark_count == 2


# -- 11. Accepted but wrong: results files and options --

@pytest.mark.parametrize(("literal", "expected"), [
    ("NaN", "NaN is not a number JSON has"), ("Infinity", "Infinity is not a number JSON"),
    ("-Infinity", "-Infinity is not a number JSON"), ("1e999", "1e999 is not a number JSON"),
    ("-0.01", "a measurement is a finite number of 0 or more"),
    ("1e30", "outside what any metric measures"), ("5e-324", "outside what any metric"),
])
def test_a_results_file_with_a_metric_that_is_no_measurement_is_refused(
        tmp_path: Path, literal: str, expected: str) -> None:
    good = write_results(tmp_path / "a.json", make_run(models=("bert",)))
    document = results_document([make_run(models=("bert",))])
    document["runs"][0]["results"][0]["metrics"]["latency_p50_seconds"] = "HERE"
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(document, indent=1).replace('"HERE"', literal))
    for argv in (("compare", str(good), str(bad), "--format", "json"),
                 ("report", str(bad)), ("compare", "--pivot", "benchmark:batch_size",
                                        str(bad))):
        code, out, err = cli(*argv)
        line = one_error(code, err)
        assert str(bad) in line and expected in line, line
        assert out == ""
        if "JSON" in expected:  # where the literal is
            assert re.match(rf"error: {re.escape(str(bad))}:[0-9]+: ", line), line
        else:  # which value it is
            assert "runs[0].results[0].metrics.latency_p50_seconds" in line, line


@pytest.mark.parametrize(("argv", "option"), [
    (("compare", "{a}", "{b}", "--fail-on-regression", "nan"), "--fail-on-regression"),
    (("compare", "{a}", "{b}", "--fail-on-regression", "inf"), "--fail-on-regression"),
    (("compare", "{a}", "{b}", "--fail-on-regression", "-1"), "--fail-on-regression"),
    (("compare", "{a}", "{b}", "--threshold", "nan"), "--threshold"),
    (("compare", "{a}", "{b}", "--run-noise", "nan"), "--run-noise"),
    (("report", "{a}", "--high-latency-ms", "nan"), "--high-latency-ms"),
    (("report", "{a}", "--high-memory-mib", "-5"), "--high-memory-mib"),
    (("report", "{a}", "--low-throughput", "inf"), "--low-throughput"),
    (("envs", "prune", "--max-age-days", "nan"), "--max-age-days"),
    (("envs", "prune", "--max-size-gib", "nan"), "--max-size-gib"),
    (("ab", "b", "--budget", "nan"), "--budget"),
])
def test_nan_and_out_of_range_option_values_are_refused(
        tmp_path: Path, argv: tuple[str, ...], option: str) -> None:
    a = write_results(tmp_path / "a.json", make_run(models=("bert",)))
    b = write_results(tmp_path / "b.json", make_run(models=("bert",)))
    assert f"argument {option}" in usage_error(*(part.format(a=a, b=b) for part in argv))


# -- 11. Accepted but wrong: detect's times --

def series(times: list[str]) -> str:
    values = [1.0] * 25 + [1.3] * 25
    return "time,value\n" + "".join(f"{t},{v}\n" for t, v in zip(times, values, strict=False))


@pytest.mark.parametrize(("times", "expected"), [
    ([f"2026-01-{d:02d}T00:00:00" for d in range(1, 26)][::-1],
     ":3: time: '2026-01-24T00:00:00' is before the point above it"),
    (["2026-01-01T00:00:00", "2026-01-02T00:00:00+00:00"],
     ":3: time: '2026-01-02T00:00:00+00:00' is a time with a UTC offset and the point "
     "above it"),
    (["1", "2026-01-01T00:00:00"], ":3: time: '2026-01-01T00:00:00' is a time without"),
    (["1", "2", ""], ":4: time: missing, while other points have one"),
    (["yesterday"], ":2: time: expected an ISO 8601 time"),
    (["1", "nan"], ":3: time: expected an ISO 8601 time"),
])
def test_detect_refuses_times_out_of_order_or_of_mixed_kinds(
        tmp_path: Path, times: list[str], expected: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(series(times + ["2027-01-01T00:00:00"] * (50 - len(times))
                           if len(times) < 25 else times))
    code, _, err = cli("detect", "--input", str(path))
    assert one_error(code, err).startswith(f"error: {path}{expected}"), err


def test_detect_orders_times_as_instants_and_never_detects_before_the_start(
        tmp_path: Path) -> None:
    """Offsets that change (summer time) are fine when the instants follow each other; every
    change it prints starts before (or when) it is detected."""
    times = [f"2026-03-{1 + i // 24:02d}T{i % 24:02d}:30:00+0{1 + (i >= 30)}:00"
             for i in range(50)]
    path = tmp_path / "s.csv"
    path.write_text(series(times))
    code, out, err = cli("detect", "--input", str(path))
    assert code == 0, err
    changes = json.loads(out)["changes"]
    assert changes
    for change in changes:
        assert change["start_index"] <= change["detected_index"]
    numbers = tmp_path / "n.json"
    numbers.write_text(json.dumps([{"time": i, "value": 1.0 + (i >= 25) * 0.3}
                                   for i in range(50)]))
    assert cli("detect", "--input", str(numbers))[0] == 0


# ---------------------------------------------------------------------------------------
# 12. HTML and ANSI from data, in the Markdown report and the pivot

HOSTILE = "<img src=x onerror=alert(1)>\x1b[31mred\x1b[0m[bold]b[/]&lt;\u202e"


def hostile_results(tmp_path: Path) -> Path:
    run = make_run(models=("bert", "vit"), host="h", fail="vit")
    results = []
    for result in run.results:
        spec = result.spec.model_copy(update={"model": HubSource(
            source="hub", id=f"org/{HOSTILE}", revision=HOSTILE)})
        environment = result.environment.model_copy(update={
            "host": HOSTILE, "cpu_model": HOSTILE, "torch_version": HOSTILE})
        failure = (result.failure.model_copy(update={"message": HOSTILE})
                   if result.failure else None)
        results.append(result.model_copy(update={"spec": spec, "environment": environment,
                                                 "failure": failure}))
    run = run.model_copy(update={"host": HOSTILE, "results": tuple(results)})
    return write_results(tmp_path / "hostile.json", run)


def assert_inert(markdown: str) -> None:
    """Nothing of the data is markup: every `<`, `&` and `[` of it is backslash-escaped."""
    assert "\x1b" not in markdown and "\u202e" not in markdown
    assert re.search(r"(?<!\\)(<img|&lt;|\[bold\])", markdown) is None, markdown


def test_the_markdown_report_shows_html_and_ansi_from_data_as_text(tmp_path: Path) -> None:
    path = hostile_results(tmp_path)
    code, out, err = cli("report", str(path), "--format", "markdown")
    assert code == 0, err
    assert_inert(out)
    assert "\\<img src=x onerror=alert(1)\\>\\\\x1b\\[31mred" in out


@pytest.mark.parametrize("form", ["table", "markdown"])
def test_the_pivot_shows_html_ansi_and_markup_from_data_as_text(
        tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside the hostile text
    path = hostile_results(tmp_path)
    code, out, err = cli("compare", "--pivot", "model:host", str(path), "--format", form)
    assert code == 0, err
    assert "\x1b" not in out and "\u202e" not in out
    if form == "markdown":
        assert_inert(out)
    else:
        assert "[bold]b[/]" in out  # printed as it is, not taken as rich markup
        assert "\\x1b[31mred\\x1b[0m" in out
