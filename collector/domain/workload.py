"""The words a workload is described in: tasks, dtypes, quantizations, attention
implementations, measurement modes, and the patterns of names and devices.

A leaf of the domain: the backend declarations (collector/domain/backends/) and the specs
(collector/domain/model.py) both build on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
DEVICE_PATTERN = r"^(cpu|cuda(:[0-9]+)?)$"


class Task(str, Enum):
    AUTO = "auto"
    TEXT_GENERATION = "text-generation"
    TEXT_CLASSIFICATION = "text-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    IMAGE_CLASSIFICATION = "image-classification"
    SPEECH_RECOGNITION = "speech-recognition"
    ZERO_SHOT_IMAGE_CLASSIFICATION = "zero-shot-image-classification"


GENERATION_TASKS = frozenset({Task.TEXT_GENERATION, Task.SPEECH_RECOGNITION})
FORWARD_TASKS = frozenset(t for t in Task if t not in GENERATION_TASKS and t is not Task.AUTO)
ALL_TASKS = frozenset(t for t in Task if t is not Task.AUTO)


class Quantization(str, Enum):
    """Weight quantization applied after loading (dtype stays the activations' type)."""

    NONE = "none"
    INT8_DYNAMIC = "int8-dynamic"  # int8 weights and dynamically quantized activations
    INT8_WEIGHT_ONLY = "int8-weight-only"
    BNB_INT8 = "bnb-int8"  # bitsandbytes LLM.int8(), CUDA
    BNB_NF4 = "bnb-nf4"  # bitsandbytes 4-bit NormalFloat, CUDA


TORCHAO_QUANTIZATIONS = frozenset({Quantization.INT8_DYNAMIC, Quantization.INT8_WEIGHT_ONLY})
BNB_QUANTIZATIONS = frozenset({Quantization.BNB_INT8, Quantization.BNB_NF4})


class Attention(str, Enum):
    """transformers' attn_implementation.

    No `paged` value: paged attention needs the paged KV cache of continuous batching,
    where a benchmark's `batching` runs eager as transformers' `paged|eager` and sdpa over
    the paged cache (transformers 5.24 deprecates the other `paged|` names); see
    docs/serving.md."""

    EAGER = "eager"
    SDPA = "sdpa"
    FLASH = "flash_attention_2"
    FLEX = "flex_attention"  # torch's flex_attention, compiled on the first call


class SdpaBackend(str, Enum):
    """The kernel torch's scaled_dot_product_attention runs (torch.nn.attention.SDPBackend),
    for attn_implementation sdpa; unset: torch picks one per call."""

    MATH = "math"  # the reference implementation in plain tensor operations
    FLASH = "flash"  # FlashAttention: CUDA, and torch's own CPU flash kernel
    EFFICIENT = "efficient"  # memory-efficient attention (xFormers'), CUDA only
    CUDNN = "cudnn"  # cuDNN's attention, CUDA only


CUDA_SDPA_BACKENDS = frozenset({SdpaBackend.EFFICIENT, SdpaBackend.CUDNN})


def attention_text(attn_implementation: Attention | None, sdpa_backend: SdpaBackend | None,
                   kernels: bool) -> str | None:
    """The attention dimension's value (label and series): the implementation, the SDPA
    kernel after a slash (`sdpa/math`), `+kernels` when the Hub's kernels replace layers
    (`auto+kernels` for the model's own attention); None for the model's own default."""
    text = attn_implementation.value if attn_implementation is not None else None
    if sdpa_backend is not None:
        text = f"{text or 'auto'}/{sdpa_backend.value}"
    if kernels:
        text = f"{text or 'auto'}+kernels"
    return text


class MeasurementMode(str, Enum):
    """What a benchmark measures: wall time (the default), or CPU instructions counted
    under valgrind (near-deterministic; a CI-sized mode for small models)."""

    WALL = "wall"
    INSTRUCTIONS = "instructions"


class Origin(str, Enum):
    """Where an imported result was measured: the tool whose history `collector import`
    brought in (collector/adapters/imports/). A benchmark the collector ran has none."""

    # The transformers `benchmark/` module: its PostgreSQL tables or their CSV exports.
    TRANSFORMERS_BENCHMARK = "transformers-benchmark"
    OPTIMUM_BENCHMARK = "optimum-benchmark"
    BENCHMARK_V2 = "benchmark_v2"  # transformers' benchmark_v2 result files
    VLLM_BENCH_SERVE = "vllm-bench-serve"
    GUIDELLM = "guidellm"


class Dtype(str, Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


# What a task's inputs use: a label leaves out a dimension its task does not use (an image
# model has no text sequence; only generation makes new tokens).
NO_SEQUENCE_TASKS = frozenset({Task.IMAGE_CLASSIFICATION.value, Task.SPEECH_RECOGNITION.value})
NEW_TOKEN_TASKS = frozenset(t.value for t in GENERATION_TASKS)


@dataclass(frozen=True)
class LabelPart:
    """One part of a workload's label: a dimension, written as `template` (its value in
    `{}`), left out when its value is `skip` or the task does not use it (a task in
    `unused_by`; with `used_by`, a task not in it)."""

    dimension: str
    template: str = "{}"
    skip: str | None = None
    unused_by: frozenset[str] = frozenset()
    used_by: frozenset[str] | None = None

    def shown_for(self, task: str) -> bool:
        return task not in self.unused_by and (self.used_by is None or task in self.used_by)


# A workload's label, defined once: collector.domain.model.BenchmarkSpec.label writes it
# from a spec, the dashboards generator (grafana/build_dashboards.py) from the series table.
LABEL_PARTS = (
    LabelPart("benchmark"),
    LabelPart("dtype"),
    LabelPart("backend"),
    LabelPart("quantization", skip=Quantization.NONE.value),
    LabelPart("attn_implementation", "attn={}", skip="auto"),
    LabelPart("device"),
    LabelPart("batch_size", "bs={}"),
    LabelPart("sequence_length", "seq={}", unused_by=NO_SEQUENCE_TASKS),
    LabelPart("new_tokens", "new={}", used_by=NEW_TOKEN_TASKS),
    # Under load (continuous batching, serving): the load, `cb 16 req` or `poisson 4/s`;
    # the stores keep '' for none (collector.domain.series.SeriesInfo.load).
    LabelPart("load", "[{}]", skip=""),
    # An imported result: the tool that measured it (Origin), `from optimum-benchmark`; the
    # stores keep '' for the collector's own (collector.domain.series.SeriesInfo.origin).
    LabelPart("origin", "from {}", skip=""),
)


def format_label(values: Mapping[str, Any]) -> str:
    """The label of a workload with these dimension values (and its `task`)."""
    task = str(values.get("task", ""))
    words = []
    for part in LABEL_PARTS:
        value = values.get(part.dimension)
        if value is None or str(value) == part.skip or not part.shown_for(task):
            continue
        words.append(part.template.format(value))
    return " ".join(words)
