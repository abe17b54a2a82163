"""The transformers benchmark module's config format: recognised by its keys, translated into
native specs with a note, its problems named on the old file's lines and fields, and written
out by `convert-config` as the native equivalent with the same benchmark identities."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.adapters.config import load_config
from collector.adapters.config.legacy import FAMILIES, family_of, nvidia_present
from collector.cli import main
from collector.domain.model import HubSource, LocalSource, SyntheticSource, Task
from tests.helpers import ROOT

DEFAULT_YML = ROOT / "tests" / "fixtures" / "transformers_benchmark" / "default.yml"
# The module's list, in order: (model, task, sequence_length, new tokens, iterations).
EXPECTED = [
    ("bert-base-uncased", Task.FEATURE_EXTRACTION, 128, None, 100),
    ("distilbert-base-uncased", Task.FEATURE_EXTRACTION, 128, None, 100),
    ("bert-large-uncased", Task.FEATURE_EXTRACTION, 512, None, 50),
    ("roberta-large", Task.FEATURE_EXTRACTION, 512, None, 50),
    ("gpt2", Task.TEXT_GENERATION, 924, 100, 20),  # 924 + 100 = gpt2's 1024 positions
    ("facebook/opt-6.7b", Task.TEXT_GENERATION, 1948, 100, 10),  # opt's 2048
    ("openai/clip-vit-base-patch32", Task.ZERO_SHOT_IMAGE_CLASSIFICATION, 16, None, 100),
]


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), " ".join(err.getvalue().split())  # rich wraps long lines


def write(tmp_path: Path, text: str, name: str = "old.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_module_default_yml_becomes_its_benchmarks_with_a_note() -> None:
    config = load_config(DEFAULT_YML)
    [suite] = config.suites
    assert suite.name == "transformers-benchmark"
    got = [(s.model.id if isinstance(s.model, HubSource) else None, s.task,
            s.sequence_length, s.new_tokens if s.task is Task.TEXT_GENERATION else None,
            s.measurement.min_iterations) for s in suite.benchmarks]
    assert got == EXPECTED
    for spec in suite.benchmarks:
        assert (spec.device, spec.dtype.value, spec.backend) == ("cuda", "float16", "eager")
        assert spec.measurement.max_iterations == spec.measurement.min_iterations
        assert spec.measurement.warmup_iterations == 10  # global_settings
        assert spec.measurement.min_duration_s == 0
        assert spec.measurement.repetitions == 1
        assert not spec.model.trust_remote_code
        assert spec.measurement.target_rel_ci == (
            0.03 if spec.task is Task.TEXT_GENERATION else 0.01)
    assert suite.benchmarks[6].batch_size == 4
    assert [s.name for s in suite.benchmarks][4:] == ["gpt2", "opt-6.7b", "clip-vit-base-patch32"]
    assert config.notes[0].startswith(f"{DEFAULT_YML}: read as the transformers benchmark "
                                      "module's format")
    assert "convert-config" in config.notes[0]
    assert any(":25: benchmarks[4].sequence_length: generation: a prompt of 924 tokens and "
               "100 new tokens" in note for note in config.notes)
    assert any(":43: output_settings:" in note for note in config.notes)


def test_check_config_accepts_it_with_the_translation_note_on_stderr() -> None:
    code, out, err = cli("check-config", str(DEFAULT_YML))
    assert code == 0, err
    assert "OK, 1 suite(s), 7 benchmark(s)" in " ".join(out.split())
    assert "note: " in err and "read as the transformers benchmark module's format" in err
    assert "`collector convert-config" in err


def test_checking_it_imports_no_torch() -> None:
    probe = ("import sys; from collector.cli import main; code = main(['check-config', "
             f"{str(DEFAULT_YML)!r}]); print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr


def test_convert_config_round_trips_to_the_same_benchmark_identities(tmp_path: Path) -> None:
    new = tmp_path / "native.yml"
    code, out, err = cli("convert-config", str(DEFAULT_YML), "-o", str(new))
    assert code == 0, err
    assert out == "" and f"written to {new}" in err
    text = new.read_text()
    assert re.search(r"(?m)^version: 1$", text) and "model_name_or_path:" not in text
    assert "batch_size: 1 # benchmarks[0].batch_size (line 4)" in text
    assert "dtype: float16 # global_settings.torch_dtype (line 39)" in text
    assert "1024 minus 100 new tokens (line 25)" in text
    old, converted = load_config(DEFAULT_YML), load_config(new)
    assert not any("read as the transformers" in n for n in converted.notes)
    pairs = zip(old.suites[0].benchmarks, converted.suites[0].benchmarks, strict=True)
    for before, after in pairs:
        assert before.identity() == after.identity()
        assert before.series_id("host-a") == after.series_id("host-a")
        assert before == after  # labels and measurement too
    code, printed, _ = cli("convert-config", str(DEFAULT_YML))  # without -o: stdout
    assert code == 0 and printed == text


def test_synthetic_stand_ins_keep_the_architecture_and_offline(tmp_path: Path) -> None:
    new = tmp_path / "synthetic.yml"
    code, _, err = cli("convert-config", str(DEFAULT_YML), "--synthetic", "--device", "cpu",
                       "-o", str(new))
    assert code == 0, err
    assert "--device cpu (the file says cuda) (line 7)" in new.read_text()
    specs = load_config(new).suites[0].benchmarks
    architectures = [s.model.architecture for s in specs if isinstance(s.model, SyntheticSource)]
    assert architectures == ["BertModel", "DistilBertModel", "BertModel", "RobertaModel",
                             "GPT2LMHeadModel", "OPTForCausalLM", "CLIPModel"]
    assert len({s.series_id("h") for s in specs}) == 7  # two BERTs: two series (seeds)
    assert {s.device for s in specs} == {"cpu"}
    assert [s.task for s in specs] == [task for _, task, *_ in EXPECTED]
    # every position limit holds the lengths: prompt + new tokens for generation
    for spec in specs:
        assert isinstance(spec.model, SyntheticSource)
        config = spec.model.config
        limit = (config.get("max_position_embeddings") or config.get("n_positions")
                 or config["text_config"]["max_position_embeddings"])
        extra = spec.new_tokens if spec.task is Task.TEXT_GENERATION else 0
        assert spec.sequence_length + extra <= limit


@pytest.mark.parametrize(("text", "expected"), [
    # an unknown key, at its line, with what is allowed
    ("benchmarks:\n  - model_name_or_path: gpt2\n    colour: blue\n",
     ":3: benchmarks[0].colour: unknown key; expected one of: batch_size, device,"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n  - model_name_or_path: bert-base-uncased\n"
     "    device: tpu\n",
     ":4: benchmarks[1].device: expected cuda, cuda:N, cpu or auto (got 'tpu')"),
    ("benchmarks:\n  - model_name_or_path: gpt2\nglobal_settings:\n  use_cache: false\n",
     ":4: global_settings.use_cache: no equivalent: the collector's generate() always uses "
     "the KV cache"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n    batch_size: '8'\n",
     ":3: benchmarks[0].batch_size: Input should be a valid integer (got '8')"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n    num_iterations: 0\n",
     ":3: benchmarks[0].num_iterations: Input should be greater than or equal to 1"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n    trust_remote_code: 'yes'\n",
     ":3: benchmarks[0].trust_remote_code: Input should be a valid boolean (got 'yes')"),
    ("benchmarks:\n  - model_name_or_path: gpt2\nglobal_settings:\n  torch_dtype: float64\n",
     ":4: global_settings.torch_dtype: Input should be 'float16', 'bfloat16', 'float32' or "
     "'auto' (got 'float64')"),
    ("benchmarks:\n  - batch_size: 1\n    model_name_or_path: gpt2\n  - batch_size: 2\n",
     ":4: benchmarks[1].model_name_or_path: required field is missing"),
    ("benchmarks:\n  - model_name_or_path: gpt2\noutput_settings:\n  save_model_info: false\n",
     ":4: output_settings.save_model_info: every result keeps its samples, model and "
     "environment, and that cannot be turned off"),
    ("benchmarks:\n  - model_name_or_path: gpt2\nextra_section: {}\n",
     ":3: extra_section: unknown key; expected one of: benchmarks, global_settings, "
     "output_settings"),
    ("benchmarks:\n  - model_name_or_path: ./no/such/dir\n",
     ":2: benchmarks[0].model_name_or_path: a path (it starts with ./) that is not a "
     "directory here"),
    # a generation model's sequence_length holds the prompt and the new tokens
    ("benchmarks:\n  - model_name_or_path: gpt2\n    sequence_length: 64\n"
     "    num_tokens_to_generate: 64\n",
     ":4: benchmarks[0].num_tokens_to_generate: a generation model's sequence_length (64) "
     "holds the prompt and the 64 new tokens: it must be larger"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n    sequence_length: 1\n",
     ":3: benchmarks[0].sequence_length: a generation model's sequence_length holds a prompt "
     "and new tokens: at least 2"),
    # one entry instead of a list: still the module's format, and said so
    ("benchmarks:\n  model_name_or_path: gpt2\n",
     ":2: benchmarks: Input should be a valid list"),
    # found by the native checks, put back on the old file
    ("benchmarks:\n  - model_name_or_path: someone/remote-model\n    trust_remote_code: true\n",
     ":3: benchmarks[0].trust_remote_code: trust_remote_code runs the model repository's own "
     "code: pin revision to a full 40-character commit hash (got 'main')"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n  - model_name_or_path: gpt2\n",
     ":3: benchmarks[1].model_name_or_path: repeats the workload of benchmark 'gpt2'"),
    ("benchmarks:\n  - model_name_or_path: gpt2\n    batch_size: 4294967296\n",
     ":3: benchmarks[0].batch_size: Input should be less than or equal to 2147483647"),
])
def test_bad_legacy_inputs_name_the_old_file_line_and_field(tmp_path: Path, text: str,
                                                            expected: str) -> None:
    path = write(tmp_path, text)
    for command in (("check-config", str(path)), ("convert-config", str(path))):
        code, out, err = cli(*command)
        assert code == 2, (command, out, err)
        assert f"{path}{expected}" in err, err
        assert "Traceback" not in err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        benchmarks:
          - model_name_or_path: gpt2
            device: tpu
          - model_name_or_path: bert-base-uncased
            colour: blue
        global_settings:
          use_cache: false
        """)
    code, _, err = cli("check-config", str(path))
    assert code == 2
    assert "3 problems" in err
    assert [f":{n}:" in err for n in (3, 5, 7)] == [True, True, True]


