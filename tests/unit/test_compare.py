"""collector/analysis/compare.py: matching workloads, intervals of a ratio and noise-aware
verdicts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from collector.analysis.compare import against_history, compare, judge, pivot
from collector.domain.model import Dtype, NoiseProbe, Repetition
from collector.domain.series import workload_label
from tests.helpers import make_run

NOISE = [1.0, 1.01, 0.99, 1.005, 0.995, 1.0]  # +-1% around 1


def runs(latencies: list[float], *, host: str = "host-a", model: str = "bert",
         samples: int = 20) -> list[Any]:
    """One successful result per latency: as many runs of one workload."""
    return [make_run(host=host, models=(model,), latency=x, samples=samples).results[0]
            for x in latencies]


def row_of(comparison: Any, metric: str = "latency_p50_seconds") -> Any:
    [row] = [r for r in comparison.rows if r.metric == metric]
    return row


def test_a_clear_slowdown_is_slower_with_an_interval_that_excludes_one() -> None:
    row = row_of(compare(runs([0.010 * x for x in NOISE]), runs([0.013 * x for x in NOISE])))
    assert row.method == "welch" and (row.n_a, row.n_b) == (6, 6)
    assert row.ratio == pytest.approx(1.3, rel=0.01)
    assert row.low is not None and row.high is not None and 1.25 < row.low < 1.3 < row.high
    assert (row.verdict, row.word) == ("worse", "slower")
    # Throughput is 1/latency: the same slowdown, from the other side.
    tput = row_of(compare(runs([0.010 * x for x in NOISE]), runs([0.013 * x for x in NOISE])),
                  "throughput_samples_per_second")
    assert (tput.verdict, tput.word) == ("worse", "slower") and tput.ratio < 0.8


def test_a_change_inside_the_noise_is_same_never_slower() -> None:
    noisy = [1.0, 1.3, 0.8, 1.2, 0.75, 1.1]  # +-25 %, as a busy shared host gives
    row = row_of(compare(runs([0.010 * x for x in noisy]),
                         runs([0.011 * x for x in reversed(noisy)])))
    assert row.ratio == pytest.approx(1.1, rel=0.01)
    assert row.low is not None and row.low < 1 < row.high
    assert row.verdict == "same"


def test_a_real_but_tiny_change_is_below_the_threshold() -> None:
    a = [0.010 * x for x in NOISE]
    b = [0.0102 * x for x in NOISE]  # +2 %: outside this noise, below the 3 % minimum effect
    row = row_of(compare(runs(a), runs(b)))
    assert row.low is not None and row.low > 1
    assert row.verdict == "same"
    assert row_of(compare(runs(a), runs(b), threshold=0.01)).verdict == "worse"


def test_faster_is_better() -> None:
    row = row_of(compare(runs([0.010 * x for x in NOISE]), runs([0.007 * x for x in NOISE])))
    assert (row.verdict, row.word) == ("better", "faster")


def test_one_new_value_is_judged_against_the_series_noise_and_never_invented() -> None:
    [now] = runs([0.015])
    few = [0.010 * x for x in NOISE]
    row = against_history(now, "latency_p50_seconds", few)
    assert row is not None and (row.verdict, row.word) == ("same", "too few runs (6 of 20)")
    assert row.a == pytest.approx(0.010) and row.b == 0.015 and row.low is None
    previous = few * 4  # 24 runs: the detector has learnt the noise
    row = against_history(now, "latency_p50_seconds", previous)
    assert row is not None and row.method == "history"
    assert row.verdict == "worse" and row.ratio == pytest.approx(1.5, rel=0.01)
    assert row.ratio == row.b / row.a
    [usual] = runs([0.0101])
    same = against_history(usual, "latency_p50_seconds", previous)
    assert same is not None and same.verdict == "same" and same.low is not None
    # The normal range is the detector's: z_threshold times the noise (learnt, when given).
    wide = against_history(now, "latency_p50_seconds", previous, noise=0.2)
    assert wide is not None and wide.verdict == "same" and wide.low is not None and wide.low < 1
    assert against_history(usual, "latency_p50_seconds", []) is None


def test_a_disturbed_run_is_not_judged_against_history() -> None:
    [now] = runs([0.015])
    busy = now.model_copy(update={"noise": NoiseProbe(wall_s=1, self_cpu_s=1, other_cpu_s=1.2,
                                                      other_cpu_fraction=0.6)})
    row = against_history(busy, "latency_p50_seconds", [0.010 * x for x in NOISE] * 4)
    assert row is not None and (row.verdict, row.word) == ("same", "not judged: busy 60%")


def test_one_run_each_bootstraps_the_raw_samples_plus_the_assumed_run_noise() -> None:
    row = row_of(compare(runs([0.010]), runs([0.013])))
    assert row.method == "samples" and row.low is not None and row.high is not None
    assert 1.1 < row.low < 1.3 < row.high and row.verdict == "worse"
    # The run-to-run noise of a shared host (about 20 %) swallows a 30 % step in one run.
    noisy = row_of(compare(runs([0.010]), runs([0.013]), run_noise=0.2))
    assert noisy.low is not None and noisy.low < 1 and noisy.verdict == "same"
    # Nothing assumed, no samples: no interval, the threshold alone.
    bare = row_of(compare(runs([0.010], samples=0), runs([0.013], samples=0), run_noise=0.0))
    assert (bare.method, bare.low, bare.verdict) == ("none", None, "worse")
    # Peak RSS is deterministic: compared as it is, equal here: 1.000x, same, exactly.
    rss = row_of(compare(runs([0.010]), runs([0.013])), "peak_rss_bytes")
    assert (rss.method, rss.ratio, rss.verdict, rss.low, rss.high) == (
        "exact", 1.0, "same", 1.0, 1.0)
    assert rss.interval_text == "exact" and rss.exact


def test_a_tail_percentile_needs_the_samples_to_bound_it() -> None:
    """A p90 of 20 samples is at their edge: no distribution-free interval exists (36
    samples are the fewest), so one run a side cannot judge it, however large the step;
    with 60 samples a side the bootstrap bounds it and a 30 % step is worse."""
    p90 = ["latency_p90_seconds"]
    few = row_of(compare(runs([0.010], samples=20), runs([0.020], samples=20), metrics=p90),
                 "latency_p90_seconds")
    assert few.method == "none" and few.verdict == "same"
    assert few.low is not None and few.high is not None
    assert few.low < 1e-9 and few.high > 1e9  # no interval: everything is possible
    many = row_of(compare(runs([0.010], samples=60), runs([0.013], samples=60), metrics=p90),
                  "latency_p90_seconds")
    assert many.method == "samples" and many.verdict == "worse"
    assert many.low is not None and 1.1 < many.low < 1.3


def test_repetitions_of_one_run_are_not_runs() -> None:
    """With several runs a side, the runs are the units: the repetitions of one run share
    its conditions. With one run a side, the repetitions give the within-run spread."""
    def repeated(level: float, spread: list[float]) -> Any:
        [result] = runs([level])
        reps = tuple(Repetition.model_validate({
            "index": i, "status": "ok", "started_at": result.started_at,
            "finished_at": result.finished_at,
            "metrics": {"latency_p50_seconds": level * x}}) for i, x in enumerate(spread))
        return result.model_copy(update={"repetitions": reps})

    tight = [0.999, 1.0, 1.001]
    one = row_of(compare([repeated(0.010, tight)], [repeated(0.0125, tight)]))
    assert (one.method, one.n_a, one.n_b) == ("repetitions", 3, 3)
    many = row_of(compare([repeated(0.010, tight), repeated(0.011, tight)],
                          [repeated(0.0125, tight), repeated(0.012, tight)]))
    assert (many.method, many.n_a, many.n_b) == ("welch", 2, 2)


def test_workloads_match_across_hosts_and_the_rest_is_listed() -> None:
    a = runs([0.010, 0.0101], host="host-a") + runs([0.02, 0.021], model="vit")
    b = runs([0.010, 0.0102], host="host-b")
    result = compare(a, b)
    assert {r.workload for r in result.rows} == {workload_label(a[0])}
    assert result.only_a == [workload_label(a[2])] and result.only_b == []
    failed = make_run(models=("bert",), fail="bert").results
    assert compare(failed, b).rows == []


def test_verdicts_follow_the_metric_direction() -> None:
    assert judge("latency_p50_seconds", 1.2, 1.1, 1.3, 0.03) == "worse"
    assert judge("throughput_samples_per_second", 1.2, 1.1, 1.3, 0.03) == "better"
    assert judge("latency_p50_seconds", 1.2, 0.9, 1.5, 0.03) == "same"
    assert judge("latency_stdev_seconds", 2.0, 1.5, 2.5, 0.03) == "same"  # neutral
    assert judge("output_top1_agreement_ratio", 0.5, None, None, 1e-6) == "worse"
    assert not math.isnan(row_of(compare(runs([0.01, 0.01]), runs([0.01, 0.01]))).ratio)


def _variant(result: Any, latency: float, **spec: Any) -> Any:
    return result.model_copy(update={
        "spec": result.spec.model_copy(update=spec),
        "metrics": {**result.metrics, "latency_p50_seconds": latency,
                    "throughput_samples_per_second": 1 / latency}})


def test_a_pivot_marks_the_best_of_each_column_by_direction() -> None:
    bert, vit = make_run(models=("bert", "vit")).results
    results = [_variant(bert, 0.010, batch_size=1), _variant(bert, 0.030, batch_size=8),
               _variant(vit, 0.020, batch_size=1), _variant(vit, 0.025, batch_size=8)]
    [table] = pivot(results, "benchmark", "batch_size", "latency_p50_seconds")
    assert (table.rows, table.columns, table.group) == (["bert", "vit"], ["1", "8"], "")
    assert table.best == {("bert", "1"), ("vit", "8")}  # lower is better
    assert table.cell_text("bert", "1") == "10.00 ms *"
    assert table.cell_text("vit", "1") == "20.00 ms"
    [rates] = pivot(results, "benchmark", "batch_size", "throughput_samples_per_second")
    assert rates.best == {("bert", "1"), ("vit", "8")}  # higher is better, same winners


def test_a_pivot_splits_by_the_other_dimensions_that_vary() -> None:
    [bert] = make_run(models=("bert",)).results
    results = [_variant(bert, 0.01, dtype=d, backend=b, sequence_length=s)
               for d in (Dtype.FLOAT32, Dtype.BFLOAT16) for b in ("eager", "compile")
               for s in (8, 64)]
    tables = pivot(results, "backend", "dtype", "latency_p50_seconds")
    assert [t.group for t in tables] == ["sequence_length=64", "sequence_length=8"]
    assert all(len(t.cells) == 4 for t in tables)
    with pytest.raises(ValueError, match="pivot by two of"):
        pivot(results, "backend", "backend", "latency_p50_seconds")
