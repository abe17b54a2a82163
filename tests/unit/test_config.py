from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.adapters.config import load_config
from collector.domain.errors import ConfigError
from collector.domain.model import Dtype, SyntheticSource, Task

GOOD = """\
version: 1
defaults:
  dtype: float32
  measurement: {min_iterations: 5, max_duration_s: 2}
suites:
  nlp:
    defaults:
      batch_size: 2
      measurement: {target_rel_ci: 0.02}
    benchmarks:
      - name: gpt2-tiny
        model:
          source: synthetic
          architecture: GPT2LMHeadModel
          config: {n_layer: 1}
        matrix:
          batch_size: [1, 4]
          sequence_length: [16, 32]
          backend: [eager, compile]
      - name: bert-hub
        model: {source: hub, id: bert-base-uncased, revision: abc123}
        task: text-classification
        dtype: bfloat16
        measurement: {min_iterations: 7}
      - name: local-remote-code
        model: {source: local, path: /models/x, trust_remote_code: true}
        task: feature-extraction
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_config_expands_matrix_and_layers_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    (suite,) = config.suites
    gpt2 = [s for s in suite.benchmarks if s.name == "gpt2-tiny"]
    assert len(gpt2) == 8  # 2 batch sizes x 2 lengths x 2 backends
    assert {(s.batch_size, s.sequence_length, s.backend) for s in gpt2} == {
        (b, n, k) for b in (1, 4) for n in (16, 32) for k in ("eager", "compile")}
    # File-level measurement defaults merge field by field with the suite's.
    assert all(s.measurement.min_iterations == 5 for s in gpt2)
    assert all(s.measurement.target_rel_ci == 0.02 for s in gpt2)
    assert all(s.measurement.max_duration_s == 2 for s in gpt2)
    bert = next(s for s in suite.benchmarks if s.name == "bert-hub")
    assert bert.batch_size == 2  # suite default
    assert bert.dtype is Dtype.BFLOAT16  # benchmark beats file default
    assert bert.task is Task.TEXT_CLASSIFICATION
    assert bert.measurement.min_iterations == 7
    assert isinstance(gpt2[0].model, SyntheticSource)


def test_trust_remote_code_is_off_unless_a_model_opts_in(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    by_name = {s.name: s for s in config.suites[0].benchmarks}
    assert by_name["gpt2-tiny"].model.trust_remote_code is False
    assert by_name["bert-hub"].model.trust_remote_code is False
    assert by_name["local-remote-code"].model.trust_remote_code is True


def test_specs_are_immutable(tmp_path: Path) -> None:
    spec = load_config(write(tmp_path, GOOD)).suites[0].benchmarks[0]
    with pytest.raises(Exception, match="frozen"):
        spec.batch_size = 99  # type: ignore[misc]  # the point: assignment must fail


def test_default_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "configs" / "default.yml")
    assert config.benchmark_count >= 6


def test_example_configs_are_valid() -> None:
    examples = sorted((Path(__file__).parents[2] / "configs" / "examples").glob("*.yml"))
    assert examples
    for path in examples:
        assert load_config(path).benchmark_count > 0


BENCH = """\
suites:
  s:
    benchmarks:
      - name: b
        model:
          source: synthetic
          architecture: GPT2LMHeadModel