def test_an_entry_overrides_global_settings_and_the_comment_says_which(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        benchmarks:
          - model_name_or_path: bert-base-uncased
            torch_dtype: bfloat16
            warmup_iterations: 2
          - model_name_or_path: roberta-base
        global_settings:
          torch_dtype: float16
          warmup_iterations: 5
          device: cpu
          batch_size: 8
        """)
    first, second = load_config(path).suites[0].benchmarks
    assert (first.dtype.value, first.measurement.warmup_iterations) == ("bfloat16", 2)
    assert (second.dtype.value, second.measurement.warmup_iterations) == ("float16", 5)
    assert (first.device, first.batch_size, second.batch_size) == ("cpu", 8, 8)
    code, out, _ = cli("convert-config", str(path))
    assert code == 0
    assert "dtype: bfloat16 # benchmarks[0].torch_dtype (line 3)" in out
    assert "dtype: float16 # global_settings.torch_dtype (line 7)" in out


def test_defaults_auto_values_and_unknown_families(tmp_path: Path) -> None:
    local = tmp_path / "my-model"
    local.mkdir()
    path = write(tmp_path, f"""\
        benchmarks:
          - model_name_or_path: someone/unknown-model
            torch_dtype: auto
            device: auto
          - model_name_or_path: {local}
          - model_name_or_path: distilgpt2
            sequence_length: 64
          - model_name_or_path: openai-community/gpt2
            sequence_length: 256
            num_tokens_to_generate: 32
        """)
    config = load_config(path)
    unknown, mine, short, pinned = config.suites[0].benchmarks
    # not in the table: task auto, the length as given, the module's 100 new tokens
    assert (unknown.task, unknown.sequence_length, unknown.new_tokens) == (Task.AUTO, 128, 100)
    assert unknown.dtype.value == "float32"  # auto: float32, with a note
    here = "cuda" if nvidia_present() else "cpu"
    assert unknown.device == here == mine.device  # auto, and unset (auto too)
    assert any(f":4: benchmarks[0].device: device auto is {here} here" in n
               for n in config.notes)
    assert any(":3: benchmarks[0].torch_dtype: torch_dtype auto" in n for n in config.notes)
    assert isinstance(mine.model, LocalSource) and mine.model.path == str(local)
    assert (mine.name, mine.task, mine.measurement.min_iterations) == ("my-model", Task.AUTO, 100)
    # below the module's 100 new tokens: half the length is new tokens
    assert (short.task, short.sequence_length, short.new_tokens) == (Task.TEXT_GENERATION, 32,
                                                                     32)
    assert (pinned.sequence_length, pinned.new_tokens) == (224, 32)


def test_only_the_modules_keys_select_the_translation(tmp_path: Path) -> None:
    # native benchmarks without suites stay native, and say what is missing
    path = write(tmp_path, "benchmarks:\n  - name: b\n    model: {source: hub, id: gpt2}\n")
    code, _, err = cli("check-config", str(path))
    assert code == 2
    assert "suites: required field is missing" in err and "read as" not in err
    # a native file is never translated, nor converted
    code, _, err = cli("check-config", "configs/default.yml")
    assert code == 0 and "transformers benchmark module" not in err
    code, _, err = cli("convert-config", "configs/default.yml")
    assert code == 2
    assert "configs/default.yml:1: (document): already in the collector's own format" in err


def test_synthetic_needs_a_known_family(tmp_path: Path) -> None:
    path = write(tmp_path, "benchmarks:\n  - model_name_or_path: gpt2\n"
                           "  - model_name_or_path: someone/unknown-model\n")
    code, out, err = cli("convert-config", str(path), "--synthetic")
    assert code == 2 and out == ""
    assert (f"{path}:3: benchmarks[1].model_name_or_path: --synthetic has no stand-in for "
            "'someone/unknown-model'") in err


def test_the_family_table_reads_the_name_after_the_last_slash() -> None:
    assert [getattr(family_of(m), "name", None) for m in (
        "bert-base-uncased", "google-bert/bert-large-cased", "distilbert/distilbert-base-cased",
        "FacebookAI/roberta-large", "openai-community/gpt2-xl", "facebook/opt-125m",
        "openai/clip-vit-large-patch14", "meta-llama/Llama-3-8B", "./bert-local")] == [
        "bert", "bert", "distilbert", "roberta", "gpt2", "opt", "clip", None, None]
    assert len({f.architecture for f in FAMILIES}) == len(FAMILIES)
