"""`check-config` refuses what no backend can run, naming the file, the line and the field,
and accepts a backend matrix every backend can run (collector/domain/capabilities.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.adapters.config import load_config
from collector.domain import capabilities
from collector.domain.backends import onnxruntime
from collector.domain.errors import ConfigError
from collector.domain.model import BenchmarkSpec, Task
from tests.helpers import spec_dict

# Lines 1-8; the fields under test follow from line 9.
BASE = """\
suites:
  s:
    benchmarks:
      - name: b
        model:
          source: synthetic
          architecture: {arch}
        sequence_length: 16
"""

# (id, architecture, extra yaml lines, field, message fragment); the first extra line is the
# field the problem is reported at (line 9).
IMPOSSIBLE = [
    ("onnxruntime text-generation", "GPT2LMHeadModel",
     "task: text-generation\nbackend: onnxruntime", "task", "not text-generation"),
    ("openvino cuda", "BertModel", "device: cuda\nbackend: openvino", "device", "not cuda"),
    ("bnb-int8 on cpu", "BertModel", "quantization: bnb-int8", "quantization",
     "bnb-int8 runs on cuda, not cpu"),
    ("int8 on onnxruntime", "BertModel", "quantization: int8-dynamic\nbackend: onnxruntime",
     "quantization", "backend onnxruntime supports quantization none"),
    ("attn with onnxruntime", "BertModel", "attn_implementation: sdpa\nbackend: onnxruntime",
     "attn_implementation", "does not take attn_implementation"),
    ("flash on cpu", "BertModel", "attn_implementation: flash_attention_2",
     "attn_implementation", "flash_attention_2 runs on cuda only"),
    ("openvino float16", "BertModel", "dtype: float16\nbackend: openvino", "dtype",
     "not float16"),
    ("tensorrt on cpu", "BertModel",
     "onnxruntime: {execution_provider: tensorrt}\nbackend: onnxruntime", "onnxruntime",
     "execution_provider tensorrt runs on cuda, not cpu"),
    ("instructions on onnxruntime", "BertModel",
     "measurement: {mode: instructions}\nbackend: onnxruntime", "measurement",
     "supports measurement mode wall, not instructions"),
    ("sdpa_backend without sdpa", "BertModel", "sdpa_backend: math\nattn_implementation: eager",
     "sdpa_backend", "sdpa_backend math picks the kernel of attn_implementation sdpa; set "
     "attn_implementation: sdpa (got eager)"),
    ("sdpa_backend with the default attention", "BertModel", "sdpa_backend: flash",
     "sdpa_backend", "(got unset, the model's own choice)"),
    ("efficient sdpa on cpu", "BertModel", "sdpa_backend: efficient\nattn_implementation: sdpa",
     "sdpa_backend", "sdpa_backend efficient runs on cuda only (torch has no CPU kernel for "
     "it), not cpu; on cpu use math or flash"),
    ("cudnn sdpa on cpu", "BertModel", "sdpa_backend: cudnn\nattn_implementation: sdpa",
     "sdpa_backend", "sdpa_backend cudnn runs on cuda only"),
    ("kernels on openvino", "BertModel", "kernels: true\nbackend: openvino", "kernels",
     "kernels replaces layers of the torch module, which backend openvino does not run"),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def bench(arch: str, extra: str) -> str:
    return BASE.format(arch=arch) + textwrap.indent(extra + "\n", " " * 8)


@pytest.mark.parametrize(("arch", "extra", "field", "fragment"),
                         [case[1:] for case in IMPOSSIBLE], ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_combination_is_one_error_with_file_line_and_field(
        tmp_path: Path, arch: str, extra: str, field: str, fragment: str) -> None:
    path = write(tmp_path, bench(arch, extra))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert problem.field == f"suites.s.benchmarks[0].{field}", str(problem)
    assert fragment in problem.message, str(problem)
    assert problem.line == 9 + extra.splitlines().index(
        next(line for line in extra.splitlines() if line.startswith(field))), str(problem)
    assert str(problem).startswith(f"{path}:{problem.line}: ")


def test_extra_compute_with_openvino_is_refused_at_the_model(tmp_path: Path) -> None:
    text = BASE.format(arch="BertModel").replace(
        "          architecture: BertModel\n",
        "          architecture: BertModel\n          extra_compute: 0.03\n") + (
        "        backend: openvino\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.field == "suites.s.benchmarks[0].model", str(problem)
    assert problem.line == 6, str(problem)  # the model mapping starts on line 6
    assert "extra_compute hooks the torch module" in problem.message
    assert "delay_ms" in problem.message


def test_backend_matrix_that_every_backend_can_run_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, bench("BertModel", "matrix:\n  backend: [eager, onnxruntime, openvino]"))
    (suite,) = load_config(path).suites
    assert len(suite.benchmarks) == 3
    assert {s.backend for s in suite.benchmarks} == {
        "eager", "onnxruntime", "openvino"}
    assert len({s.series_id("h") for s in suite.benchmarks}) == 3


def test_auto_task_is_left_to_the_worker_and_checked_there_with_the_resolved_task() -> None:
    spec = BenchmarkSpec.model_validate(spec_dict("gpt2", backend="onnxruntime"))
    assert spec.task is Task.AUTO
    assert capabilities.problem(spec) is None
    problem = capabilities.problem(spec, Task.TEXT_GENERATION)
    assert problem is not None
    assert problem[0] == "task"
    assert "not text-generation" in problem[1]
    assert capabilities.problem(spec, Task.FEATURE_EXTRACTION) is None


def test_onnxruntime_execution_providers_by_choice_and_device() -> None:
    def providers(**fields: object) -> tuple[str, ...]:
        spec = BenchmarkSpec.model_validate(spec_dict("bert", backend="onnxruntime", **fields))
        return onnxruntime.providers(spec.settings(onnxruntime.OnnxRuntimeSettings),
                                     spec.device)

    assert providers() == ("CPUExecutionProvider",)
    assert providers(device="cuda:1") == ("CUDAExecutionProvider",)
    # TensorRT takes what it can and leaves the other nodes to CUDA's provider.
    assert providers(device="cuda", onnxruntime={"execution_provider": "tensorrt"}) == (
        "TensorrtExecutionProvider", "CUDAExecutionProvider")


def test_the_execution_provider_is_identity_only_for_onnxruntime_when_set() -> None:
    def series(**fields: object) -> str:
        return BenchmarkSpec.model_validate(spec_dict("bert", **fields)).series_id("h")

    plain = series(backend="onnxruntime")
    assert series(backend="onnxruntime", onnxruntime={"execution_provider": "auto"}) == plain
    assert series(backend="onnxruntime", device="cuda") != series(
        backend="onnxruntime", device="cuda", onnxruntime={"execution_provider": "tensorrt"})
    # Other backends ignore it (a matrix over backends may set it for onnxruntime's sake).
    assert series(onnxruntime={"execution_provider": "cuda"}) == series()


def test_sdpa_backend_is_a_matrix_axis_of_sdpa_only(tmp_path: Path) -> None:
    """math and flash over one sdpa benchmark are two series; with eager in the attention
    matrix, its point is refused at the sdpa_backend field (the config cannot mean it)."""
    path = write(tmp_path, bench("BertModel", "attn_implementation: sdpa\n"
                                 "matrix:\n  sdpa_backend: [math, flash]"))
    (suite,) = load_config(path).suites
    assert [s.label.split()[3] for s in suite.benchmarks] == ["attn=sdpa/math", "attn=sdpa/flash"]
    assert len({s.series_id("h") for s in suite.benchmarks}) == 2

    path = write(tmp_path, bench("BertModel", "sdpa_backend: math\n"
                                 "matrix:\n  attn_implementation: [sdpa, eager]"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.field == "suites.s.benchmarks[0].sdpa_backend", str(problem)
    assert "(got eager)" in problem.message and "attn=eager/math" in problem.message


def test_flex_attention_under_batching_is_refused_at_the_attention(tmp_path: Path) -> None:
    path = write(tmp_path, bench("LlamaForCausalLM", "attn_implementation: flex_attention\n"
                                 "batching: {requests: 2}").replace(
        "        sequence_length: 16\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.field == "suites.s.benchmarks[0].attn_implementation", str(problem)
    assert "transformers refuses flex_attention under continuous batching" in problem.message


def test_attention_kernel_and_hub_kernels_enter_identity_and_label_only_when_set() -> None:
    """Old series keep their ids; the SDPA kernel and the Hub kernels are folded into the
    attention dimension's value (label, stores, exporter), which needs no new column."""
    def spec(**fields: object) -> BenchmarkSpec:
        return BenchmarkSpec.model_validate(spec_dict("bert", **fields))

    plain, sdpa = spec(), spec(attn_implementation="sdpa")
    assert "sdpa_backend" not in plain.identity() and "kernels" not in plain.identity()
    assert plain.attention is None and sdpa.attention == "sdpa"
    assert spec(kernels=False).series_id("h") == plain.series_id("h")
    math = spec(attn_implementation="sdpa", sdpa_backend="math")
    assert math.identity()["sdpa_backend"] == "math"
    assert math.series_id("h") != sdpa.series_id("h")
    assert math.label == "bert float32 eager attn=sdpa/math cpu bs=1 seq=8"
    assert spec(kernels=True).label == "bert float32 eager attn=auto+kernels cpu bs=1 seq=8"
    both = spec(attn_implementation="sdpa", sdpa_backend="flash", kernels=True)
    assert both.attention == "sdpa/flash+kernels" and both.identity()["kernels"] is True
    assert "attn=flex_attention" in spec(attn_implementation="flex_attention").label
