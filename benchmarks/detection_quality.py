"""Detection quality: does the regression detector find real changes and ignore noise?

Replays synthetic series through each detector, online (at run i a detector has seen runs
0..i), and scores what it reports against the truth the series were built with:

  * null series (no real change; 500 runs each): Gaussian noise at CV 1, 3, 5, 10 %, spikes,
    bimodal, AR(1), Student t3 and a slow drift; false alarms (alerts) and suspected flags
    per 1000 runs;
  * steps (100 stable runs, then the change; 160 runs): +-2, 5, 10, 20 % on a latency
    (lower is better) at CV 1, 3, 5 % and on a throughput (higher is better) at CV 3 %;
    recall within 30 runs, detection and alert delays, location, duplicate alerts;
  * excursions that revert (1, 2, 3 runs at +10 or +20 %): alerts (must be none) and flags;
  * two steps close together (+10 % at run 100, another +10 % at 110 or 115);
  * host (with `--host-noise PATH`, default benchmarks/data/host_noise.json when it exists;
    recorded by benchmarks/e2e_paging.py): for every recorded series' latency_p50_seconds
    (and decode_tokens_per_second, higher is better), null series (500 runs) and regression
    steps of 5, 10, 20 % at run 100 (160 runs) whose noise is a moving-block bootstrap of
    the recorded run-to-run log-deviations (see `load_host_models`).

Detectors: `collector` (collector.detect.detector with DetectorSettings, which
`--set key=value` overrides) and `naive` (alert when the latest run is 10 % worse than the
median of the 20 before it; one alert per excursion).

Confirmation (`--confirm-points K`, default 6, 0 = off; collector only): the service's
confirmation runs are emulated in every scenario. After run i, when the detector newly
suspects a change or `outlier()` fires on runs 0..i, K points are drawn from the scenario's
own generator at the level that holds at run i (fresh noise) and the detector state after
run i is fed those points; a change that starts in runs 0..i, is confirmed at a point and
is open pages in cycle i (`collector.usecases.scan.confirm_series`). The points are never
part of the series. Paging figures are printed for the schedule alone and with
confirmation: false pages per 1000 runs, page delay, share paged in the first bad run's own
cycle, and confirmation points spent per 1000 runs.

Goals for `collector` are printed as PASS/FAIL lines; the script exits 1 when one fails
(the host goals, when a host recording is used, are in the same list). Series are seeded
(`--seed`): the same seed gives the same series to every detector and in every run.

    .venv/bin/python benchmarks/detection_quality.py [--series 200] [--runs 500] [--quick]
        [--seed 0] [--jobs 2] [--detectors collector,naive] [--set key=value ...]
        [--confirm-points 6] [--host-noise PATH|none] [--host-block 8]
        [--host-level auto|median|rolling] [--host-confirm fresh|follow]
        [--host-metrics M,...] [--only TEXT,...] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from collector.domain.catalogue import METRICS, Direction

if TYPE_CHECKING:
    from collector.detect.detector import Change
    from collector.domain.detection import DetectorSettings

LATENCY = Direction.LOWER_IS_BETTER
THROUGHPUT = Direction.HIGHER_IS_BETTER
REGRESSION = "regression"
IMPROVEMENT = "improvement"

DEFAULT_SERIES = 200
QUICK_SERIES = 40
DEFAULT_RUNS = 500  # length of a null series
STABLE_RUNS = 100  # change series: runs before the (first) change
CHANGE_RUNS = 160  # change series: runs in all
RECALL_WINDOW = 30  # a change counts as found when flagged within t..t+30
DUPLICATE_WINDOW = 60  # alerts for the same change are counted within t..t+60
LOCATE_TOLERANCE = 1  # located when |start_index - t| <= 1
FLOOR = 1e-3  # values are clipped here (the level is 1.0)
CHUNK = 20  # series per worker task

NAIVE_WINDOW = 20
NAIVE_FACTOR = 1.1

GROUPS = ("null", "steps", "excursions", "two steps", "host null", "host steps")
STEP_SIZES = (0.02, 0.05, 0.10, 0.20, -0.02, -0.05, -0.10, -0.20)
STEP_CVS = (0.01, 0.03, 0.05)
THROUGHPUT_CVS = (0.03,)

# Goals for the collector detector.
FALSE_ALARM_GOAL = 0.5  # per 1000 runs: Gaussian, spikes, bimodal
FALSE_ALARM_GOAL_AR1 = 2.0
RECALL_GOAL = 0.95  # steps of 5 % or more at CV 3 %
DELAY_GOALS = {0.10: (2, 3), 0.05: (6, 10)}  # step size: (median, p90) detection delay, runs
LOCATED_GOAL = 0.90

# Confirmation runs, as collector.usecases.cycle runs them (detection.confirmation.points).
CONFIRM_POINTS = 6
MATCH_RUNS = 2  # collector.usecases.scan._MATCH_RUNS: a change within 2 runs is the same record
CONFIRM_KEY = 0x636F6E66  # spawn key of the confirmation points' generators

# The noise model measured on this host (benchmarks/e2e_paging.py --record).
HOST_NOISE = Path(__file__).resolve().parent / "data" / "host_noise.json"
HOST_METRICS = ("latency_p50_seconds", "decode_tokens_per_second")
HOST_STEPS = (0.05, 0.10, 0.20)  # regressions: a latency up, a throughput down
HOST_BLOCK = 8  # moving-block bootstrap: block length, runs
HOST_MIN_POINTS = 30  # fewer clean recorded points than this: the series is not modelled
ROLLING_WINDOW = 15  # robust rolling level (centred running median) of a drifting recording
DRIFT_Z = 3.0  # first and last thirds' medians this many standard errors apart: it drifts
# Goals for the host model (the words).
HOST_STEP_GOAL = 0.10  # this step ...
SAME_CYCLE_GOAL = 0.90  # ... pages within the first bad run's own cycle in this share of series


# --- scenarios ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostModel:
    """A recorded series' run-to-run noise: the log-deviations of its clean points from
    their level, oldest first, resampled in blocks (`sample`)."""

    series: str
    metric: str
    level: float  # median of the clean recorded values, in the metric's unit
    deviations: tuple[float, ...]  # log(value / level at that run)
    block: int  # moving-block bootstrap block length

    def positions(self, rng: np.random.Generator, n: int) -> NDArray[np.intp]:
        """Which recorded deviation each of n runs takes: blocks of `block` consecutive
        recorded positions, each from a uniformly drawn start, concatenated (a moving-block
        bootstrap)."""
        length = min(self.block, len(self.deviations))
        starts = rng.integers(0, len(self.deviations) - length + 1, -(-n // length))
        picked: NDArray[np.intp] = (starts[:, None] + np.arange(length)).ravel()[:n]
        return picked

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """n deviations of the moving-block bootstrap. Within a block the recorded order
        is kept, so short-range autocorrelation and clusters of slow runs survive; every
        value is a recorded one, so the tails are the host's own."""
        picked: NDArray[np.float64] = np.asarray(self.deviations)[self.positions(rng, n)]
        return picked

    def following(self, position: int, count: int) -> NDArray[np.float64]:
        """The `count` recorded deviations after `position` (circularly past the end)."""
        dev = np.asarray(self.deviations, dtype=np.float64)
        after: NDArray[np.float64] = dev[(position + 1 + np.arange(count)) % len(dev)]
        return after


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str  # one of GROUPS
    direction: Direction
    runs: int
    noise: str = "gauss"  # gauss | spikes | bimodal | ar1 | t3 | drift | host
    cv: float = 0.03
    steps: tuple[tuple[int, float], ...] = ()  # (first run at the new level, relative change)
    excursion: tuple[int, int, float] | None = None  # (first run, length, relative change)
    host: HostModel | None = None  # noise == "host": the recorded series it resamples

    def truth(self) -> list[tuple[int, str]]:
        """The true changes: (first run at the new level, kind), in order."""
        return [(t, kind_of(self.direction, rel)) for t, rel in self.steps]