"""

# (name, yaml text, expected (line, field, message fragment) of every problem)
MALFORMED = [
    ("bad yaml", "suites:\n  s: [unclosed\n", [(3, "", "invalid YAML")]),
    ("duplicate key", "suites: {}\nsuites: {}\n", [(2, "", "found duplicate key")]),
    ("not a mapping", "- a\n- b\n", [(1, "", "expected a mapping with a 'suites' key, got a")]),
    ("empty file", "", [(1, "", "got an empty file")]),
    ("unknown top-level key", BENCH + "colour: red\n",
     [(8, "colour", "unknown key; expected one of: cost, defaults, detection, "
                    "environment, report, serve, storage, suites, version")]),
    ("unknown benchmark key", BENCH + "        batchsize: 4\n",
     [(8, "suites.s.benchmarks[0].batchsize", "unknown key; expected one of: attn_implementation, "
       "backend, batch_size")]),
    ("unknown model key", BENCH.replace("GPT2LMHeadModel", "GPT2LMHeadModel\n          rev: 1"),
     [(8, "suites.s.benchmarks[0].model.rev", "unknown key; expected one of: architecture, "
       "config, delay_ms, extra_compute, seed, source, trust_remote_code")]),
    ("instructions with two threads",
     BENCH + "        measurement: {mode: instructions}\n        threads: 2\n",
     [(9, "suites.s.benchmarks[0].threads", "measurement mode instructions counts one thread "
       "(got threads 2)")]),
    ("instructions on cuda",
     BENCH + "        measurement: {mode: instructions}\n        device: cuda\n",
     [(9, "suites.s.benchmarks[0].device", "counts CPU instructions (got device cuda)")]),
    ("bad measurement mode", BENCH + "        measurement: {mode: cycles}\n",
     [(8, "suites.s.benchmarks[0].measurement.mode",
       "Input should be 'wall' or 'instructions' (got 'cycles')")]),
    ("zero repetitions", BENCH + "        measurement: {repetitions: 0}\n",
     [(8, "suites.s.benchmarks[0].measurement.repetitions",
       "greater than or equal to 1 (got 0)")]),
    ("unknown metric in detection",
     BENCH + "detection:\n  min_effect: {latency_p55_seconds: 0.1}\n",
     [(9, "detection.min_effect", "unknown metric(s) latency_p55_seconds")]),
    ("wrong type", BENCH + "        batch_size: four\n",
     [(8, "suites.s.benchmarks[0].batch_size",
       "valid integer (got 'four')")]),
    ("bad enum", BENCH + "        dtype: float64\n",
     [(8, "suites.s.benchmarks[0].dtype",
       "Input should be 'float32', 'float16' or 'bfloat16' (got 'float64')")]),
    ("bad device", BENCH + "        device: tpu\n",
     [(8, "suites.s.benchmarks[0].device", "should match pattern")]),
    ("empty matrix", BENCH + "        matrix: {batch_size: []}\n",
     [(8, "suites.s.benchmarks[0].matrix.batch_size", "at least 1 item")]),
    ("negative iterations", BENCH + "        measurement: {min_iterations: -3}\n",
     [(8, "suites.s.benchmarks[0].measurement.min_iterations",
       "greater than or equal to 1 (got -3)")]),
    ("unknown architecture", BENCH.replace("GPT2LMHeadModel", "NoSuchModelForAnything"),
     [(7, "suites.s.benchmarks[0].model.architecture",
       "unknown architecture (got 'NoSuchModelForAnything')")]),
    ("unknown source", BENCH.replace("synthetic", "ftp"),
     [(6, "suites.s.benchmarks[0].model", "does not match any of the expected tags")]),
    ("missing model", "suites:\n  s:\n    benchmarks:\n      - name: b\n",
     [(4, "suites.s.benchmarks[0].model", "required field is missing")]),
    ("no suites", "version: 1\n", [(1, "suites", "required field is missing")]),
    ("value and matrix", BENCH + "        batch_size: 2\n        matrix: {batch_size: [1, 2]}\n",
     [(9, "suites.s.benchmarks[0].matrix.batch_size", "set both as a value and in matrix")]),
    ("min above max duration",
     BENCH + "        measurement: {min_duration_s: 5, max_duration_s: 1}\n",
     [(8, "suites.s.benchmarks[0].measurement", "min_duration_s (5.0) must not exceed "
       "max_duration_s (1.0)")]),
    ("bad version", "version: 2\n" + BENCH, [(1, "version", "Input should be 1 (got 2)")]),
    ("duplicate benchmark name", BENCH + BENCH.split("benchmarks:\n")[1],
     [(8, "suites.s.benchmarks[1].name", "duplicate benchmark name (got 'b')")]),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_malformed_configs_name_file_line_field_and_value(
        tmp_path: Path, text: str, expected: list[tuple[int, str, str]]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert len(problems) == len(expected), [str(p) for p in problems]
    for problem, (line, field, fragment) in zip(problems, expected, strict=True):
        assert problem.file == str(path)
        assert problem.line == line, str(problem)
        assert problem.field == field, str(problem)
        assert fragment in problem.message, str(problem)
        assert str(problem).startswith(f"{path}:{line}: ")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = BENCH + """\
        dtype: float64
        batch_size: 0
      - name: c
        model: {source: synthetic, architecture: NotAModel}
      - name: d
        model: {source: hub, id: x}
        colour: red
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    fields = [p.field for p in caught.value.problems]
    assert fields == ["suites.s.benchmarks[0].dtype", "suites.s.benchmarks[0].batch_size",
                      "suites.s.benchmarks[1].model.architecture",
                      "suites.s.benchmarks[2].colour"]
    assert [p.line for p in caught.value.problems] == [8, 9, 11, 14]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yml")
    assert caught.value.problems[0].message == "file not found"


