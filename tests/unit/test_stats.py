from __future__ import annotations

import random
import statistics

import pytest

from collector.domain.stats import median_ci, median_ci_ranks, percentile, summarize


def test_percentile_matches_linear_interpolation() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 90) == pytest.approx(4.0 + 0.6 * 6.0)
    assert percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile(values, 101)


def test_summary_agrees_with_the_statistics_module() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.3) for _ in range(501)]
    s = summarize(values)
    assert s.count == 501
    assert s.p50 == pytest.approx(statistics.median(values))
    assert s.mean == pytest.approx(statistics.fmean(values))
    assert s.stdev == pytest.approx(statistics.stdev(values))
    assert s.cv == pytest.approx(s.stdev / s.mean)
    assert s.min == min(values) and s.max == max(values)
    assert s.p90 == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[-1])


@pytest.mark.parametrize(("n", "lo", "hi"), [(6, 1, 6), (10, 2, 9), (20, 6, 15), (100, 40, 61)])
def test_median_ci_ranks_match_published_tables(n: int, lo: int, hi: int) -> None:
    # 1-based ranks from the standard binomial table for a 95% interval.
    assert median_ci_ranks(n) == (lo - 1, hi - 1)


def test_no_interval_below_six_samples() -> None:
    assert median_ci_ranks(5) is None
    assert median_ci([1.0, 2.0, 3.0]) is None


def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time() -> None:
    rng = random.Random(11)
    for n in (15, 60, 1500):  # exact and normal-approximation regimes
        covered = 0
        trials = 400
        for _ in range(trials):
            sample = sorted(rng.expovariate(1.0) for _ in range(n))
            ci = median_ci(sample)
            assert ci is not None
            covered += ci.low <= 0.6931471805599453 <= ci.high  # ln 2: Exp(1)'s median
        assert covered / trials >= 0.93, (n, covered / trials)


def test_relative_half_width_shrinks_with_more_samples() -> None:
    rng = random.Random(3)
    small = median_ci(sorted(rng.gauss(100, 5) for _ in range(30)))
    large = median_ci(sorted(rng.gauss(100, 5) for _ in range(3000)))
    assert small is not None and large is not None
    assert large.rel_half_width < small.rel_half_width / 4