def kind_of(direction: Direction, rel: float) -> str:
    worse = rel > 0 if direction is LATENCY else rel < 0
    return REGRESSION if worse else IMPROVEMENT


def pct(rel: float) -> str:
    return f"{rel * 100:+.0f}%"


def step_name(metric: str, rel: float, cv: float) -> str:
    return f"{metric} {pct(rel)} cv{cv * 100:.0f}%"


def excursion_name(length: int, rel: float) -> str:
    return f"excursion {length} run{'s' if length > 1 else ''} {pct(rel)} cv3%"


def null_scenarios(runs: int) -> list[Scenario]:
    out = [Scenario(f"gaussian cv{cv * 100:.0f}%", "null", LATENCY, runs, "gauss", cv)
           for cv in (0.01, 0.03, 0.05, 0.10)]
    out += [
        Scenario("spikes 3% of runs x1.2-1.6, cv3%", "null", LATENCY, runs, "spikes", 0.03),
        Scenario("bimodal 30% of runs +8%, cv2%", "null", LATENCY, runs, "bimodal", 0.02),
        Scenario("AR(1) rho 0.5, cv3%", "null", LATENCY, runs, "ar1", 0.03),
        Scenario("heavy tails t3, cv3%", "null", LATENCY, runs, "t3", 0.03),
        Scenario(f"drift +5% over {runs} runs, cv3%", "null", LATENCY, runs, "drift", 0.03),
    ]
    return out


def build_scenarios(runs: int) -> list[Scenario]:
    out = null_scenarios(runs)
    for cv in STEP_CVS:
        out += [Scenario(step_name("latency", rel, cv), "steps", LATENCY, CHANGE_RUNS,
                         cv=cv, steps=((STABLE_RUNS, rel),)) for rel in STEP_SIZES]
    for cv in THROUGHPUT_CVS:
        out += [Scenario(step_name("throughput", rel, cv), "steps", THROUGHPUT, CHANGE_RUNS,
                         cv=cv, steps=((STABLE_RUNS, rel),)) for rel in STEP_SIZES]
    out += [Scenario(excursion_name(length, rel), "excursions", LATENCY, CHANGE_RUNS,
                     excursion=(STABLE_RUNS, length, rel))
            for rel in (0.10, 0.20) for length in (1, 2, 3)]
    out += [Scenario(f"two steps +10% at {STABLE_RUNS} and {second}, cv3%", "two steps",
                     LATENCY, CHANGE_RUNS, steps=((STABLE_RUNS, 0.10), (second, 0.10)))
            for second in (STABLE_RUNS + 10, STABLE_RUNS + 15)]
    return out


def host_scenarios(models: Sequence[HostModel], runs: int) -> list[Scenario]:
    """Per recorded series: a null series and regression steps at run STABLE_RUNS."""
    out: list[Scenario] = []
    for model in models:
        direction = METRICS[model.metric].direction
        label = f"host {model.series} {model.metric}"
        out.append(Scenario(f"{label} null", "host null", direction, runs, "host", host=model))
        for size in HOST_STEPS:
            rel = size if direction is LATENCY else -size
            out.append(Scenario(f"{label} {pct(rel)}", "host steps", direction, CHANGE_RUNS,
                                "host", steps=((STABLE_RUNS, rel),), host=model))
    return out


