"""Pure statistics on latency samples: percentiles, spread and the median's confidence interval.

No numpy: these run in the parent and in the exporter as well as in workers, and a few
thousand samples are cheap in plain Python.
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

_Z95 = 1.959963984540054
# Below this sample count the binomial order-statistic bounds are computed exactly.
_EXACT_LIMIT = 1000


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation.

    Matches numpy's default ("linear") method.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0.0 for a single value."""
    n = len(values)
    if n < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


# Two-sided 97.5% quantiles of Student's t, by degrees of freedom (1..30).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """Student's t 97.5% quantile (a 95% two-sided interval) for `df` degrees of freedom
    (bounded from above beyond 30: 2.021 at 40, 2.000 at 60, 1.980 at 120)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    return 2.021 if df <= 40 else 2.000 if df <= 60 else 1.980 if df <= 120 else 1.960


@functools.lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the order statistics bounding the median's CI.

    Distribution-free: P(x_(lo) <= median <= x_(hi)) >= confidence. None when n is too
    small for any interval at this confidence (n < 6 at 95%).
    """
    alpha = 1.0 - confidence
    if n < 1:
        return None
    if n <= _EXACT_LIMIT:
        # Largest j with P(X <= j - 1) <= alpha / 2 for X ~ Bin(n, 1/2); the interval is
        # [x_(j), x_(n-j+1)] in 1-based ranks. Log space: comb(n, i) / 2**n underflows.
        log_norm = math.lgamma(n + 1) - n * math.log(2.0)
        cdf = 0.0
        j = 0
        while True:
            cdf += math.exp(log_norm - math.lgamma(j + 1) - math.lgamma(n - j + 1))
            if cdf > alpha / 2:
                break
            j += 1
        if j == 0:
            return None
        return j - 1, n - j
    half = _Z95 * math.sqrt(n) / 2.0
    lo = max(0, math.floor(n / 2.0 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2.0 + half))
    return lo, hi


@dataclass(frozen=True)
class MedianCI:
    median: float
    low: float
    high: float

    @property
    def rel_half_width(self) -> float:
        """Half the interval's width relative to the median (inf when undefined)."""
        if self.median <= 0:
            return math.inf
        return (self.high - self.low) / 2.0 / self.median


def median_ci(sorted_values: Sequence[float], confidence: float = 0.95) -> MedianCI | None:
    """The median with its distribution-free confidence interval; None if n is too small."""
    ranks = median_ci_ranks(len(sorted_values), confidence)
    if ranks is None:
        return None
    lo, hi = ranks
    return MedianCI(percentile(sorted_values, 50.0), sorted_values[lo], sorted_values[hi])


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    mean: float
    stdev: float
    cv: float
    min: float
    max: float


def summarize(values: Sequence[float]) -> Summary:
    """Distribution summary of samples (any unit)."""
    ordered = sorted(values)
    m = mean(ordered)
    sd = stdev(ordered)
    return Summary(
        count=len(ordered),
        p50=percentile(ordered, 50.0),
        p90=percentile(ordered, 90.0),
        p99=percentile(ordered, 99.0),
        mean=m,
        stdev=sd,
        cv=sd / m if m > 0 else 0.0,
        min=ordered[0],
        max=ordered[-1],
    )


def rank_u(a: Sequence[float], sorted_b: Sequence[float]) -> float:
    """Mann-Whitney's U of `a` against `sorted_b` (already sorted): the pairs where a's value
    is above b's, ties counted half."""
    u = 0.0
    for v in a:
        below = bisect.bisect_left(sorted_b, v)
        u += below + 0.5 * (bisect.bisect_right(sorted_b, v) - below)
    return u


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation with the tie
    correction). For raw samples of two runs: diagnostics next to a detected change, not
    the detection itself (samples within a run are correlated). None when a side is empty
    or every value ties."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return None
    u = rank_u(a, sorted(b))
    ties = sum(c**3 - c for c in collections.Counter([*a, *b]).values())
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return None
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