def test_architecture_check_is_skipped_with_a_note_without_transformers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BENCH), architecture_known=lambda _name: None)
    assert config.benchmark_count == 1
    assert "not checked" in config.notes[0]


def test_storage_section_is_validated_and_refuses_secrets(tmp_path: Path) -> None:
    text = BENCH.replace("suites:", "storage:\n  database_url: postgresql://u:hunter2@h/db\n"
                         "  schema: sometimes\nsuites:", 1)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    messages = {p.field: p.message for p in caught.value.problems}
    assert "secrets never go in the config" in messages["storage.database_url"]
    assert "hunter2" not in messages["storage.database_url"]
    assert "'migrate' or 'refuse'" in messages["storage.schema"]


def test_storage_defaults(tmp_path: Path) -> None:
    storage = load_config(write(tmp_path, BENCH)).storage
    assert storage.database_url_env == "COLLECTOR_DATABASE_URL"
    assert storage.schema_policy == "migrate"
    assert storage.timescaledb.compress_after == "7 days"


def test_benchmarks_differing_only_in_labels_are_one_series(tmp_path: Path) -> None:
    text = BENCH + BENCH.split("benchmarks:\n")[1].replace("name: b", "name: c") + (
        "        timeout_s: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.field == "suites.s.benchmarks[1].name"
    assert "repeats the workload of benchmark 'b'" in problem.message


@pytest.mark.parametrize(("schedule", "message"), [
    ("{cron: '0 2 * *'}", "cron must have 5 fields"),
    ("{cron: '0 2 * * *', interval_s: 60}", "set exactly one of cron and interval_s"),
    ("{}", "set exactly one of cron and interval_s"),
    ("{interval_s: 60, timezone: Mars/Olympus}", "unknown timezone 'Mars/Olympus'"),
    ("{interval_s: -5}", "greater than or equal to 1 (got -5)"),
])
def test_schedules_are_validated(tmp_path: Path, schedule: str, message: str) -> None:
    text = BENCH.replace("  s:\n", f"  s:\n    schedule: {schedule}\n", 1)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.field.startswith("suites.s.schedule")
    assert problem.line == 3
    assert message in problem.message


def test_a_valid_schedule_and_serve_section(tmp_path: Path) -> None:
    text = ("serve: {port: 9999, grace_s: 5}\n"
            + BENCH.replace("  s:\n", "  s:\n    schedule: {cron: '0 2 * * *', timezone: "
                                      "Europe/Paris}\n", 1))
    config = load_config(write(tmp_path, text))
    assert config.serve.port == 9999 and config.serve.host == "127.0.0.1"
    schedule = config.suites[0].schedule
    assert schedule is not None and schedule.cron == "0 2 * * *"


def test_measurement_mode_and_repetitions_layer_and_instructions_are_their_own_series(
        tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(BENCH + "        measurement: {repetitions: 3}\n"
                    "      - name: counted\n"
                    "        model: {source: synthetic, architecture: GPT2LMHeadModel}\n"
                    "        measurement: {mode: instructions, repetitions: 1}\n"
                    "detection:\n  confirmation: {points: 4, max_series: 1}\n")
    config = load_config(path)
    timed, counted = config.suites[0].benchmarks
    assert timed.measurement.repetitions == 3 and timed.measurement.mode.value == "wall"
    assert counted.measurement.mode.value == "instructions"
    assert "measurement_mode" not in timed.identity()
    assert counted.identity()["measurement_mode"] == "instructions"
    assert timed.series_id("h") != counted.series_id("h")
    assert (config.detection.confirmation.points, config.detection.confirmation.max_series) == (
        4, 1)


def test_the_automatic_ab_is_off_by_default_with_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BENCH))
    ab = config.detection.ab
    assert (ab.enabled, ab.rounds, ab.budget_s, ab.max_per_cycle, ab.max_model_size_mib,
            ab.env_cache, ab.pip_args) == (False, 3, 600.0, 1, 2048.0, None, [])
    assert config.environment.record_packages == []
    report = config.report
    assert (report.high_latency_ms, report.high_memory_mib, report.low_throughput) == (
        100.0, 4096.0, 10.0)


