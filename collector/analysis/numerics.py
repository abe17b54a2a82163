"""Faster but different: how far a result's outputs are from a reference's.

Every result carries a fingerprint of one call's outputs on the fixed synthetic inputs
(collector/adapters/measure/numerics.py, stored with the raw samples): for a forward task a fixed
sample of its first output and the top-1 ids of fixed rows, for generation the new token
ids of one greedy call. After a suite runs, each result is compared with a reference:

- the eager, float32, unquantized result of the same workload (model, task, shapes, device,
  measurement mode) in the same run, when the suite has one and the result is not it;
- else the same series' previous run, from the store: the reference result itself, and a
  benchmark without an eager float32 sibling, show what an upgrade did to their outputs.

The drift is stored and exported like any metric (`output_max_abs_diff`,
`output_max_rel_diff_ratio`, `output_top1_agreement_ratio`, for generation
`output_token_agreement_ratio`); the detector judges it as its own kind, "outputs changed"
(collector/usecases/scan.py), so an ONNX export, an int8 variant or an upgrade that moves the
outputs is flagged beside its latency, not celebrated for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from collector.domain import backends
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Dtype,
    Quantization,
    RunResult,
)

SAMPLE_KEY = "output_sample"
TOP1_KEY = "output_top1"
TOKENS_KEY = "output_tokens"
FINGERPRINT_KEYS = (SAMPLE_KEY, TOP1_KEY, TOKENS_KEY)
SAMPLE_SIZE = 256
TOP1_SIZE = 64

# The stored fingerprint of a series' previous run ({} when there is none): series_id ->
# {sample name: values}.
Previous = Callable[[str], Mapping[str, Sequence[float]]]


def _workload(result: BenchmarkResult) -> tuple[object, ...]:
    spec = result.spec
    identity = spec.identity()
    return (str(identity["model"]), identity["task"], spec.device, spec.batch_size,
            spec.sequence_length, spec.new_tokens, spec.measurement.mode.value)


def _is_reference(result: BenchmarkResult) -> bool:
    spec = result.spec
    return (spec.backend == backends.REFERENCE and spec.dtype is Dtype.FLOAT32
            and spec.quantization is Quantization.NONE and spec.attention is None)


def _sizes(spec: BenchmarkSpec) -> dict[str, int]:
    """How many values one fingerprint has under each key."""
    return {SAMPLE_KEY: SAMPLE_SIZE, TOP1_KEY: TOP1_SIZE,
            TOKENS_KEY: spec.batch_size * spec.new_tokens}


def fingerprint_of(result: BenchmarkResult) -> dict[str, list[float]]:
    """One repetition's fingerprint: repetitions' samples are concatenated
    (collector.analysis.combine), and a fingerprint has a size fixed by its spec."""
    found = {}
    for key, size in _sizes(result.spec).items():
        values = result.samples.get(key, ())
        if size > 0 and len(values) >= size:
            found[key] = list(values[:size])
    return found


def drift(got: Mapping[str, Sequence[float]],
          ref: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The drift metrics of fingerprint `got` against `ref` (only for keys both have, of
    the same size)."""
    def both(key: str) -> tuple[Sequence[float], Sequence[float]] | None:
        a, b = got.get(key), ref.get(key)
        return (a, b) if a and b and len(a) == len(b) else None

    metrics: dict[str, float] = {}
    if (pair := both(SAMPLE_KEY)) is not None:
        a, b = pair
        abs_diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
        scale = max(abs(y) for y in b) or 1.0
        metrics["output_max_abs_diff"] = abs_diff
        metrics["output_max_rel_diff_ratio"] = abs_diff / scale
    for key, metric in ((TOP1_KEY, "output_top1_agreement_ratio"),
                        (TOKENS_KEY, "output_token_agreement_ratio")):
        if (pair := both(key)) is not None:
            a, b = pair
            metrics[metric] = sum(x == y for x, y in zip(a, b, strict=True)) / len(b)
    return metrics


def with_drift(run: RunResult, previous: Previous | None = None) -> RunResult:
    """`run` with each result's drift against its reference: its workload's eager float32
    result in the same run, else (with `previous`) its series' previous run."""
    references = {_workload(r): r for r in run.results
                  if r.status == "ok" and _is_reference(r) and fingerprint_of(r)}
    results = []
    for result in run.results:
        got = fingerprint_of(result) if result.status == "ok" else {}
        reference = references.get(_workload(result))
        if not got:
            metrics = {}
        elif reference is not None and reference is not result:
            metrics = drift(got, fingerprint_of(reference))
        elif previous is not None:
            metrics = drift(got, previous(result.series_id))
        else:
            metrics = {}
        results.append(result.model_copy(update={"metrics": {**result.metrics, **metrics}})
                       if metrics else result)
    return run.model_copy(update={"results": tuple(results)})
