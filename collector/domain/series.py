"""The series vocabulary, defined once: which dimensions tell series apart, what each is
called, and how a workload is named for people.

A series is one workload on one host (its id: collector.domain.model.BenchmarkSpec.series_id).
Its dimensions are the labels every exported series carries, the columns the stores keep
and filter by, the Grafana variables and the labels the alert rules quote: the stores build
their SELECTs from `SERIES_FIELDS` and `Dimension.column`, the exporter labels from
`SERIES_LABELS`, the dashboards generator its variables from `SERIES_DIMENSIONS`, and a test
holds the alert rules to them.

What the words mean:
- `benchmark`: the benchmark's name in the config (`bert-tiny`); renaming it keeps the
  series' history;
- `model`: the model's identity: a hub id, a local path, or for a synthetic model its
  architecture and a digest of its config and seed (`BertForSequenceClassification@1a2b3c4d`):
  two benchmarks of one model (eager and int8, say) share it;
- `architecture`: the model class (known for synthetic models; empty for hub and local
  models, whose class is only known once loaded);
- `load`: the load a benchmark runs under (BenchmarkSpec.load: `cb 16 req` for continuous
  batching in the worker, the profile for serving, `poisson 4/s`); empty for a benchmark of
  one call at a time;
- `origin`: for a series `collector import` brought in, the tool that measured it
  (`optimum-benchmark`, `vllm-bench-serve`: collector.domain.workload.Origin); empty for the
  collector's own;
- `attn_implementation`: the attention as BenchmarkSpec.attention writes it: the spec's
  attn_implementation, its SDPA kernel after a slash and `+kernels` for Hub kernels
  (`sdpa/math`, `auto+kernels`), `auto` for the model's own default; one dimension, so the
  SDPA kernel and the kernels switch need no column of their own;
- the rest are the spec's own fields (task as resolved by the worker).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from collector.domain.model import (
    BenchmarkResult,
    HubSource,
    LocalSource,
    ModelSource,
    SyntheticSource,
)
from collector.domain.workload import format_label


@dataclass(frozen=True)
class Dimension:
    """One dimension of a series."""

    name: str  # the label, the SeriesInfo field, the filter and the Grafana variable
    title: str  # what a person reads
    column: str | None = None  # the stores' column, where it differs from `name`
    numeric: bool = False

    @property
    def store_column(self) -> str:
        return self.column or self.name


# In the order labels are listed (exporter, dashboards' variables, `regressions` filters).
SERIES_DIMENSIONS = (
    Dimension("host", "Host"),
    Dimension("suite", "Suite"),
    Dimension("benchmark", "Benchmark", column="name"),
    Dimension("model", "Model"),
    Dimension("architecture", "Architecture"),
    Dimension("task", "Task"),
    Dimension("backend", "Backend"),
    Dimension("device", "Device"),
    Dimension("dtype", "Dtype"),
    Dimension("batch_size", "Batch size", numeric=True),
    Dimension("sequence_length", "Sequence length", numeric=True),
    Dimension("new_tokens", "New tokens", numeric=True),
    Dimension("quantization", "Quantization"),
    Dimension("attn_implementation", "Attention"),
    Dimension("load", "Load"),
    Dimension("origin", "Origin"),
)
DIMENSIONS_BY_NAME = {d.name: d for d in SERIES_DIMENSIONS}


@dataclass(frozen=True)
class SeriesInfo:
    """A series as stored and exported (fields in the stores' column order)."""

    series_id: str
    host: str
    suite: str
    benchmark: str
    model: str
    source: str
    revision: str | None
    task: str
    backend: str
    device: str
    dtype: str
    batch_size: int
    sequence_length: int
    new_tokens: int
    quantization: str = "none"
    # auto: transformers' own choice; with the SDPA kernel and Hub kernels where set
    # (BenchmarkSpec.attention: `sdpa/math`, `eager+kernels`).
    attn_implementation: str = "auto"
    architecture: str = ""
    load: str = ""  # '' for a benchmark of one call at a time (BenchmarkSpec.load None)
    origin: str = ""  # '' for the collector's own; the tool of an imported series


SERIES_FIELDS = tuple(f.name for f in fields(SeriesInfo))
# The stores' columns, in SERIES_FIELDS' order.
SERIES_COLUMNS = tuple(DIMENSIONS_BY_NAME[n].store_column if n in DIMENSIONS_BY_NAME else n
                       for n in SERIES_FIELDS)
# The labels a series can be filtered by, and the labels every exported series carries.
SERIES_FILTERS = tuple(d.name for d in SERIES_DIMENSIONS)
SERIES_LABELS = (*SERIES_FILTERS, "series_id")


def check_series_filters(filters: dict[str, str | int]) -> None:
    """Refuse filters that are not series labels (both stores build SQL from the names)."""
    unknown = sorted(set(filters) - set(SERIES_FILTERS))
    if unknown:
        raise ValueError(f"unknown series filter(s): {', '.join(unknown)}")


def model_label(model: ModelSource) -> str:
    """The model's identity as people read it (see the module's docstring)."""
    if isinstance(model, HubSource):
        return model.id
    if isinstance(model, LocalSource):
        return model.path
    return f"{model.architecture}@{synthetic_digest(model)}"


def synthetic_digest(model: SyntheticSource) -> str:
    """8 hex digits of the synthetic model's architecture, config and seed: equal for two
    benchmarks of one model, different for another size of the same architecture."""
    canonical = json.dumps({"architecture": model.architecture, "config": model.config,
                            "seed": model.seed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def architecture_of(model: ModelSource) -> str:
    return model.architecture if isinstance(model, SyntheticSource) else ""


def series_info(result: BenchmarkResult) -> SeriesInfo:
    """The series a result belongs to, as stored and exported."""
    spec = result.spec
    model = spec.model
    task = result.resolved_task.value if result.resolved_task else spec.task.value
    return SeriesInfo(series_id=result.series_id, host=result.environment.host,
                      suite=spec.suite, benchmark=spec.name, model=model_label(model),
                      source=model.source,
                      revision=model.revision if isinstance(model, HubSource) else None,
                      task=task, backend=spec.backend, device=spec.device,
                      dtype=spec.dtype.value, batch_size=spec.batch_size,
                      sequence_length=spec.sequence_length, new_tokens=spec.new_tokens,
                      quantization=spec.quantization.value,
                      attn_implementation=spec.attention or "auto",
                      architecture=architecture_of(model), load=spec.load or "",
                      origin=spec.origin.value if spec.origin is not None else "")


def dimension_value(result: BenchmarkResult, dimension: str) -> str:
    """A result's value of a series dimension, as text."""
    return str(getattr(series_info(result), dimension))


def workload_key(result: BenchmarkResult) -> str:
    """The workload without its host: what `compare` matches across sides."""
    return json.dumps(result.spec.identity(), sort_keys=True, separators=(",", ":"))


def workload_label(result: BenchmarkResult, *, host: bool = False,
                   without: Sequence[str] = ()) -> str:
    """The workload as people read it (BenchmarkSpec.label, the task as resolved), with
    ` @ host` when asked, without the dimensions `without` (a chart's axis, say)."""
    values: dict[str, Any] = result.spec.label_values()
    if result.resolved_task is not None:
        values["task"] = result.resolved_task.value
    for dimension in without:
        values.pop(dimension, None)
    text = format_label(values)
    return f"{text} @ {result.environment.host}" if host else text


# What a pivot table or a report's comparison can lay results out by: a series dimension
# (host included), by name.
def _reader(dimension: str) -> Callable[[BenchmarkResult], str]:
    return lambda result: dimension_value(result, dimension)


PIVOT_DIMENSIONS: dict[str, Callable[[BenchmarkResult], str]] = {
    name: _reader(name)
    for name in ("benchmark", "model", "backend", "dtype", "device", "batch_size",
                 "sequence_length", "quantization", "attn_implementation", "host")
}