def test_ab_record_packages_and_report_sections_are_read(tmp_path: Path) -> None:
    text = BENCH + textwrap.dedent("""\
        detection:
          ab: {enabled: true, rounds: 5, budget_s: 120, max_per_cycle: 2,
               max_model_size_mib: null, env_cache: /var/cache/envs,
               pip_args: [--no-index, --find-links, /wheels]}
        environment:
          record_packages: [tokenizers, safetensors]
        report: {high_latency_ms: 50, high_memory_mib: 1024, low_throughput: 2.5}
        """)
    config = load_config(write(tmp_path, text))
    ab = config.detection.ab
    assert (ab.enabled, ab.rounds, ab.budget_s, ab.max_per_cycle, ab.max_model_size_mib) == (
        True, 5, 120.0, 2, None)
    assert ab.env_cache == "/var/cache/envs"
    assert ab.pip_args == ["--no-index", "--find-links", "/wheels"]
    assert config.environment.record_packages == ["tokenizers", "safetensors"]
    assert (config.report.high_latency_ms, config.report.high_memory_mib,
            config.report.low_throughput) == (50.0, 1024.0, 2.5)


@pytest.mark.parametrize(("section", "field", "message"), [
    ("detection: {ab: {rounds: 1}}", "detection.ab.rounds", "greater than or equal to 2"),
    ("detection: {ab: {budget_s: 0}}", "detection.ab.budget_s", "greater than 0"),
    ("detection: {ab: {max_per_cycle: -1}}", "detection.ab.max_per_cycle",
     "greater than or equal to 0"),
    ("detection: {ab: {max_model_size_mib: 0}}", "detection.ab.max_model_size_mib",
     "greater than 0"),
    ("detection: {ab: {enabled: yes-please}}", "detection.ab.enabled", "valid boolean"),
    ("detection: {ab: {pip_arg: [x]}}", "detection.ab.pip_arg",
     "unknown key; expected one of: budget_s, enabled, env_cache, max_model_size_mib, "
     "max_per_cycle, pip_args, rounds"),
    ("environment: {record_packages: ['two words']}", "environment.record_packages[0]",
     "should match pattern"),
    ("environment: {record_packages: [Tokenizers, tokenizers]}",
     "environment.record_packages", "'tokenizers' is listed twice"),
    ("report: {high_latency_ms: 0}", "report.high_latency_ms", "greater than 0"),
    ("report: {high_memory_mib: -1}", "report.high_memory_mib", "greater than 0"),
    ("report: {low_throughput: 0}", "report.low_throughput", "greater than 0"),
])
def test_ab_record_packages_and_report_settings_are_validated(
        tmp_path: Path, section: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BENCH + section + "\n"))
    (problem,) = caught.value.problems
    assert problem.field == field
    assert problem.line == BENCH.count("\n") + 1
    assert message in problem.message


def test_an_index_url_with_credentials_is_refused_and_never_echoed(tmp_path: Path) -> None:
    text = BENCH + ("detection:\n  ab:\n    pip_args: [--extra-index-url, "
                    "'https://alice:s3cret@pypi.example.com/simple']\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.field == "detection.ab.pip_args"
    assert "PIP_INDEX_URL" in problem.message
    assert "s3cret" not in str(caught.value)
    # An index without credentials is fine in the config.
    plain = BENCH + "detection: {ab: {pip_args: [--index-url, 'https://pypi.example.com']}}\n"
    assert load_config(write(tmp_path, plain)).detection.ab.pip_args[0] == "--index-url"
