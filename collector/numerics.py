"""Faster but different: how far a result's outputs are from a reference's.

Every forward result carries a fingerprint of its first output on the fixed synthetic
inputs (collector/runner/numerics.py, stored with the raw samples). After a suite runs, each
result is compared with the reference of the same workload in the same run: the eager,
float32, unquantized result of the same model, shapes and device. The drift is stored and
exported like any metric (`output_max_abs_diff`, `output_max_rel_diff_ratio`,
`output_top1_agreement_ratio`), so an ONNX export, an int8 variant or an upgrade that moves
the outputs shows beside its latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.model import Backend, BenchmarkResult, Dtype, Quantization, RunResult

SAMPLE_KEY = "output_sample"
TOP1_KEY = "output_top1"
SAMPLE_SIZE = 256
TOP1_SIZE = 64


def _workload(result: BenchmarkResult) -> tuple[object, ...]:
    spec = result.spec
    identity = spec.identity()
    return (str(identity["model"]), identity["task"], spec.device, spec.batch_size,
            spec.sequence_length, spec.measurement.mode.value)


def _is_reference(result: BenchmarkResult) -> bool:
    spec = result.spec
    return (spec.backend is Backend.EAGER and spec.dtype is Dtype.FLOAT32
            and spec.quantization is Quantization.NONE and spec.attn_implementation is None)


def _first(values: Sequence[float], size: int) -> list[float]:
    """One repetition's fingerprint: repetitions' samples are concatenated
    (collector.combine) and a fingerprint has exactly `size` values."""
    return list(values[:size]) if len(values) >= size else []


def drift(result: BenchmarkResult, reference: BenchmarkResult) -> dict[str, float]:
    """The drift metrics of `result` against `reference` ({} without both fingerprints)."""
    got, ref = (_first(r.samples.get(SAMPLE_KEY, ()), SAMPLE_SIZE) for r in (result, reference))
    if not got or len(got) != len(ref):
        return {}
    abs_diff = max(abs(a - b) for a, b in zip(got, ref, strict=True))
    scale = max(abs(b) for b in ref) or 1.0
    metrics = {"output_max_abs_diff": abs_diff, "output_max_rel_diff_ratio": abs_diff / scale}
    top_got, top_ref = (_first(r.samples.get(TOP1_KEY, ()), TOP1_SIZE)
                        for r in (result, reference))
    if top_got and len(top_got) == len(top_ref):
        same = sum(a == b for a, b in zip(top_got, top_ref, strict=True))
        metrics["output_top1_agreement_ratio"] = same / len(top_ref)
    return metrics


def with_drift(run: RunResult) -> RunResult:
    """`run` with each result's drift against its workload's reference in the same run."""
    references = {_workload(r): r for r in run.results
                  if r.status == "ok" and _is_reference(r) and SAMPLE_KEY in r.samples}
    results = []
    for result in run.results:
        reference = references.get(_workload(result))
        if result.status != "ok" or reference is None or reference is result:
            results.append(result)
            continue
        results.append(result.model_copy(
            update={"metrics": {**result.metrics, **drift(result, reference)}}))
    return run.model_copy(update={"results": tuple(results)})
