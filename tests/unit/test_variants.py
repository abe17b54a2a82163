"""The fastest variant of each model (collector/analysis/variants.py): one table per model
across backends, dtypes and quantizations, whatever the benchmarks are called."""

from __future__ import annotations

from typing import Any

import pytest

from collector.analysis.variants import fastest_variants
from collector.domain.model import Quantization
from tests.helpers import make_run


def result(latency: float, name: str = "bert", **spec: Any) -> Any:
    [base] = make_run(models=("bert",), latency=latency).results
    changed = base.spec.model_copy(update={"name": name, **spec})
    return base.model_copy(update={"spec": changed, "series_id": changed.series_id("host-a"),
                                   "metrics": {**base.metrics, "latency_p50_seconds": latency}})


def test_one_table_per_model_across_benchmark_names_and_variants() -> None:
    [table] = fastest_variants([
        result(0.0027),
        result(0.0013, "bert-compiled", backend="compile"),
        result(0.0065, "bert-int8", quantization=Quantization.INT8_DYNAMIC),
        result(0.0011, "bert-compiled", backend="compile", sequence_length=32)])
    assert table.benchmarks == ("bert", "bert-compiled", "bert-int8")
    assert table.metric == "latency_p50_seconds"
    assert table.columns == ("bs=1 seq=8", "bs=1 seq=32")
    rows = dict(table.rows)
    assert table.rows[0][0] == "compile float32"
    assert table.best("bs=1 seq=8") == "compile float32"
    assert rows["eager float32"]["bs=1 seq=8"].ratio == pytest.approx(0.0027 / 0.0013)
    assert rows["eager float32 int8-dynamic"]["bs=1 seq=8"].ratio == pytest.approx(5.0)
    assert "bs=1 seq=32" not in rows["eager float32"]


def test_a_model_in_one_variant_has_no_table() -> None:
    assert fastest_variants([result(0.002), result(0.003, sequence_length=32)]) == []