def series_rng(seed: int, scenario: str, index: int) -> np.random.Generator:
    """One generator per (seed, scenario, series): independent of --series, --jobs and
    of which other scenarios exist."""
    key = (zlib.crc32(scenario.encode()), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def generate(scn: Scenario, rng: np.random.Generator) -> NDArray[np.float64]:
    """Level (1.0, times the steps) times multiplicative noise at scn.cv."""
    n = scn.runs
    level = np.ones(n)
    for t, rel in scn.steps:
        level[t:] *= 1 + rel
    if scn.excursion is not None:
        start, length, rel = scn.excursion
        level[start:start + length] *= 1 + rel
    if scn.host is not None:  # the recorded level times resampled recorded deviations
        host: NDArray[np.float64] = scn.host.level * level * np.exp(scn.host.sample(rng, n))
        return host
    if scn.noise == "drift":
        level *= 1 + 0.05 * np.arange(n) / max(n - 1, 1)
    if scn.noise == "ar1":  # stationary AR(1), unit marginal variance
        rho = 0.5
        innovations = rng.standard_normal(n) * math.sqrt(1 - rho * rho)
        z = np.empty(n)
        z[0] = rng.standard_normal()
        for i in range(1, n):
            z[i] = rho * z[i - 1] + innovations[i]
    elif scn.noise == "t3":  # Student t, 3 dof, scaled to unit variance (var = 3)
        z = rng.standard_t(3, n) / math.sqrt(3)
    else:
        z = rng.standard_normal(n)
    values = level * (1 + scn.cv * z)
    if scn.noise == "spikes":
        hit = rng.random(n) < 0.03
        values[hit] *= rng.uniform(1.2, 1.6, int(hit.sum()))
    elif scn.noise == "bimodal":
        values *= np.where(rng.random(n) < 0.30, 1.08, 1.0)
    result: NDArray[np.float64] = np.maximum(values, FLOOR)
    return result


def level_at(scn: Scenario, i: int) -> float:
    """The level confirmation points drawn after run i sit at: the steps that hold at run i
    (and the drift there). They run between run i and run i+1, so they see an excursion
    only while it goes on past run i: a one-run excursion is over by then."""
    level = 1.0
    for t, rel in scn.steps:
        if i >= t:
            level *= 1 + rel
    if scn.excursion is not None:
        start, length, rel = scn.excursion
        if start <= i < start + length - 1:
            level *= 1 + rel
    if scn.noise == "drift":
        level *= 1 + 0.05 * i / max(scn.runs - 1, 1)
    return level


def confirmation_points(scn: Scenario, rng: np.random.Generator, i: int,
                        count: int) -> list[float]:
    """`count` points from the scenario's own generator with fresh noise (a series of
    `count` runs without steps: a stationary AR(1), one block of the host's deviations,
    ...), at the level that holds at run i."""
    fresh = replace(scn, runs=count, steps=(), excursion=None,
                    noise="gauss" if scn.noise == "drift" else scn.noise)
    points: list[float] = (level_at(scn, i) * generate(fresh, rng)).tolist()
    return points


def following_points(scn: Scenario, positions: NDArray[np.intp], i: int,
                     count: int) -> list[float]:
    """--host-confirm follow: the points continue the recording after the deviation run i
    took (as correlated with run i as the recorded next cycles were), at its level."""
    assert scn.host is not None
    level = level_at(scn, i) * scn.host.level
    points: list[float] = (level * np.exp(scn.host.following(int(positions[i]), count))).tolist()
    return points


def confirm_rng(seed: int, scenario: str, index: int, run: int) -> np.random.Generator:
    """The generator of the points drawn after run `run` of one series."""
    key = (zlib.crc32(scenario.encode()), index, CONFIRM_KEY, run)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# --- the host noise model -------------------------------------------------------------------

def sigma_of_differences(logs: NDArray[np.float64]) -> float:
    """Robust standard deviation of successive differences: their 10th-90th percentile
    spread / 2.563, as the detector measures noise (its per-run noise is this / sqrt 2)."""
    diffs = np.diff(logs)
    if len(diffs) < 2:
        return 0.0
    return float(np.quantile(diffs, 0.9) - np.quantile(diffs, 0.1)) / 2.563


def lag1(values: NDArray[np.float64]) -> float:
    dev = values - values.mean()
    var = float(dev @ dev)
    return float(dev[1:] @ dev[:-1]) / var if var > 0 else 0.0


def running_median(values: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Centred running median (windows are cut at the ends)."""
    half = window // 2
    return np.array([np.median(values[max(0, i - half):i + half + 1])
                     for i in range(len(values))])


def drift_z(logs: NDArray[np.float64]) -> float:
    """How far apart the medians of the first and last thirds are, in standard errors:
    the noise from successive differences (blind to a slow drift), widened for positive
    lag-1 autocorrelation of what is left around a rolling level."""
    third = len(logs) // 3
    if third < 3:
        return 0.0
    shift = float(np.median(logs[-third:]) - np.median(logs[:third]))
    sigma = sigma_of_differences(logs) / math.sqrt(2)
    rho = min(max(lag1(logs - running_median(logs, ROLLING_WINDOW)), 0.0), 0.9)
    se = sigma * math.sqrt((1 + rho) / (1 - rho)) * math.sqrt(math.pi / 2 * 2 / third)
    return shift / se if se > 0 else 0.0


def load_host_models(path: Path, metrics: Sequence[str], *, block: int, level_mode: str,
                     confirm_points: int, settings: DetectorSettings,
                     ) -> tuple[list[HostModel], list[dict[str, Any]]]:
    """The noise models of a recording (benchmarks/e2e_paging.py --record) and the
    recorded series' own statistics.

    Per series and metric: the stored value of one real run per cycle, oldest first.
    Contaminated runs (another process took `contaminated_cpu_fraction` of the CPU, as the
    scan judges them) are dropped: the detector skips them, so the clean points are the
    series it sees. The level is the median of the clean points, or, when the recording
    drifts (`drift_z` >= DRIFT_Z) or `level_mode` is rolling, a centred running median of
    ROLLING_WINDOW runs: resampling deviations from one median of a drifting recording
    would put blocks of its early and late levels next to each other, making steps the
    host never made. Nothing is scaled."""
    from collector.detect.detector import noise_estimate
    from collector.domain.detection import settings_for
    from collector.usecases.scan import ScanSettings

    document = json.loads(path.read_text(encoding="utf-8"))
    limit = ScanSettings().contaminated_cpu_fraction
    models: list[HostModel] = []
    stats: list[dict[str, Any]] = []
    for name, entry in sorted(document["series"].items()):
        fractions = entry.get("other_cpu_fraction") or []
        for metric in metrics:
            recorded = entry["metrics"].get(metric)
            if not recorded or metric not in METRICS:
                continue
            aligned = len(fractions) == len(recorded)
            clean = [float(v) for j, v in enumerate(recorded)
                     if v is not None and math.isfinite(v) and v > 0
                     and not (aligned and fractions[j] is not None and fractions[j] >= limit)]
            dropped = len(recorded) - len(clean)
            if len(clean) < max(HOST_MIN_POINTS, block):
                print(f"host noise: {name} {metric} has {len(clean)} clean points (need "
                      f"{max(HOST_MIN_POINTS, block)}): not modelled", file=sys.stderr)
                continue
            values = np.asarray(clean)
            logs = np.log(values)
            z = drift_z(logs)
            rolling = level_mode == "rolling" or (level_mode == "auto" and abs(z) >= DRIFT_Z)
            level = running_median(logs, ROLLING_WINDOW) if rolling else np.full(
                len(logs), float(np.median(logs)))
            deviations = logs - level
            models.append(HostModel(name, metric, float(np.median(values)),
                                    tuple(float(d) for d in deviations), block))
            estimate = noise_estimate(clean, settings_for(metric, settings),
                                      confirm_points=max(confirm_points, 1))
            stats.append({
                "series": name, "series_id": entry.get("series_id"), "metric": metric,
                "direction": METRICS[metric].direction.value,
                "recorded": len(recorded), "dropped": dropped,
                "contamination_known": aligned, "n": len(clean),
                "median": float(np.median(values)),
                "cv": float(values.std(ddof=1) / values.mean()),
                "lag1": lag1(logs),
                "sigma_diff": sigma_of_differences(logs),
                "drift_z": z,
                "level": f"rolling median of {ROLLING_WINDOW}" if rolling else "median",
                "deviation_sd": float(deviations.std(ddof=1)),
                "deviation_lag1": lag1(deviations),
                "deviation_range": [float(deviations.min()), float(deviations.max())],
                "block": block,
                "detector_noise": None if estimate is None else estimate.noise,
                "mde": None if estimate is None else estimate.min_detectable_effect,
                "mde_confirm": (None if estimate is None
                                else estimate.confirm_min_detectable_effect),
            })
    return models, stats


# --- detectors ------------------------------------------------------------------------------

class ChangeLike(Protocol):
    """The fields of collector.detect.detector.Change that the evaluation reads."""

    @property
    def kind(self) -> str: ...
    @property
    def start_index(self) -> int: ...
    @property
    def detected_index(self) -> int: ...
    @property
    def confirmed_index(self) -> int | None: ...
    @property
    def resolved_index(self) -> int | None: ...
    @property
    def dismissed(self) -> bool: ...


Detect = Callable[[list[float], Direction], Sequence[ChangeLike]]


@dataclass(frozen=True)
class NaiveChange:
    """The naive baseline's alert, in the detector's Change shape."""

    kind: str
    start_index: int
    detected_index: int
    before: float
    after: float
    relative_change: float
    statistic: float
    confirmed_index: int | None = None
    resolved_index: int | None = None
    dismissed: bool = False


def naive_replay(values: Sequence[float], direction: Direction) -> list[NaiveChange]:
    """Alert when the latest run is worse than the median of the 20 before it by 10 %
    (latest > 1.1 x median; for higher-is-better, latest < median / 1.1). One alert per
    excursion: it re-arms once the condition has cleared (recorded as resolved_index)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) <= NAIVE_WINDOW:
        return []
    medians = np.median(sliding_window_view(x[:-1], NAIVE_WINDOW), axis=1)
    latest = x[NAIVE_WINDOW:]  # latest[j] is run j + 20, medians[j] covers runs j..j+19
    if direction is THROUGHPUT:
        crossed = latest < medians / NAIVE_FACTOR
    else:
        crossed = latest > medians * NAIVE_FACTOR
    edges = np.diff(np.concatenate(([0], crossed.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # first run where the condition has cleared
    changes = []
    for j, end in zip(starts.tolist(), ends.tolist(), strict=True):
        run = j + NAIVE_WINDOW
        before, after = float(medians[j]), float(latest[j])
        changes.append(NaiveChange(
            kind=REGRESSION, start_index=run, detected_index=run, before=before, after=after,
            relative_change=after / before - 1, statistic=after / before,
            confirmed_index=run,
            resolved_index=end + NAIVE_WINDOW if end < len(latest) else None))
    return changes


SOURCE: dict[str, str] = {}  # detector name -> sha256 prefix of its source, as imported here


def _collector(overrides: dict[str, Any]) -> Detect:
    from collector.detect import detector as module
    from collector.detect.detector import replay
    from collector.domain.detection import DetectorSettings

    if "collector" not in SOURCE:  # the module is being written: say which version ran
        digest = hashlib.sha256(Path(module.__file__ or "").read_bytes()).hexdigest()
        SOURCE["collector"] = digest[:12]
    settings = DetectorSettings(**overrides)

    def detect(values: list[float], direction: Direction) -> Sequence[ChangeLike]:
        return replay(values, direction, settings, contaminated=None)

    return detect


def _naive(overrides: dict[str, Any]) -> Detect:  # noqa: ARG001 - it has no settings
    return naive_replay


DETECTORS: dict[str, Callable[[dict[str, Any]], Detect]] = {
    "collector": _collector,
    "naive": _naive,
}


# --- confirmation runs, as the service runs them --------------------------------------------

class OpenEvent(NamedTuple):
    """A change became open (a regression pages; an improvement opens without paging)."""

    run: int  # the cycle: the scheduled run after which it opened
    start: int  # its first run at the new level
    kind: str
    via: str  # "schedule" (the scheduled runs confirmed it) or "confirmation"


@dataclass
class PagingReplay:
    changes: list[Change]  # what the scheduled runs alone found (as replay() returns it)
    events: list[OpenEvent]
    confirmations: int  # cycles that ran confirmation points
    outlier_triggers: int  # ... because the latest run was a worse outlier
    suspicion_triggers: int  # ... because a change was newly suspected


def confirmed_by_points(changes: Sequence[Change], last: int) -> list[Change]:
    """The changes that confirmation points appended after run `last` make open: they start
    in the scheduled runs, are confirmed at a point and are open (scan.confirm_series)."""
    return [c for c in changes if c.start_index <= last and c.confirmed_index is not None
            and c.confirmed_index > last and c.status == "open"]


def replay_paging(values: Sequence[float], direction: Direction, settings: DetectorSettings,
                  points: int, draw: Callable[[int], list[float]]) -> PagingReplay:
    """The detector over the scheduled runs, online, with the service's confirmation runs:
    after run i, when a change is newly suspected or `outlier()` fires on runs 0..i,
    `draw(i)` gives `points` confirmation points and a copy of the detector's state after
    run i (the same as replaying runs 0..i) is fed them as if they were the next runs.
    The points never enter the series: the scheduled detector goes on without them."""
    from collector.detect.detector import Detector, outlier

    detector = Detector(direction, settings)
    # outlier() reads at most this many runs before the latest (no run is contaminated).
    span = max(settings.reference_window, settings.scale_window, settings.min_history)
    events: list[OpenEvent] = []
    confirmations = by_outlier = by_suspicion = 0
    for i, value in enumerate(values):
        detector.push(value)
        if points <= 0:
            continue
        suspected = any(c.detected_index == i and c.status == "suspected"
                        for c in detector.changes)
        fired = outlier(values[max(0, i - span):i + 1], direction, settings) is not None
        if not (suspected or fired):
            continue
        confirmations += 1
        by_outlier += fired
        by_suspicion += suspected
        trial = copy.deepcopy(detector)
        for point in draw(i):
            trial.push(point)
        events += [OpenEvent(i, c.start_index, c.kind, "confirmation")
                   for c in confirmed_by_points(trial.changes, i)]
    changes = detector.changes
    events += [OpenEvent(c.confirmed_index, c.start_index, c.kind, "schedule")
               for c in changes if c.confirmed_index is not None]
    return PagingReplay(changes, events, confirmations, by_outlier, by_suspicion)


def opened(events: Sequence[OpenEvent]) -> list[OpenEvent]:
    """Distinct openings in cycle order: a change of the kind of one already open and
    starting within MATCH_RUNS runs of it is the same record (the service matches stored
    records so), which is open already and does not page again. In one cycle the
    scheduled runs are judged before confirmation points."""
    out: list[OpenEvent] = []
    for event in sorted(events, key=lambda e: (e.run, e.via != "schedule", e.start)):
        if not any(o.kind == event.kind and abs(o.start - event.start) <= MATCH_RUNS
                   for o in out):
            out.append(event)
    return out


# --- scoring one series ---------------------------------------------------------------------

class ChangeOutcome(TypedDict):
    detected_delay: int | None  # first right-kind flag in the window, minus t
    alert_delay: int | None  # confirmed_index - t of the first right-kind confirmed one
    located: bool | None  # |start_index - t| <= 1 for the detected one
    duplicates: int  # right-kind confirmed changes beyond the first, within t..t+60
    resolved: bool | None  # the confirmed one was later auto-resolved (a step does not revert)


class SeriesOutcome(TypedDict):
    runs: int
    alerts: int  # regressions with a confirmed_index, anywhere in the series
    flags: int  # changes of either kind: each one was flagged (suspected) once
    stray_alerts: int  # alerts attributed to no true change and no excursion
    changes: list[ChangeOutcome]
    excursion_alerts: int
    excursion_flagged: bool
    excursion_dismissed: bool
    invalid: int  # changes with impossible indices (a detector bug)


def is_alert(change: ChangeLike) -> bool:
    return change.kind == REGRESSION and change.confirmed_index is not None


def invalid(change: ChangeLike, runs: int) -> bool:
    confirmed, resolved = change.confirmed_index, change.resolved_index
    return (change.kind not in (REGRESSION, IMPROVEMENT)
            or not 0 <= change.detected_index < runs
            or change.start_index > change.detected_index
            or (confirmed is not None and not change.detected_index <= confirmed < runs)
            or (resolved is not None and not change.detected_index <= resolved < runs))


def evaluate(scn: Scenario, found: Sequence[ChangeLike]) -> SeriesOutcome:
    ordered = sorted(found, key=lambda c: c.detected_index)
    attributed: set[int] = set()  # positions in `ordered` of alerts explained by the truth
    truth = scn.truth()
    outcomes: list[ChangeOutcome] = []
    for j, (t, kind) in enumerate(truth):
        nxt = truth[j + 1][0] - 1 if j + 1 < len(truth) else scn.runs
        end = min(t + RECALL_WINDOW, nxt)
        dup_end = min(t + DUPLICATE_WINDOW, nxt)
        window = [c for c in ordered if c.kind == kind and t <= c.detected_index <= end]
        detected = window[0] if window else None
        confirmed = next((c for c in window if c.confirmed_index is not None), None)
        near = [i for i, c in enumerate(ordered) if c.kind == kind
                and c.confirmed_index is not None and t <= c.detected_index <= dup_end]
        if kind == REGRESSION:
            attributed.update(near)
        outcomes.append(ChangeOutcome(
            detected_delay=None if detected is None else detected.detected_index - t,
            alert_delay=(None if confirmed is None or confirmed.confirmed_index is None
                         else confirmed.confirmed_index - t),
            located=(None if detected is None
                     else abs(detected.start_index - t) <= LOCATE_TOLERANCE),
            duplicates=max(0, len(near) - 1),
            resolved=None if confirmed is None else confirmed.resolved_index is not None))
    excursion_alerts, flagged, dismissed = 0, False, False
    if scn.excursion is not None:
        start, length, rel = scn.excursion
        kind = kind_of(scn.direction, rel)
        for i, c in enumerate(ordered):
            if (c.kind == kind and start <= c.detected_index <= start + length + RECALL_WINDOW
                    and start - 2 <= c.start_index <= start + length + 1):
                flagged = True
                dismissed = dismissed or c.dismissed
                if is_alert(c):
                    excursion_alerts += 1
                    attributed.add(i)
    alerts = [i for i, c in enumerate(ordered) if is_alert(c)]
    return SeriesOutcome(
        runs=scn.runs, alerts=len(alerts), flags=len(ordered),
        stray_alerts=sum(1 for i in alerts if i not in attributed), changes=outcomes,
        excursion_alerts=excursion_alerts, excursion_flagged=flagged,
        excursion_dismissed=dismissed,
        invalid=sum(1 for c in ordered if invalid(c, scn.runs)))


class PageScore(TypedDict):
    pages: int  # regressions that became open (distinct records)
    false_pages: int  # of which attributed to no true regression
    delays: list[int | None]  # per true change: first opening of its kind in t..t+30, - t


class PagingOutcome(TypedDict):
    runs: int
    confirmations: int
    outlier_triggers: int
    suspicion_triggers: int
    points: int  # confirmation points spent
    schedule: PageScore  # the scheduled runs alone
    confirmation: PageScore  # with confirmation points (what the service does)


def score_pages(scn: Scenario, events: Sequence[OpenEvent]) -> PageScore:
    """Openings against the truth. A regression opening within t..t+60 of a true regression
    (before the next true change) is its page; every other regression page is false: in a
    null series, before a step, on an excursion or in an improvement's series."""
    found = opened(events)
    truth = scn.truth()
    attributed: set[int] = set()
    delays: list[int | None] = []
    for j, (t, kind) in enumerate(truth):
        nxt = truth[j + 1][0] - 1 if j + 1 < len(truth) else scn.runs
        end, dup_end = min(t + RECALL_WINDOW, nxt), min(t + DUPLICATE_WINDOW, nxt)
        first = next((e for e in found if e.kind == kind and t <= e.run <= end), None)
        delays.append(None if first is None else first.run - t)
        if kind == REGRESSION:
            attributed.update(k for k, e in enumerate(found)
                              if e.kind == kind and t <= e.run <= dup_end)
    pages = [k for k, e in enumerate(found) if e.kind == REGRESSION]
    return PageScore(pages=len(pages), false_pages=sum(k not in attributed for k in pages),
                     delays=delays)


def paging_outcome(scn: Scenario, result: PagingReplay, points: int) -> PagingOutcome:
    scheduled = [e for e in result.events if e.via == "schedule"]
    return PagingOutcome(
        runs=scn.runs, confirmations=result.confirmations,
        outlier_triggers=result.outlier_triggers,
        suspicion_triggers=result.suspicion_triggers, points=result.confirmations * points,
        schedule=score_pages(scn, scheduled), confirmation=score_pages(scn, result.events))


# --- workers --------------------------------------------------------------------------------

# scenario, first series, stop, seed, detectors, settings overrides, confirmation points
# (and for host scenarios: "fresh" or "follow" confirmation noise)
Task = tuple[Scenario, int, int, int, tuple[str, ...], dict[str, Any], int, str]
# scenario name, outcomes per detector, collector paging outcomes, detector source digests
TaskResult = tuple[str, dict[str, list[SeriesOutcome]], list[PagingOutcome], dict[str, str]]


def run_task(task: Task) -> TaskResult:
    """Series start..stop-1 of one scenario, through every selected detector; the collector
    with the service's confirmation runs emulated (`replay_paging`)."""
    from collector.domain.detection import DetectorSettings

    scn, start, stop, seed, names, overrides, points, host_confirm = task
    detectors = {name: DETECTORS[name](overrides) for name in names}
    settings = DetectorSettings(**overrides)
    out: dict[str, list[SeriesOutcome]] = {name: [] for name in names}
    paging: list[PagingOutcome] = []
    for index in range(start, stop):
        values = generate(scn, series_rng(seed, scn.name, index)).tolist()
        # follow: the same draws as generate(), so the recorded position behind every run
        positions = (scn.host.positions(series_rng(seed, scn.name, index), scn.runs)
                     if scn.host is not None and host_confirm == "follow" else None)

        def draw(run: int, index: int = index,
                 positions: NDArray[np.intp] | None = positions) -> list[float]:
            if positions is not None:
                return following_points(scn, positions, run, points)
            return confirmation_points(scn, confirm_rng(seed, scn.name, index, run), run,
                                       points)

        for name, detect in detectors.items():
            try:
                if name == "collector":  # the same changes as replay(), and the pages
                    result = replay_paging(values, scn.direction, settings, points, draw)
                    found: Sequence[ChangeLike] = result.changes
                    paging.append(paging_outcome(scn, result, points))
                else:
                    found = detect(values, scn.direction)
            except Exception as exc:
                raise RuntimeError(f"detector {name!r} failed on {scn.name!r} series {index} "
                                   f"(seed {seed}): {exc!r}") from exc
            out[name].append(evaluate(scn, found))
    return scn.name, out, paging, dict(SOURCE)


def run_all(tasks: list[Task], jobs: int) -> Iterator[TaskResult]:
    if jobs <= 1:
        yield from map(run_task, tasks)
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(jobs) as pool:
        yield from pool.imap_unordered(run_task, tasks)


# --- figures --------------------------------------------------------------------------------

def nearest_rank(values: Sequence[int | None], q: float) -> int | None:
    """Nearest-rank percentile, a miss (None) counting as larger than any delay: None when
    the rank falls on a miss."""
    if not values:
        return None
    finite = sorted(v for v in values if v is not None)
    rank = max(1, math.ceil(q / 100 * len(values)))
    return finite[rank - 1] if rank <= len(finite) else None


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def figures(scn: Scenario, series: list[SeriesOutcome]) -> dict[str, Any]:
    runs = sum(s["runs"] for s in series)
    fig: dict[str, Any] = {
        "series": len(series),
        "runs": runs,
        "alerts": sum(s["alerts"] for s in series),
        "alerts_per_1k_runs": 1000 * sum(s["alerts"] for s in series) / runs,
        "flags_per_1k_runs": 1000 * sum(s["flags"] for s in series) / runs,
        "stray_alerts_per_1k_runs": 1000 * sum(s["stray_alerts"] for s in series) / runs,
        "invalid_changes": sum(s["invalid"] for s in series),
    }
    changes = []
    for j, (t, kind) in enumerate(scn.truth()):
        per = [s["changes"][j] for s in series]
        detected = [o["detected_delay"] for o in per]
        alerted = [o["alert_delay"] for o in per]
        located = [o["located"] for o in per if o["located"] is not None]
        resolved = [o["resolved"] for o in per if o["resolved"] is not None]
        changes.append({
            "t": t,
            "kind": kind,
            "recall_alert": ratio(sum(d is not None for d in alerted), len(per)),
            "recall_detected": ratio(sum(d is not None for d in detected), len(per)),
            "detected_delay_p50": nearest_rank(detected, 50),
            "detected_delay_p90": nearest_rank(detected, 90),
            "alert_delay_p50": nearest_rank(alerted, 50),
            "alert_delay_p90": nearest_rank(alerted, 90),
            "detected": len(located),
            "located_within_1": sum(located),
            "located_fraction": ratio(sum(located), len(located)),
            "duplicates_per_change": ratio(sum(o["duplicates"] for o in per), len(per)),
            "resolved_fraction": ratio(sum(resolved), len(resolved)),
        })
    fig["changes"] = changes
    if scn.excursion is not None:
        flagged = sum(s["excursion_flagged"] for s in series)
        fig["excursion"] = {
            "alerts": sum(s["excursion_alerts"] for s in series),
            "series_alerted": ratio(sum(s["excursion_alerts"] > 0 for s in series),
                                    len(series)),
            "series_flagged": ratio(flagged, len(series)),
            "dismissed_of_flagged": ratio(sum(s["excursion_dismissed"] for s in series),
                                          flagged),
        }
    return fig


def paging_figures(scn: Scenario, series: list[PagingOutcome], points: int) -> dict[str, Any]:
    runs = sum(s["runs"] for s in series)
    fig: dict[str, Any] = {
        "confirm_points": points,
        "confirmations_per_1k_runs": 1000 * sum(s["confirmations"] for s in series) / runs,
        "outlier_triggers_per_1k_runs":
            1000 * sum(s["outlier_triggers"] for s in series) / runs,
        "suspicion_triggers_per_1k_runs":
            1000 * sum(s["suspicion_triggers"] for s in series) / runs,
        "points_per_1k_runs": 1000 * sum(s["points"] for s in series) / runs,
    }
    for mode in ("schedule", "confirmation"):
        scores = [s[mode] for s in series]
        changes = []
        for j, (t, kind) in enumerate(scn.truth()):
            delays = [sc["delays"][j] for sc in scores]
            changes.append({
                "t": t, "kind": kind,
                "paged_within_30": ratio(sum(d is not None for d in delays), len(delays)),
                "delay_p50": nearest_rank(delays, 50),
                "delay_p90": nearest_rank(delays, 90),
                "same_cycle": ratio(sum(d == 0 for d in delays), len(delays)),
            })
        false_pages = sum(sc["false_pages"] for sc in scores)
        fig[mode] = {"pages": sum(sc["pages"] for sc in scores), "false_pages": false_pages,
                     "false_pages_per_1k_runs": 1000 * false_pages / runs,
                     "series_with_false_pages": sum(sc["false_pages"] > 0 for sc in scores),
                     "changes": changes}
    return fig


# --- goals ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Goal:
    name: str
    passed: bool
    detail: str


def fmt_delay(value: int | None) -> str:
    return "miss" if value is None else str(value)


def location_goal(scenarios: list[Scenario], figs: dict[str, dict[str, Any]]) -> Goal:
    # Location is judged where it is physically possible: a step of under about 3 noise
    # sigmas cannot be placed to +-1 run by any method most of the time (the likelihood
    # of neighbouring splits is too flat), so the goal covers steps of 3 sigmas or more;
    # the figure over every step is printed next to it.
    detected, located = [0, 0, 0], [0, 0, 0]  # all; 5 % or more; 3 sigmas or more
    for scn in scenarios:
        if scn.group == "steps":
            change = figs[scn.name]["changes"][0]
            size = abs(scn.steps[0][1])
            groups = [0]
            if size >= 0.05 - 1e-9:
                groups.append(1)
            if size >= 3 * scn.cv - 1e-9:
                groups.append(2)
            for k in groups:
                detected[k] += change["detected"]
                located[k] += change["located_within_1"]
    share, large, clear = (ratio(located[k], detected[k]) for k in range(3))
    return Goal("location, steps of 3 sigmas or more",
                    clear is not None and clear >= LOCATED_GOAL,
                    f"{located[2]} of {detected[2]} detected changes within "
                    f"+-{LOCATE_TOLERANCE} run ({fmt_pct(clear)}%; goal >= "
                    f"{LOCATED_GOAL:.0%}); every step: {located[0]} of {detected[0]} "
                    f"({fmt_pct(share)}%); steps of 5% or more: {located[1]} of "
                    f"{detected[1]} ({fmt_pct(large)}%)")


def goals(scenarios: list[Scenario], figs: dict[str, dict[str, Any]]) -> list[Goal]:
    """The collector detector's goals; figs maps scenario name to its collector figures."""
    out: list[Goal] = []
    for scn in scenarios:
        if scn.group != "null" or scn.noise in ("t3", "drift"):
            continue
        limit = FALSE_ALARM_GOAL_AR1 if scn.noise == "ar1" else FALSE_ALARM_GOAL
        rate = figs[scn.name]["alerts_per_1k_runs"]
        out.append(Goal(f"false alarms, {scn.name}", rate <= limit,
                        f"{rate:.2f} per 1000 runs ({figs[scn.name]['alerts']} alerts; "
                        f"goal <= {limit})"))
    for scn in scenarios:
        rel = scn.steps[0][1] if scn.steps else 0.0
        if scn.group != "steps" or scn.cv != 0.03 or abs(rel) < 0.05 - 1e-9:
            continue
        change = figs[scn.name]["changes"][0]
        # The recall goal is on detection (a suspected change is recorded, shown on
        # dashboards and in the CLI); paging needs more runs, shown next to it.
        recall = change["recall_detected"]
        out.append(Goal(f"recall, {scn.name} ({change['kind']})", recall >= RECALL_GOAL,
                        f"detected {recall:.1%}, confirmed {change['recall_alert']:.1%} "
                        f"within {RECALL_WINDOW} runs (goal >= {RECALL_GOAL:.0%} detected)"))
    for size, (p50_goal, p90_goal) in DELAY_GOALS.items():
        for name in (step_name("latency", size, 0.03), step_name("throughput", -size, 0.03)):
            if name not in figs:
                continue
            c = figs[name]["changes"][0]
            p50, p90 = c["detected_delay_p50"], c["detected_delay_p90"]
            ok = p50 is not None and p90 is not None and p50 <= p50_goal and p90 <= p90_goal
            out.append(Goal(
                f"delay, {name}", ok,
                f"detected median {fmt_delay(p50)}, p90 {fmt_delay(p90)} (goal <= {p50_goal}, "
                f"<= {p90_goal}); alert median {fmt_delay(c['alert_delay_p50'])}, "
                f"p90 {fmt_delay(c['alert_delay_p90'])}"))
    for scn in scenarios:
        if scn.group == "excursions":
            exc = figs[scn.name]["excursion"]
            out.append(Goal(f"no alert, {scn.name}", exc["alerts"] == 0,
                            f"{exc['alerts']} alerts; flagged in {exc['series_flagged']:.1%} "
                            f"of series"))
    if any(scn.group == "steps" for scn in scenarios):
        out.append(location_goal(scenarios, figs))
    return out


def host_goals(scenarios: list[Scenario], figs: dict[str, dict[str, Any]]) -> list[Goal]:
    """The issue's goals on the host noise model, as the service pages (with confirmation
    points, unless --confirm-points 0): no page over null series; a 10 % regression step
    pages in the first bad run's own cycle in >= 90 % of series."""
    out: list[Goal] = []
    for scn in scenarios:
        if scn.group != "host null":
            continue
        page = figs[scn.name]["paging"]
        conf, sched = page["confirmation"], page["schedule"]
        out.append(Goal(
            f"no page, {scn.name}", conf["false_pages"] == 0,
            f"{conf['false_pages']} pages in {figs[scn.name]['runs']} runs "
            f"({conf['false_pages_per_1k_runs']:.2f} per 1000 runs, in "
            f"{conf['series_with_false_pages']} of {figs[scn.name]['series']} series; goal 0); "
            f"schedule alone {sched['false_pages']}; confirmation points "
            f"{page['points_per_1k_runs']:.0f} per 1000 runs"))
    for scn in scenarios:
        if scn.group != "host steps" or abs(abs(scn.steps[0][1]) - HOST_STEP_GOAL) > 1e-9:
            continue
        page = figs[scn.name]["paging"]
        conf, sched = page["confirmation"]["changes"][0], page["schedule"]["changes"][0]
        share = conf["same_cycle"] or 0.0
        out.append(Goal(
            f"same-cycle page, {scn.name}", share >= SAME_CYCLE_GOAL,
            f"paged in the first bad run's cycle in {share:.1%} of series (goal >= "
            f"{SAME_CYCLE_GOAL:.0%}); page delay median {fmt_delay(conf['delay_p50'])}, p90 "
            f"{fmt_delay(conf['delay_p90'])}, paged within {RECALL_WINDOW} runs "
            f"{fmt_pct(conf['paged_within_30'])}%; schedule alone: median "
            f"{fmt_delay(sched['delay_p50'])}, p90 {fmt_delay(sched['delay_p90'])}"))
    return out


# --- output ---------------------------------------------------------------------------------

def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cell(values: Sequence[str]) -> str:
    return " / ".join(values)


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def fmt_num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def change_cells(figs: dict[str, dict[str, Any]], names: Sequence[str], j: int) -> list[str]:
    per = [figs[n]["changes"][j] for n in names]
    return [
        cell([fmt_pct(c["recall_alert"]) for c in per]),
        cell([fmt_pct(c["recall_detected"]) for c in per]),
        cell([f"{fmt_delay(c['detected_delay_p50'])},{fmt_delay(c['detected_delay_p90'])}"
              for c in per]),
        cell([f"{fmt_delay(c['alert_delay_p50'])},{fmt_delay(c['alert_delay_p90'])}"
              for c in per]),
        cell([fmt_pct(c["located_fraction"]) for c in per]),
        cell([fmt_num(c["duplicates_per_change"]) for c in per]),
        cell([fmt_num(figs[n]["stray_alerts_per_1k_runs"]) for n in names]),
    ]


CHANGE_COLUMNS = ("recall alert %", "recall det. %", "det. delay p50,p90", "alert delay p50,p90",
                  "located +-1 %", "dup. alerts /change", "stray alerts /1k runs")
COLUMNS = {
    "null": ("runs", "alerts /1k runs", "flags /1k runs", "invalid"),
    "steps": ("kind", *CHANGE_COLUMNS),
    "excursions": ("alerts", "series alerted %", "series flagged %", "dismissed % of flagged",
                   "stray alerts /1k runs"),
    "two steps": ("kind", *CHANGE_COLUMNS),
}


COLUMNS["host null"] = COLUMNS["null"]
COLUMNS["host steps"] = COLUMNS["steps"]
PAGING_COLUMNS = ("confirmations /1k runs", "points /1k runs", "false pages /1k runs",
                  "paged within 30 %", "page delay p50,p90", "same cycle %")


def table_rows(scn: Scenario, figs: dict[str, dict[str, Any]],
               names: Sequence[str]) -> list[list[str]]:
    """One row per scenario (per true change for the two-step ones); cells hold the
    detectors' figures in --detectors order, separated by slashes."""
    if scn.group in ("null", "host null"):
        return [[scn.name, f"{figs[names[0]]['runs']}",
                 cell([fmt_num(figs[n]["alerts_per_1k_runs"]) for n in names]),
                 cell([fmt_num(figs[n]["flags_per_1k_runs"]) for n in names]),
                 cell([str(figs[n]["invalid_changes"]) for n in names])]]
    if scn.group == "excursions":
        exc = [figs[n]["excursion"] for n in names]
        return [[scn.name, cell([str(e["alerts"]) for e in exc]),
                 cell([fmt_pct(e["series_alerted"]) for e in exc]),
                 cell([fmt_pct(e["series_flagged"]) for e in exc]),
                 cell([fmt_pct(e["dismissed_of_flagged"]) for e in exc]),
                 cell([fmt_num(figs[n]["stray_alerts_per_1k_runs"]) for n in names])]]
    return [[scn.name if len(scn.steps) == 1 else f"{scn.name}: step at {t}", kind,
             *change_cells(figs, names, j)] for j, (t, kind) in enumerate(scn.truth())]


def print_tables(scenarios: list[Scenario], results: dict[str, dict[str, dict[str, Any]]],
                 names: Sequence[str]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    for group in GROUPS:
        members = [s for s in scenarios if s.group == group]
        if not members:
            continue
        table = Table(title=f"{group} ({' / '.join(names)})", box=box.SIMPLE_HEAVY,
                      title_justify="left")
        table.add_column("scenario")
        for column in COLUMNS[group]:
            table.add_column(column, justify="right")
        for scn in members:
            for row in table_rows(scn, results[scn.name], names):
                table.add_row(*row)
        console.print(table)
    if "collector" in names:
        print_paging(console, scenarios, results)
    for name in names:
        count = sum(results[s.name][name]["invalid_changes"] for s in scenarios)
        if count:
            console.print(f"WARNING: {name} reported {count} changes with impossible indices "
                          "(detected outside the series, start after detection, or "
                          "confirmed/resolved before detection)")


def paging_rows(scn: Scenario, page: dict[str, Any]) -> list[list[str]]:
    """Cells read `schedule alone / with confirmation`."""
    sched, conf = page["schedule"], page["confirmation"]
    common = [fmt_num(page["confirmations_per_1k_runs"], 1), fmt_num(page["points_per_1k_runs"], 0),
              cell([fmt_num(sched["false_pages_per_1k_runs"]),
                    fmt_num(conf["false_pages_per_1k_runs"])])]
    if not scn.steps:
        return [[scn.name, *common, "-", "-", "-"]]
    rows = []
    for j, (t, kind) in enumerate(scn.truth()):
        a, b = sched["changes"][j], conf["changes"][j]
        label = scn.name if len(scn.steps) == 1 else f"{scn.name}: step at {t}"
        rows.append([f"{label} ({kind})", *common,
                     cell([fmt_pct(a["paged_within_30"]), fmt_pct(b["paged_within_30"])]),
                     cell([f"{fmt_delay(a['delay_p50'])},{fmt_delay(a['delay_p90'])}",
                           f"{fmt_delay(b['delay_p50'])},{fmt_delay(b['delay_p90'])}"]),
                     cell([fmt_pct(a["same_cycle"]), fmt_pct(b["same_cycle"])])])
    return rows


def print_paging(console: Any, scenarios: list[Scenario],
                 results: dict[str, dict[str, dict[str, Any]]]) -> None:
    from rich import box
    from rich.table import Table

    points = results[scenarios[0].name]["collector"]["paging"]["confirm_points"]
    table = Table(title=f"paging (collector): schedule alone / with {points} confirmation "
                        "points per trigger (improvements open, never page; delay 0 = the "
                        "first bad run's own cycle)",
                  box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("scenario")
    for column in PAGING_COLUMNS:
        table.add_column(column, justify="right")
    for scn in scenarios:
        for row in paging_rows(scn, results[scn.name]["collector"]["paging"]):
            table.add_row(*row)
    console.print(table)


def print_host_models(stats: list[dict[str, Any]], source: Path, document: dict[str, Any],
                      points: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    table = Table(title=f"host noise model: {source} (recorded {document.get('recorded_at')}, "
                        f"{document.get('host_cpu')} CPUs); clean points, logs",
                  box=box.SIMPLE_HEAVY, title_justify="left")
    for column in ("series", "metric", "n (dropped)", "median", "CV %", "lag-1",
                   "sigma succ. diff %", "drift z", "level", "dev. lag-1",
                   "dev. min,max %", "block", "detector noise %",
                   f"MDE sched / {points} points %"):
        table.add_column(column, justify="left" if column in ("series", "metric", "level")
                         else "right")
    for st in stats:
        low, high = st["deviation_range"]
        table.add_row(
            st["series"], st["metric"],
            f"{st['n']} ({st['dropped']}{'' if st['contamination_known'] else ', cpu ?'})",
            f"{st['median']:.6g}", fmt_pct(st["cv"]), f"{st['lag1']:.2f}",
            fmt_pct(st["sigma_diff"]), f"{st['drift_z']:.1f}", st["level"],
            f"{st['deviation_lag1']:.2f}", f"{low * 100:.1f},{high * 100:.1f}",
            str(st["block"]), fmt_pct(st["detector_noise"]),
            cell([fmt_pct(st["mde"]), fmt_pct(st["mde_confirm"])]))
    console.print(table)


def parse_value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), parse_value(raw.strip())


def command_line() -> str:
    exe = Path(sys.executable)
    try:
        shown = str(exe.relative_to(Path.cwd()))
    except ValueError:
        shown = str(exe)
    return shlex.join([shown, *sys.argv])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=None,
                        help=f"series per scenario (default {DEFAULT_SERIES}; "
                             f"{QUICK_SERIES} with --quick)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help="runs per null series")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SERIES} series per scenario, for a fast look")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--detectors", default="collector,naive",
                        help=f"comma-separated, from {', '.join(DETECTORS)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        type=parse_override, metavar="KEY=VALUE",
                        help="DetectorSettings override for collector (repeatable)")
    parser.add_argument("--confirm-points", type=int, default=CONFIRM_POINTS, metavar="K",
                        help="confirmation points per trigger, as the service runs them "
                             f"(default {CONFIRM_POINTS}; 0 = schedule alone)")
    parser.add_argument("--host-noise", default=None, metavar="PATH",
                        help="recorded host noise (benchmarks/e2e_paging.py --record); "
                             "default benchmarks/data/host_noise.json when it exists; "
                             "'none' to leave it out")
    parser.add_argument("--host-metrics", default=",".join(HOST_METRICS),
                        help="recorded metrics to model (comma-separated)")
    parser.add_argument("--host-block", type=int, default=HOST_BLOCK, metavar="L",
                        help="moving-block bootstrap block length, runs")
    parser.add_argument("--host-level", choices=("auto", "median", "rolling"),
                        default="auto",
                        help="what deviations are taken from: the median, a rolling median "
                             f"of {ROLLING_WINDOW} runs, or auto (rolling when the "
                             f"recording drifts, |drift z| >= {DRIFT_Z})")
    parser.add_argument("--host-confirm", choices=("fresh", "follow"), default="fresh",
                        help="host confirmation points: a fresh block of recorded deviations "
                             "(default), or the recorded deviations that follow the run's own "
                             "(a host state that lasts through the points)")
    parser.add_argument("--only", default=None, metavar="TEXT,...",
                        help="only scenarios whose name contains one of these (development)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure here")
    args = parser.parse_args()
    if args.confirm_points < 0 or args.host_block < 1:
        parser.error("--confirm-points must be >= 0, --host-block >= 1")
    if args.host_noise is None:
        args.host_noise = HOST_NOISE if HOST_NOISE.exists() else None
    elif args.host_noise.lower() == "none":
        args.host_noise = None
    else:
        args.host_noise = Path(args.host_noise)
        if not args.host_noise.is_file():
            parser.error(f"--host-noise: no file {args.host_noise}")
    args.host_metrics = tuple(m.strip() for m in args.host_metrics.split(",") if m.strip())
    unknown_metrics = [m for m in args.host_metrics if m not in METRICS]
    if unknown_metrics:
        parser.error(f"--host-metrics: unknown metric(s) {', '.join(unknown_metrics)}")
    if args.series is None:
        args.series = QUICK_SERIES if args.quick else DEFAULT_SERIES
    args.names = tuple(n.strip() for n in args.detectors.split(",") if n.strip())
    unknown = [n for n in args.names if n not in DETECTORS]
    if not args.names or unknown or len(set(args.names)) != len(args.names):
        parser.error(f"--detectors: pick distinct names from {', '.join(DETECTORS)}")
    if args.series < 1 or args.runs < 2 * NAIVE_WINDOW or args.jobs < 1:
        parser.error("--series and --jobs must be >= 1, --runs >= 40")
    args.overrides = dict(args.overrides)
    for name in args.names:  # fail fast: a missing module or an unknown setting
        try:
            DETECTORS[name](args.overrides)
        except (ImportError, TypeError, ValueError) as exc:
            parser.error(f"detector {name!r} cannot be built: {exc}")
    return args


def replay_all(scenarios: list[Scenario], series: int, seed: int, *, names: tuple[str, ...],
               overrides: dict[str, Any], jobs: int, points: int, host_confirm: str,
               sources: dict[str, set[str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Figures per scenario name, per detector name (the collector's with its paging
    figures under "paging"); fills sources with the digests of the detector modules the
    workers ran."""
    from rich.console import Console
    from rich.progress import Progress

    # Long (null) series first, so that the pool's last tasks are short ones.
    order = sorted(scenarios, key=lambda s: -s.runs)
    tasks: list[Task] = [(scn, lo, min(lo + CHUNK, series), seed, names, overrides, points,
                          host_confirm) for scn in order for lo in range(0, series, CHUNK)]
    collected: dict[str, dict[str, list[SeriesOutcome]]] = {
        s.name: {n: [] for n in names} for s in scenarios}
    paging: dict[str, list[PagingOutcome]] = {s.name: [] for s in scenarios}
    with Progress(console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task("replaying", total=len(tasks))
        for scenario, out, pages, source in run_all(tasks, jobs):
            for name, outcomes in out.items():
                collected[scenario][name].extend(outcomes)
            paging[scenario].extend(pages)
            for name, digest in source.items():
                sources.setdefault(name, set()).add(digest)
            progress.advance(bar)
    results = {s.name: {n: figures(s, collected[s.name][n]) for n in names}
               for s in scenarios}
    if "collector" in names:
        for s in scenarios:
            results[s.name]["collector"]["paging"] = paging_figures(s, paging[s.name], points)
    return results


def main() -> int:
    args = parse_args()
    names: tuple[str, ...] = args.names
    overrides: dict[str, Any] = args.overrides
    command = command_line()
    load_start = loadavg()
    started = time.perf_counter()
    scenarios = build_scenarios(args.runs)
    host_stats: list[dict[str, Any]] = []
    host_document: dict[str, Any] = {}
    if args.host_noise is not None:
        from collector.domain.detection import DetectorSettings

        host_document = json.loads(args.host_noise.read_text(encoding="utf-8"))
        models, host_stats = load_host_models(
            args.host_noise, args.host_metrics, block=args.host_block,
            level_mode=args.host_level, confirm_points=args.confirm_points,
            settings=DetectorSettings(**overrides))
        scenarios += host_scenarios(models, args.runs)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        scenarios = [s for s in scenarios if any(w in s.name for w in wanted)]
        if not scenarios:
            raise SystemExit(f"--only {args.only}: no scenario matches")
    sources: dict[str, set[str]] = {}
    results = replay_all(scenarios, args.series, args.seed, names=names, overrides=overrides,
                         jobs=args.jobs, points=args.confirm_points,
                         host_confirm=args.host_confirm, sources=sources)
    source = {name: ",".join(sorted(d)) for name, d in sources.items()}
    wall = time.perf_counter() - started
    load_end = loadavg()

    if args.host_noise is not None:
        print_host_models(host_stats, args.host_noise, host_document, args.confirm_points)
    print_tables(scenarios, results, names)
    collector_figs = {s: r["collector"] for s, r in results.items()} \
        if "collector" in names else {}
    checked = (goals(scenarios, collector_figs) + host_goals(scenarios, collector_figs)
               if "collector" in names else [])
    print()
    if checked:
        print("Goals (collector detector; the naive baseline is informative only):")
        for goal in checked:
            print(f"  {'PASS' if goal.passed else 'FAIL'}  {goal.name}: {goal.detail}")
        failed = sum(not g.passed for g in checked)
        print(f"goals: {len(checked) - failed} passed, {failed} failed")
    else:
        print("Goals apply to the collector detector, which was not selected.")
    print(f"series per scenario {args.series}, null series of {args.runs} runs, change series "
          f"of {CHANGE_RUNS} runs (change at run {STABLE_RUNS}), seed {args.seed}, "
          f"settings overrides {overrides or 'none'}, confirmation points "
          f"{args.confirm_points or 'off'}")
    print("host noise model: " + (
        f"{args.host_noise} ({len(host_stats)} series; block {args.host_block}, level "
        f"{args.host_level}, confirmation noise {args.host_confirm})"
        if args.host_noise is not None else "none"))
    for name, digests in sources.items():
        print(f"{name} detector source sha256 {source[name]}"
              + (" (CHANGED during the run: figures mix versions)" if len(digests) > 1 else ""))
    print(f"wall time {wall:.1f} s with {args.jobs} job(s); load average (1/5/15 min): "
          f"start {load_start}, end {load_end}")
    print(f"command: {command}")
    if args.json is not None:
        document = {
            "benchmark": "detection_quality",
            "command": command,
            "seed": args.seed,
            "series": args.series,
            "null_runs": args.runs,
            "change_runs": CHANGE_RUNS,
            "detectors": list(names),
            "overrides": overrides,
            "confirm_points": args.confirm_points,
            "host_noise": None if args.host_noise is None else {
                "path": str(args.host_noise), "recorded_at": host_document.get("recorded_at"),
                "host_cpu": host_document.get("host_cpu"), "block": args.host_block,
                "level": args.host_level, "confirmation_noise": args.host_confirm,
                "models": host_stats},
            "detector_source_sha256": source,
            "wall_s": wall,
            "jobs": args.jobs,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "scenarios": [{"name": s.name, "group": s.group, "direction": s.direction.value,
                           "cv": s.cv, "noise": s.noise, "runs": s.runs,
                           "steps": [list(x) for x in s.steps],
                           "excursion": None if s.excursion is None else list(s.excursion),
                           "host": None if s.host is None else {"series": s.host.series,
                                                                "metric": s.host.metric},
                           "figures": results[s.name]} for s in scenarios],
            "goals": [{"name": g.name, "passed": g.passed, "detail": g.detail}
                      for g in checked],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 1 if any(not g.passed for g in checked) else 0


if __name__ == "__main__":
    raise SystemExit(main())
