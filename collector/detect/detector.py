"""Online level-change detection on one series of per-run values.

Pure functions and small state, no I/O: the store integration (`collector.usecases.scan`),
`collector detect --input` and the evaluation in `benchmarks/detection_quality.py` all drive
the same `Detector`.

How a change is found (work in log space, so effects are relative and noise is
multiplicative):

1. At every new run, for tail lengths m from `min_persist` to `max_tail` (the last m runs),
   compare a robust level of the tail with the same kind of level of up to
   `reference_window` runs before it (the reference), within the current regime. Short
   tails use the median taken on the lower side of the middle when testing for a rise (the
   upper side for a fall), so most runs must reach it: one or two spikes cannot carry it;
   longer tails use the mean of their middle half.
2. Noise is learnt from the series itself: the spread between the 10th and 90th
   percentiles of successive differences over up to `scale_window` runs. Differences
   ignore level shifts; rare spikes do not move the spread; a second mode widens it. It
   never goes below `noise_floor`. Positive lag-1 autocorrelation, learnt from runs before
   any tested tail, widens the standard error.
3. A tail is flagged (`suspected`) when the robust z of the shift reaches `z_suspect` AND
   the relative change reaches `min_effect` (and `min_absolute` in the metric's unit).
   Nothing is judged before `min_history` runs. Memory metrics are near-deterministic:
   their settings make the effect threshold decide.
4. The change is located by the split that maximises the two-sample mean-difference
   statistic over the window, on values clipped to the two levels ± a few sigmas (outliers
   cannot move the split).
5. A flagged change is `suspected` (recorded, never pages). It is confirmed (`open`) from
   the runs after the one that flagged it (what raised the suspicion cannot also prove
   it): at least `confirm_after` of them at the new level, the latest `confirm_runs` runs
   at one new level (`confirm_misses` may fall short, never the latest, and their two
   halves agree), a robust z of `z_threshold` and a Mann-Whitney rank test against the
   reference. It is dismissed when its evidence is gone and runs are back on the old side
   (an excursion). A confirmed change resolves when `min_persist` consecutive runs are
   back on the old side.
6. After a confirmed change the new level is the regime the next change is measured
   against; after a resolution the regime restarts at the first reverted run.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from collector.domain.catalogue import METRICS, Direction
from collector.domain.detection import DetectorSettings
from collector.domain.stats import percentile, rank_u

Kind = Literal["regression", "improvement"]

_MEDIAN_VAR = math.pi / 2  # variance of a sample median / variance of a sample mean (normal)


def detectable(metric: str) -> bool:
    """Metrics with a better direction and a profile; neutral ones (stdev, model size) are
    not judged."""
    definition = METRICS.get(metric)
    return definition is not None and definition.detectable


@dataclass(frozen=True)
class Change:
    """A detected change of level, in indices of the values given to the detector."""

    kind: Kind
    start_index: int  # first run at the new level
    detected_index: int  # run at which it was first flagged (suspected)
    before: float  # old level (median, in the metric's unit)
    after: float  # new level (median, in the metric's unit)
    relative_change: float  # after / before - 1
    statistic: float  # robust z of the shift at detection
    confirmed_index: int | None = None  # run at which it became an alert (open)
    resolved_index: int | None = None  # run at which the level came back
    dismissed: bool = False  # reverted before it was confirmed: an excursion

    @property
    def status(self) -> Literal["suspected", "open", "resolved", "dismissed"]:
        if self.dismissed:
            return "dismissed"
        if self.resolved_index is not None:
            return "resolved"
        return "open" if self.confirmed_index is not None else "suspected"

    @property
    def active(self) -> bool:
        return not self.dismissed and self.resolved_index is None

    @property
    def p_value(self) -> float:
        """One-sided normal tail of the statistic (an approximation: the statistic is a
        robust z, not an exact test)."""
        return 0.5 * math.erfc(abs(self.statistic) / math.sqrt(2))


def _kind(sign: int, direction: Direction) -> Kind:
    worse_up = direction is Direction.LOWER_IS_BETTER
    return "regression" if (sign > 0) == worse_up else "improvement"


def _median(sorted_values: Sequence[float]) -> float:
    return percentile(sorted_values, 50)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    return percentile(sorted_values, 100 * q)


def _scale(values: Sequence[float]) -> float:
    """Noise of a series from its successive differences: the spread between their 10th
    and 90th percentiles / (2.563 * sqrt 2), which is the standard deviation under normal
    noise. Differences ignore level shifts, so the whole recent history can teach the noise
    (a short regime after a change could not); rare spikes (under 10% of runs) do not move
    the spread, and a second mode widens it, as it should."""
    diffs = sorted(b - a for a, b in itertools.pairwise(values))
    if len(diffs) < 2:
        return 0.0
    return (_quantile(diffs, 0.9) - _quantile(diffs, 0.1)) / (2.563 * math.sqrt(2))


def _lag1(values: Sequence[float]) -> float:
    """Lag-1 autocorrelation, shrunk towards 0 by one standard error and clipped to [0, 0.9]:
    positively correlated noise makes runs of similar values that look like shifts."""
    n = len(values)
    if n < 10:
        return 0.0
    mean = sum(values) / n
    dev = [v - mean for v in values]
    var = sum(d * d for d in dev)
    if var <= 1e-12 * n:  # constant up to rounding (memory): no correlation to speak of
        return 0.0
    rho = sum(dev[i] * dev[i - 1] for i in range(1, n)) / var
    return min(max(rho - 1 / math.sqrt(n), 0.0), 0.9)


def _level(sorted_values: Sequence[float], sign: int, short: bool) -> tuple[float, float]:
    """A robust level of sorted values and its variance factor (relative to a mean's).
    Short tails: the median, taken on the lower side of the middle when testing for a
    rise (and the upper side for a fall), so most runs must reach it; otherwise the mean
    of the middle half, nearly as efficient as the mean and blind to spikes in a quarter
    of the runs. Both
    sides of a comparison use the same kind of estimator, so skewed noise cancels."""
    m = len(sorted_values)
    if short:
        k = (m - 1) // 2 if sign > 0 else m // 2
        return sorted_values[k], _MEDIAN_VAR
    cut = -(-m // 4)
    kept = sorted_values[cut:m - cut]
    return sum(kept) / len(kept), (_MEDIAN_VAR if len(kept) == 1 else 1.25)


_SHORT = 5  # tails shorter than this are judged by medians


def _tail_lengths(shortest: int, longest: int) -> list[int]:
    """Every length up to 8 runs, then about 20% apart: neighbouring long tails carry
    nearly the same evidence, and the search is the detector's main cost."""
    lengths: list[int] = []
    m = shortest
    while m <= longest:
        lengths.append(m)
        m = m + 1 if m < 8 else max(m + 1, round(m * 1.2))
    if lengths and lengths[-1] != longest and longest > 8:
        lengths.append(longest)
    return lengths


def _rank_z(tail: Sequence[float], reference: Sequence[float], sign: int) -> float:
    """Mann-Whitney U of the tail against the sorted reference, as a z score in the
    direction `sign` (normal approximation, ties counted half)."""
    m, r = len(tail), len(reference)
    mean = m * r / 2
    sd = math.sqrt(m * r * (m + r + 1) / 12)
    return sign * (rank_u(tail, reference) - mean) / sd


@dataclass(frozen=True)
class _Candidate:
    sign: int
    tail: int
    z: float
    center: float  # reference median (log)
    level: float  # the tail's conservative level (log)
    sigma: float
    inflation: float  # standard-error factor for autocorrelated noise


@dataclass
class _Active:
    change: Change
    start: int  # position in the cleaned log series
    before: float  # log level
    after: float  # log level
    sigma: float
    sign: int
    reference: list[float]  # sorted log values of the old level
    inflation: float
    mid: float  # runs beyond this (log) are on the new side
    level: float  # the tail's conservative level when it was flagged (log)
    detected: int  # position of the run that flagged it
    back: int = 0  # consecutive runs on the old side


@dataclass
class Detector:
    """Feed one value per run (`push`); read `changes`. The state is small: the current
    regime's start and the changes still active."""

    direction: Direction
    settings: DetectorSettings = field(default_factory=DetectorSettings)
    _logs: list[float] = field(default_factory=list)
    _index: list[int] = field(default_factory=list)  # original run index per kept value
    _regime: int = 0
    _active: list[_Active] = field(default_factory=list)
    _closed: list[Change] = field(default_factory=list)
    _tail_floor: int = 0  # tails may not start before this position
    _seen: int = 0

    def __post_init__(self) -> None:
        if self.direction is Direction.NEUTRAL:
            raise ValueError("a neutral metric has no regressions")

    @property
    def changes(self) -> list[Change]:
        """Every change recorded so far, oldest first."""
        found = self._closed + [a.change for a in self._active]
        return sorted(found, key=lambda c: (c.start_index, c.detected_index))

    def push(self, value: float, *, contaminated: bool = False) -> None:
        """One run's value. Contaminated runs (another process took the CPU) are skipped:
        they neither build the reference nor count as evidence."""
        index = self._seen
        self._seen += 1
        if contaminated or not math.isfinite(value) or value <= 0:
            return
        self._logs.append(math.log(value))
        self._index.append(index)
        for act in list(self._active):
            self._advance(act)
        pending = [a for a in self._active if a.change.confirmed_index is None]
        if not pending:
            self._look_for_change()
        elif all(a.back > 0 and a.sign == pending[0].sign for a in pending):
            # The latest run is back on the old side of the pending suspicion: a step the
            # other way (a slowdown after a flagged improvement that was noise) is looked
            # for in the runs after it was flagged, and supersedes it. Waiting for the
            # suspicion to fade first would delay a real step by several runs.
            self._look_for_change(sign=-pending[0].sign,
                                  floor=max(a.detected for a in pending) + 1,
                                  superseding=pending)

    # -- active changes: confirm, dismiss, resolve -------------------------------------
    def _advance(self, act: _Active) -> None:
        s = self.settings
        on_old_side = (self._logs[-1] - act.mid) * act.sign < 0
        act.back = act.back + 1 if on_old_side else 0
        if act.change.confirmed_index is None:
            tail = self._logs[act.start:]
            z, effect = self._evidence(tail, act.reference, act.sigma, act.sign,
                                       act.inflation)
            gone = z < s.z_suspect / 2 or math.expm1(effect) < s.min_effect / 2
            if (act.back >= 2 and gone) or len(tail) > s.confirm_runs + s.dismiss_after:
                self._close(act, replace(act.change, dismissed=True))
                # Later tails start after the excursion: its runs stay in the reference
                # (robust levels absorb them there) but cannot be evidence of a new change.
                self._tail_floor = len(self._logs) - act.back
            elif not on_old_side:
                self._try_confirm(act)
        elif act.back >= s.min_persist:
            self._close(act, replace(act.change, resolved_index=self._index[-1]))
            self._regime = len(self._logs) - act.back

    def _try_confirm(self, act: _Active) -> None:
        s = self.settings
        tail = self._logs[act.start:]
        line = act.before + s.confirm_line * (act.level - act.before)
        latest = tail[-s.confirm_runs:]
        misses = sum((v - line) * act.sign <= 0 for v in latest)
        if len(latest) < s.confirm_runs or misses > s.confirm_misses or (
                latest[-1] - line) * act.sign <= 0:
            return  # the latest runs must sit at the new level: an excursion cannot
        # ...and have stayed there after the run that flagged it: a three-run excursion
        # is flagged by its second or third run, so it cannot supply these.
        later = sum((v - line) * act.sign > 0 for v in self._logs[act.detected + 1:])
        if later < s.confirm_after:
            return
        # ...at one level: an excursion that follows a few high runs of noise makes two.
        half = len(latest) // 2
        drift = _median(sorted(latest[half:])) - _median(sorted(latest[:half]))
        if abs(drift) > s.consistency_z * act.sigma * act.inflation * math.sqrt(
                2 * _MEDIAN_VAR / half):
            return
        # The evidence to page comes from the runs after the one that flagged the change:
        # the runs that raised the suspicion (an excursion, a few high runs of noise)
        # cannot also be its proof.
        proof = self._logs[act.detected + 1:]
        z, effect = self._evidence(proof, act.reference, act.sigma, act.sign, act.inflation)
        if z < s.z_threshold or not self._big_enough(effect, act.before):
            return
        # Distribution-free guard: with bimodal or heavy-tailed noise a run of high values
        # can move a robust mean; it cannot make the runs outrank the reference.
        if _rank_z(proof, act.reference, act.sign) / act.inflation < s.rank_z:
            return
        # With more runs at the new level, place the start again (a run either way).
        n = len(self._logs)
        lo = max(self._regime, act.start - s.reference_window)
        # The search reaches past the flagging run: a suspicion raised by a small shift can
        # be overtaken by a larger change, which then starts where it really starts.
        now = _median(sorted(latest))
        start = self._locate(lo, (act.before, now), act.sigma, act.sign,
                             (max(lo + 3, act.start - 4), n - max(1, s.min_persist - 1)))
        ref = sorted(self._logs[max(self._regime, start - s.reference_window):start])
        if len(ref) >= 3:
            act.start, act.reference, act.before = start, ref, _median(ref)
        act.after = _median(sorted(self._logs[act.start:]))
        act.mid = 0.5 * (act.before + act.after)  # resolution is judged against these
        detected = max(act.change.detected_index, self._index[act.start])
        act.change = replace(act.change, start_index=self._index[act.start],
                             detected_index=detected,
                             confirmed_index=self._index[-1], before=math.exp(act.before),
                             after=math.exp(act.after),
                             relative_change=math.exp(act.after - act.before) - 1)
        self._regime = act.start  # later changes are measured against the new level

    def _close(self, act: _Active, final: Change) -> None:
        self._active.remove(act)
        self._closed.append(final)

    # -- new changes -----------------------------------------------------------------
    def _evidence(self, tail: Sequence[float], reference: Sequence[float], sigma: float,
                  sign: int, inflation: float, *, ordered: bool = False) -> tuple[float, float]:
        """Robust z and effect (log) of a tail against a sorted reference, in the
        direction `sign`. `ordered`: the tail is already sorted."""
        short = len(tail) < _SHORT
        level, factor = _level(tail if ordered else sorted(tail), sign, short)
        center, ref_factor = _level(reference, sign, short)
        effect = (level - center) * sign
        se = sigma * inflation * math.sqrt(factor / len(tail) + ref_factor / len(reference))
        return effect / se, effect

    def _big_enough(self, effect: float, center: float) -> bool:
        s = self.settings
        if effect <= 0 or math.expm1(effect) < s.min_effect:
            return False
        return s.min_absolute <= 0 or math.exp(center) * math.expm1(effect) >= s.min_absolute

    def _look_for_change(self, *, sign: int | None = None, floor: int = 0,
                         superseding: Sequence[_Active] = ()) -> None:
        """Test the latest tails for a change (in direction `sign` only, when given; tails
        start at `floor` or later); a change found closes the `superseding` suspicions as
        dismissed."""
        s = self.settings
        n = len(self._logs)
        best: _Candidate | None = None
        longest = min(s.max_tail, n - self._regime - s.min_reference,
                      n - max(self._tail_floor, floor))
        if longest < s.min_persist or n < s.min_history:
            return
        # Autocorrelation is learnt from runs before any tail tested now: a shift inside
        # the window would pass for correlation and blunt the test.
        settled = max(0, n - s.max_tail)
        rho = _lag1(self._logs[max(0, settled - s.scale_window):settled])
        inflation = math.sqrt((1 + rho) / (1 - rho))
        # Differences ignore level shifts, so one scale serves every tail; correlated
        # noise makes them understate its spread by sqrt(1 - rho).
        first_split = n - s.min_persist
        sigma = max(_scale(self._logs[max(0, first_split - s.scale_window):first_split])
                    / math.sqrt(1 - rho), s.noise_floor)
        tail: list[float] = []  # the last m runs, kept sorted as m grows
        for m in _tail_lengths(s.min_persist, longest):
            while len(tail) < m:
                bisect.insort(tail, self._logs[n - 1 - len(tail)])
            split = n - m
            ref = sorted(self._logs[max(self._regime, split - s.reference_window):split])
            center = _median(ref)
            for way in (1, -1) if sign is None else (sign,):
                z, effect = self._evidence(tail, ref, sigma, way, inflation, ordered=True)
                if z >= s.z_suspect and self._big_enough(effect, center) and (
                        best is None or z > best.z) and not self._returning(
                            way, center + effect * way, ignore=superseding):
                    best = _Candidate(way, m, z, center, center + effect * way, sigma,
                                      inflation)
        if best is not None:
            for act in superseding:
                self._close(act, replace(act.change, dismissed=True))
            self._open(best)

    def _returning(self, sign: int, level: float, *,
                   ignore: Sequence[_Active] = ()) -> bool:
        """A move back towards the old level of an active change (a level past its
        midpoint, or runs already back on the old side) is its resolution, not a new
        change in the other direction (`ignore`: suspicions a change may supersede)."""
        return any(sign == -act.sign and ((level - act.mid) * act.sign < 0 or act.back > 0)
                   for act in self._active if not any(act is other for other in ignore))

    def _open(self, cand: _Candidate) -> None:
        s = self.settings
        n = len(self._logs)
        lo = max(self._regime, n - cand.tail - s.reference_window)
        start = self._locate(lo, (cand.center, cand.level), cand.sigma, cand.sign,
                             (lo + 3, n - max(1, s.min_persist - 1)))
        ref = sorted(self._logs[max(self._regime, start - s.reference_window):start])
        if len(ref) < 3:
            return
        before = _median(ref)
        after = _median(sorted(self._logs[start:]))
        if (after - before) * cand.sign <= 0:
            return
        kind = _kind(cand.sign, self.direction)
        change = Change(kind=kind, start_index=self._index[start],
                        detected_index=self._index[n - 1], before=math.exp(before),
                        after=math.exp(after), relative_change=math.exp(after - before) - 1,
                        statistic=cand.z)
        # The bar for paging is measured to the freshest level (the last runs), which a
        # long flagged tail would dilute.
        recent = _median(sorted(self._logs[n - s.min_persist:]))
        level = max(cand.level * cand.sign, recent * cand.sign) * cand.sign
        # The sides are split halfway to the tail's conservative level, not to the median
        # after the located start, which a start placed early would drag back.
        act = _Active(change, start, before, after, cand.sigma, cand.sign, ref,
                      cand.inflation, mid=0.5 * (before + cand.level), level=level,
                      detected=n - 1)
        self._active.append(act)
        self._try_confirm(act)  # a change found late may already be long enough

    def _locate(self, lo: int, levels: tuple[float, float], sigma: float, sign: int,
                splits: tuple[int, int]) -> int:
        """The split in `splits` (inclusive) that best separates two levels over the
        values from `lo` on: the two-sample mean difference over its standard error, on
        values clipped to the two levels +- `clip_sigmas` (outliers cannot move it)."""
        s = self.settings
        n = len(self._logs)
        low = min(levels) - s.clip_sigmas * sigma
        high = max(levels) + s.clip_sigmas * sigma
        values = [min(max(v, low), high) for v in self._logs[lo:n]]
        prefix = [0.0]
        for v in values:
            prefix.append(prefix[-1] + v)
        total = prefix[-1]
        count = len(values)
        best_k, best_t = splits[1], -math.inf
        for k in range(splits[0], splits[1] + 1):
            left = k - lo
            right = count - left
            if left < 1 or right < 1:
                continue
            diff = (total - prefix[left]) / right - prefix[left] / left
            t = diff * sign * math.sqrt(left * right / count)
            if t > best_t:
                best_k, best_t = k, t
        return best_k


def outlier(values: Sequence[float], direction: Direction,
            settings: DetectorSettings | None = None, *,
            contaminated: Sequence[bool] | None = None) -> tuple[float, float] | None:
    """Is the latest run a worse outlier than `z_trigger` (and `min_effect`) against the
    runs before it? (z, relative change) if so. The reference is the median of up to
    `reference_window` clean runs before it; the noise is learnt as the detector learns it.
    One run proves nothing: this only asks for confirmation runs."""
    s = settings or DetectorSettings()
    if direction is Direction.NEUTRAL or not values:
        return None
    if contaminated and contaminated[-1]:
        return None
    clean = [math.log(v) for i, v in enumerate(values[:-1])
             if not (contaminated and contaminated[i]) and math.isfinite(v) and v > 0]
    last = values[-1]
    if len(clean) + 1 < s.min_history or not math.isfinite(last) or last <= 0:
        return None
    ref = sorted(clean[-s.reference_window:])
    sigma = max(_scale(clean[-s.scale_window:]), s.noise_floor)
    sign = 1 if direction is Direction.LOWER_IS_BETTER else -1
    shift = (math.log(last) - _median(ref)) * sign
    z = shift / (sigma * math.sqrt(1 + _MEDIAN_VAR / len(ref)))
    change = math.expm1(shift)
    if z < s.z_trigger or change < s.min_effect:
        return None
    if s.min_absolute > 0 and math.exp(_median(ref)) * change < s.min_absolute:
        return None
    return z, math.expm1(math.log(last) - _median(ref))


def replay(values: Sequence[float], direction: Direction,
           settings: DetectorSettings | None = None, *,
           contaminated: Sequence[bool] | None = None) -> list[Change]:
    """Run the detector online over a whole series (at run i it has seen runs 0..i) and
    return every change it recorded, oldest first."""
    detector = Detector(direction, settings or DetectorSettings())
    for i, value in enumerate(values):
        detector.push(value, contaminated=bool(contaminated[i]) if contaminated else False)
    return list(detector.changes)


@dataclass(frozen=True)
class NoiseEstimate:
    """What the detector learns of a series' noise, and what it can therefore see."""

    runs: int  # clean runs it learnt from
    noise: float  # relative noise between runs (log-scale standard deviation)
    inflation: float  # standard-error factor for autocorrelated noise
    min_detectable_effect: float  # smallest step that pages from scheduled runs alone
    confirm_min_detectable_effect: float  # ... with `confirm_points` confirmation points


def noise_estimate(values: Sequence[float], settings: DetectorSettings | None = None, *,
                   confirm_points: int = 4) -> NoiseEstimate | None:
    """The series' noise as the detector sees it at its latest run, and the minimum
    detectable effect (MDE): the smallest relative step that pages at the detector's
    false-alarm rate. A step pages when (a) its proof reaches `z_threshold` standard
    errors against the reference and (b) the latest `confirm_runs` runs sit above the
    line halfway to the new level (one may miss), which needs the half-step to clear
    about 1.645 noise sigmas (95% of runs); and never below `min_effect`. From scheduled
    runs alone the proof is `confirm_after` runs after the flagging tail; with
    confirmation points it is those points (docs/detection.md: a quiet panel means no step
    above this size). An approximation of the tuned detector, checked in
    benchmarks/detection_quality.py. None before `min_history` clean runs."""
    s = settings or DetectorSettings()
    logs = [math.log(v) for v in values if math.isfinite(v) and v > 0]
    if len(logs) < s.min_history:
        return None
    window = logs[-s.scale_window:]
    rho = _lag1(window)
    inflation = math.sqrt((1 + rho) / (1 - rho))
    sigma = max(_scale(window) / math.sqrt(1 - rho), s.noise_floor)
    ref = min(s.reference_window, len(logs) - s.min_persist)

    def mde(proof: int) -> float:
        se = sigma * inflation * math.sqrt(_MEDIAN_VAR / proof + 1.25 / ref)
        step = max(s.z_threshold * se, 2 * 1.645 * sigma * inflation)
        return max(s.min_effect, math.expm1(step))

    return NoiseEstimate(len(logs), sigma, inflation, mde(s.confirm_after),
                         mde(max(confirm_points, 1)))
