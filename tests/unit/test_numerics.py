"""Output drift against the same workload's eager float32 result in the same run
(collector/analysis/numerics.py)."""

from __future__ import annotations

from typing import Any

import pytest

from collector.analysis.numerics import (
    SAMPLE_KEY,
    SAMPLE_SIZE,
    TOKENS_KEY,
    TOP1_KEY,
    TOP1_SIZE,
    with_drift,
)
from collector.domain.model import Quantization
from tests.helpers import make_run


def _variant(result: Any, sample: list[float], top1: list[float], **spec: Any) -> Any:
    """`result` as `spec` with a fingerprint whose values cycle through `sample` and
    `top1` (a real fingerprint has SAMPLE_SIZE and TOP1_SIZE values)."""
    def fixed(values: list[float], size: int) -> list[float]:
        return [values[i % len(values)] for i in range(size)]

    return result.model_copy(update={
        "spec": result.spec.model_copy(update=spec),
        "samples": {**result.samples, SAMPLE_KEY: fixed(sample, SAMPLE_SIZE),
                    TOP1_KEY: fixed(top1, TOP1_SIZE)}})


def _run(*variants: tuple[list[float], list[float], dict[str, Any]]) -> Any:
    run = make_run(models=("bert",))
    [base] = run.results
    reference = _variant(base, [1.0, -2.0, 4.0], [3.0, 1.0])
    results = [reference] + [_variant(base, s, t, **spec) for s, t, spec in variants]
    return run.model_copy(update={"results": tuple(results)})


def test_each_variant_is_compared_with_the_eager_float32_result_of_its_workload() -> None:
    run = with_drift(_run(([1.0, -2.0, 4.0], [3.0, 1.0], {"backend": "onnxruntime"}),
                          ([1.0, -2.5, 4.0], [3.0, 2.0],
                           {"quantization": Quantization.INT8_DYNAMIC})))
    reference, exported, int8 = run.results
    assert not any(k.startswith("output_") for k in reference.metrics)  # it is the reference
    assert exported.metrics["output_max_abs_diff"] == 0.0
    assert exported.metrics["output_top1_agreement_ratio"] == 1.0
    assert int8.metrics["output_max_abs_diff"] == pytest.approx(0.5)
    assert int8.metrics["output_max_rel_diff_ratio"] == pytest.approx(0.5 / 4.0)
    assert int8.metrics["output_top1_agreement_ratio"] == 0.5


def test_repetitions_compare_their_first_fingerprint() -> None:
    # Repetitions' samples are concatenated by collector.analysis.combine: the first copy counts.
    run = _run(([1.0, -2.0, 4.0], [3.0, 1.0], {"backend": "openvino"}))
    variant = run.results[1]
    tripled = {k: v * 3 for k, v in variant.samples.items()}
    run = with_drift(run.model_copy(update={"results": (
        run.results[0], variant.model_copy(update={"samples": tripled}))}))
    assert run.results[1].metrics["output_max_abs_diff"] == 0.0


def test_no_reference_no_drift() -> None:
    # Another shape is another workload: nothing to compare with.
    run = with_drift(_run(([1.0, 0.0, 4.0], [3.0, 1.0],
                           {"backend": "onnxruntime", "sequence_length": 64})))
    assert not any(k.startswith("output_") for k in run.results[1].metrics)


def _generation(base: Any, tokens: list[float], **spec: Any) -> Any:
    """`base` as a generation result (batch 2, 4 new tokens) with these new token ids."""
    spec = {"batch_size": 2, "new_tokens": 4, **spec}
    return base.model_copy(update={"spec": base.spec.model_copy(update=spec),
                                   "samples": {TOKENS_KEY: tokens}})


def test_generation_compares_new_token_ids_position_by_position() -> None:
    [base] = make_run(models=("gpt2",)).results
    reference = _generation(base, [5, 6, 7, 8, 9, 10, 11, 12])
    compiled = _generation(base, [5, 6, 7, 1, 9, 10, 11, 12] * 3,  # three repetitions
                           backend="compile")
    run = make_run(models=("gpt2",)).model_copy(update={"results": (reference, compiled)})
    out = with_drift(run).results[1]
    assert out.metrics["output_token_agreement_ratio"] == 7 / 8
    assert "output_max_abs_diff" not in out.metrics  # no logits sample for generation


def test_without_a_reference_in_the_run_the_series_previous_run_is_the_reference() -> None:
    run = _run(([1.0, -2.0, 4.0], [3.0, 1.0], {"backend": "onnxruntime"}))
    reference = run.results[0]
    asked: list[str] = []

    def previous(series_id: str) -> dict[str, list[float]]:
        asked.append(series_id)
        return {SAMPLE_KEY: [v + 0.5 for v in reference.samples[SAMPLE_KEY]],
                TOP1_KEY: list(reference.samples[TOP1_KEY])}

    drifted = with_drift(run, previous).results
    # The eager float32 result is compared with its own previous run ...
    assert asked == [reference.series_id]
    assert drifted[0].metrics["output_max_abs_diff"] == pytest.approx(0.5)
    assert drifted[0].metrics["output_top1_agreement_ratio"] == 1.0
    # ... and the ONNX result with the reference in its run, not with its own history.
    assert drifted[1].metrics["output_max_abs_diff"] == 0.0


def test_no_previous_fingerprint_no_drift() -> None:
    run = with_drift(_run(), lambda _: {})
    assert not any(k.startswith("output_") for k in run.results[0].metrics)


def test_a_failed_result_is_never_compared() -> None:
    run = _run(([1.0, -2.0, 4.0], [3.0, 1.0], {"backend": "onnxruntime"}))
    failed = run.results[1].model_copy(update={"status": "failed", "metrics": {}})
    run = with_drift(run.model_copy(update={"results": (run.results[0], failed)}),
                     lambda _: {})
    assert run.results[1].metrics == {}
