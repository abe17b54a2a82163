"""Run the detector over stored history and keep the regressions table current.

Runs after every stored run (for the series in it) and on demand
(`collector regressions scan`). Each (series, metric) is replayed online over its latest
`history_runs` results, after its newest baseline, on the hardware of its latest run (a
host whose hardware changed starts a new segment: results from different hardware are
never compared), without contaminated runs. What the replay finds is reconciled with what
is stored: a change is the same change when it starts within two runs of a stored one;
user decisions (acknowledged, expected) are kept; final states are never reopened.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Literal

from collector.adapters.config import DetectionSettings
from collector.detect import outputs
from collector.detect.attribution import describe, environment_diff, hardware_key
from collector.detect.detector import Change, detectable, noise_estimate, outlier, replay
from collector.domain.catalogue import BUSY_CPU_FRACTION, METRICS, Direction, Profile
from collector.domain.detection import DetectorSettings, settings_for
from collector.domain.history import (
    ACTIVE_STATUSES,
    Baseline,
    DetectionState,
    Regression,
    RunPoint,
    Store,
)

METHOD = "robust-tail-z/1"
_MATCH_RUNS = 2  # a detected change within this many runs of a stored one is the same


@dataclass(frozen=True)
class ScanSettings:
    history_runs: int = 250
    # A run is contaminated when other processes used this share of the CPU time while it
    # measured (the noise probe).
    contaminated_cpu_fraction: float = BUSY_CPU_FRACTION
    detector: DetectorSettings | None = None  # time and rate metrics; memory has its own
    min_effect: dict[str, float] = field(default_factory=dict)  # metric or "default"
    confirm_points: int = 6  # confirmation points run for a suspicion (for the MDE)

    @classmethod
    def from_config(cls, detection: DetectionSettings) -> ScanSettings:
        """The config file's `detection:` section."""
        return cls(history_runs=detection.history_runs,
                   contaminated_cpu_fraction=detection.contaminated_cpu_fraction,
                   min_effect=dict(detection.min_effect),
                   confirm_points=detection.confirmation.points)

    def for_metric(self, metric: str) -> DetectorSettings:
        chosen = settings_for(metric, self.detector)
        effect = self.min_effect.get(metric, self.min_effect.get("default"))
        return chosen if effect is None else replace(chosen, min_effect=effect)


@dataclass(frozen=True)
class Trigger:
    """The latest run of a series' metric is a worse outlier: confirmation runs decide."""

    series_id: str
    metric: str
    statistic: float
    relative_change: float


@dataclass
class ScanReport:
    series: int = 0
    metrics: int = 0
    new: list[Regression] = field(default_factory=list)
    changed: list[Regression] = field(default_factory=list)  # status changed
    triggers: list[Trigger] = field(default_factory=list)


def regression_id(series_id: str, metric: str, kind: str, start_run_id: str) -> str:
    text = f"{series_id}:{metric}:{kind}:{start_run_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scan(store: Store, *, series_ids: Iterable[str] | None = None,
         settings: ScanSettings | None = None) -> ScanReport:
    config = settings or ScanSettings()
    wanted = set(series_ids) if series_ids is not None else None
    report = ScanReport()
    for info in store.list_series():
        if wanted is not None and info.series_id not in wanted:
            continue
        report.series += 1
        _scan_series(store, info.series_id, config, report)
    return report


def _segment(runs: list[RunPoint]) -> list[RunPoint]:
    """The trailing runs on the same hardware as the latest one."""
    if not runs:
        return []
    key = hardware_key(runs[-1])
    start = len(runs)
    while start > 0 and hardware_key(runs[start - 1]) == key:
        start -= 1
    return runs[start:]


def _windows(store: Store, series_id: str, config: ScanSettings) -> Iterator[_Window]:
    """What the detector sees of each detectable metric of a series: its scheduled runs on
    the latest hardware, after the metric's newest baseline; a run that other processes
    disturbed is set aside for the metrics they can move (drift_prone)."""
    history = store.series_history(series_id, config.history_runs)
    runs = _segment(history.runs)
    since: dict[str, datetime] = {}
    for baseline in store.baselines(series_id):
        if baseline.metric not in since or baseline.since > since[baseline.metric]:
            since[baseline.metric] = baseline.since
    for metric, by_run in sorted(history.values.items()):
        if not detectable(metric):
            continue
        start = since.get(metric)
        points = [r for r in runs if r.run_id in by_run and (start is None or r.time >= start)]
        if not points:
            continue
        # Another process's CPU use moves time and rates, not instruction counts or memory.
        contaminated = [drift_prone(metric) and r.other_cpu_fraction is not None
                        and r.other_cpu_fraction >= config.contaminated_cpu_fraction
                        for r in points]
        yield _Window(series_id, metric, points, [by_run[r.run_id] for r in points],
                      contaminated)


def _scan_series(store: Store, series_id: str, config: ScanSettings,
                 report: ScanReport) -> None:
    stored = store.regressions(series_id=series_id)
    states: list[DetectionState] = []
    for window in _windows(store, series_id, config):
        report.metrics += 1
        if METRICS[window.metric].profile is Profile.OUTPUTS:
            _outputs_changed(store, window, stored, report)
            continue
        metric, values, contaminated = window.metric, window.values, window.contaminated
        changes = replay(values, METRICS[metric].direction,
                         config.for_metric(metric), contaminated=contaminated)
        mine = [r for r in stored if r.metric == metric]
        _reconcile(store, window, changes, mine, report)
        found = outlier(values, METRICS[metric].direction, config.for_metric(metric),
                        contaminated=contaminated)
        if found is not None and not _explained(store, window, config):
            report.triggers.append(Trigger(series_id, metric, *found))
        clean = [v for v, bad in zip(values, contaminated, strict=True) if not bad]
        estimate = noise_estimate(clean, config.for_metric(metric),
                                  confirm_points=config.confirm_points)
        if estimate is not None:
            states.append(DetectionState(series_id, metric, estimate.runs, estimate.noise,
                                         estimate.min_detectable_effect,
                                         estimate.confirm_min_detectable_effect))
    store.save_detection_states(states)


def _explained(store: Store, window: _Window, config: ScanSettings) -> bool:
    """An active change already explains the latest (worse) run: it sits at that change's
    new level. Its record is judged and resolved by the detector; asking for points again
    at every run after a step would cost ~20 confirmation cycles per step
    (benchmarks/detection_quality.py). A further, larger step is not explained."""
    sign = 1 if METRICS[window.metric].direction is Direction.LOWER_IS_BETTER else -1
    effect = config.for_metric(window.metric).min_effect
    latest = window.values[-1]
    for record in store.regressions(("open", "acknowledged"), series_id=window.series_id,
                                    metric=window.metric):
        if record.kind == "improvement" or record.after_value <= 0 or latest <= 0:
            continue
        if sign * math.log(latest / record.after_value) < math.log1p(effect):
            return True
    return False


@dataclass(frozen=True)
class _Window:
    """What the detector saw of one series' metric."""

    series_id: str
    metric: str
    points: list[RunPoint]
    values: list[float]
    contaminated: list[bool]


def _reconcile(store: Store, window: _Window, changes: list[Change],
               stored: list[Regression], report: ScanReport) -> None:
    points = window.points
    position = {p.run_id: i for i, p in enumerate(points)}
    matched: set[str] = set()
    for change in changes:
        record = _match(change, stored, position)
        if record is not None and _relocated(record, change, position):
            matched.add(record.regression_id)
            gone = _superseded(record, points[change.start_index].run_id)
            store.save_regression(gone)
            report.changed.append(gone)
            record = None
        if record is not None:
            matched.add(record.regression_id)
            updated = _update(record, change, points)
            if change.confirmed_index is None and updated.status in ("open", "acknowledged"):
                # Confirmed by confirmation points while the scheduled runs alone have not
                # confirmed it (a suspicion, or an excursion): it resolves the way an
                # unmatched change does, when the latest runs are back at the old level.
                updated = _unmatched(updated, window) or updated
            if updated != record:
                store.save_regression(updated)
                if updated.status != record.status:
                    report.changed.append(updated)
        elif change.status in ("suspected", "open") or (
                change.status == "resolved" and change.confirmed_index is not None):
            created = _record(window, change)
            store.save_regression(created)
            report.new.append(created)
    for record in stored:
        if record.regression_id in matched or record.status not in ACTIVE_STATUSES:
            continue
        final = _unmatched(record, window)
        if final is not None:
            store.save_regression(final)
            report.changed.append(final)


def _same_kind(record: Regression, change: Change) -> bool:
    """A regression the scan classified as host drift is still the detector's regression."""
    return record.kind == change.kind or (record.kind == "host_drift"
                                          and change.kind == "regression")


def _match(change: Change, stored: list[Regression],
           position: dict[str, int]) -> Regression | None:
    """The stored record of this change: the same kind, starting within _MATCH_RUNS runs;
    the nearest start first, then an active record before a closed one."""
    best: tuple[int, bool] | None = None
    found: Regression | None = None
    for record in stored:
        at = position.get(record.start_run_id)
        if not _same_kind(record, change) or at is None:
            continue
        rank = (abs(at - change.start_index), record.status not in ACTIVE_STATUSES)
        if rank[0] <= _MATCH_RUNS and (best is None or rank < best):
            best, found = rank, record
    return found


def _relocated(record: Regression, change: Change, position: dict[str, int]) -> bool:
    """A suspicion whose change now starts at another run (the detector places the start
    again when it confirms; a larger step can overtake a small one). The record is made
    again at the new start, so that its attribution is that run's: a slowdown two runs
    after a noise suspicion is not host drift. A record that paged keeps its start."""
    return record.status == "suspected" and position.get(
        record.start_run_id) != change.start_index


def _superseded(record: Regression, start_run_id: str) -> Regression:
    return replace(record, status="dismissed",
                   note=f"superseded: the change starts at run {start_run_id}")


def _record(window: _Window, change: Change) -> Regression:
    series_id, metric, points = window.series_id, window.metric, window.points
    contaminated = window.contaminated
    first_bad = points[change.start_index]
    good = [i for i in range(change.start_index) if not contaminated[i]]
    last_good = points[good[-1]] if good else None
    diff = environment_diff(last_good, first_bad)
    kind: Literal["regression", "improvement", "host_drift"] = change.kind
    if kind == "regression" and not diff and drift_prone(metric):
        kind = "host_drift"  # nothing of ours changed: the host did (a warning, no page)
    base = Regression(
        regression_id=regression_id(series_id, metric, change.kind, first_bad.run_id),
        series_id=series_id, metric=metric, kind=kind, status="suspected",
        start_run_id=first_bad.run_id, start_time=first_bad.time,
        last_good_run_id=last_good.run_id if last_good else None,
        last_good_time=last_good.time if last_good else None,
        detected_run_id=points[change.detected_index].run_id,
        detected_at=points[change.detected_index].time, confirmed_at=None,
        before_value=change.before, after_value=change.after,
        relative_change=change.relative_change, statistic=change.statistic,
        p_value=change.p_value, method=METHOD, environment_diff=diff,
        attribution=describe(diff))
    return _update(base, change, points)


def _outputs_changed(store: Store, window: _Window, stored: list[Regression],
                     report: ScanReport) -> None:
    """Record each step of an output-drift metric as an open "outputs changed" record,
    attributed like a regression. Deterministic, so confirmed by the run that shows it;
    it stays open until someone acknowledges it or accepts it as the baseline."""
    definition = METRICS[window.metric]
    known = {r.regression_id for r in stored}
    points, values = window.points, window.values
    for index in outputs.changes(values, definition.direction, definition.tolerance):
        first_bad, last_good = points[index], points[index - 1]
        record_id = regression_id(window.series_id, window.metric, "outputs_changed",
                                  first_bad.run_id)
        if record_id in known:
            continue
        before, after = values[index - 1], values[index]
        diff = environment_diff(last_good, first_bad)
        created = Regression(
            regression_id=record_id, series_id=window.series_id, metric=window.metric,
            kind="outputs_changed", status="open", start_run_id=first_bad.run_id,
            start_time=first_bad.time, last_good_run_id=last_good.run_id,
            last_good_time=last_good.time, detected_run_id=first_bad.run_id,
            detected_at=first_bad.time, confirmed_at=first_bad.time, before_value=before,
            after_value=after,
            relative_change=outputs.relative_step(before, after, definition.tolerance),
            statistic=abs(after - before) / definition.tolerance, p_value=None,
            method=outputs.METHOD, environment_diff=diff, attribution=describe(diff))
        store.save_regression(created)
        report.new.append(created)


def drift_prone(metric: str) -> bool:
    """Metrics a host can move by itself (time and rates); not memory or instructions,
    which only change when the work changes."""
    return METRICS[metric].profile.drift_prone


def _dismissed_by_confirmation(record: Regression) -> bool:
    return record.status == "dismissed" and (record.confirmation or {}).get(
        "verdict") == "dismissed"


def _update(record: Regression, change: Change, points: list[RunPoint]) -> Regression:
    """Carry the detector's view into a stored record, keeping user decisions. A suspicion
    that confirmation runs dismissed is opened again when the scheduled runs alone confirm
    it later (confirmation runs are few; the schedule has the last word)."""
    if _dismissed_by_confirmation(record) and change.status == "open":
        record = replace(record, status="suspected")
    if record.status in ("expected", "resolved", "dismissed"):
        return record
    status = record.status
    confirmed_at = record.confirmed_at
    resolved_at, resolved_run = record.resolved_at, record.resolved_run_id
    if change.confirmed_index is not None and confirmed_at is None:
        confirmed_at = points[change.confirmed_index].time
    if change.status == "resolved" and change.resolved_index is not None:
        status = "resolved"
        resolved_at = points[change.resolved_index].time
        resolved_run = points[change.resolved_index].run_id
    elif change.status == "dismissed":
        status = "dismissed" if record.status == "suspected" else record.status
    elif change.status == "open" and record.status == "suspected":
        status = "open"
    return replace(record, status=status, confirmed_at=confirmed_at,
                   after_value=change.after, relative_change=change.relative_change,
                   resolved_at=resolved_at, resolved_run_id=resolved_run)


def _unmatched(record: Regression, window: _Window) -> Regression | None:
    """A stored active change the replay no longer finds: a suspicion is dropped; a
    confirmed one resolves only when the latest runs are back at the old level (its
    before-level may have left the replayed window)."""
    if record.status == "suspected":
        return replace(record, status="dismissed")
    points, values, contaminated = window.points, window.values, window.contaminated
    clean = [i for i in range(len(points)) if not contaminated[i]]
    if len(clean) < 3 or record.before_value <= 0 or record.after_value <= 0:
        return None
    mid = 0.5 * (math.log(record.before_value) + math.log(record.after_value))
    sign = 1 if record.after_value > record.before_value else -1
    last = clean[-3:]
    if points[last[0]].time <= record.start_time:
        return None
    if all((math.log(values[i]) - mid) * sign < 0 for i in last):
        return replace(record, status="resolved", resolved_at=points[last[-1]].time,
                       resolved_run_id=points[last[-1]].run_id)
    return None


def confirm_series(store: Store, series_id: str, extra: dict[str, list[float]], *,
                   settings: ScanSettings | None = None,
                   now: datetime | None = None) -> list[Regression]:
    """Judge a series with confirmation points: for every metric, the detector replays the
    scheduled runs with the points appended as if they were the next runs.

    - A change that starts in the scheduled runs and that the points complete the proof of
      is confirmed: open now (a record is made when the scan had none, e.g. when one
      outlying run asked for confirmation).
    - A stored suspicion the points do not confirm is dismissed when most of them sit back
      at the old level (a burst of noise), and stays suspected otherwise (inconclusive).

    The points are evidence only, never points of the series. Returns the records saved."""
    config = settings or ScanSettings()
    when = now or datetime.now(timezone.utc)
    stored = store.regressions(series_id=series_id)
    saved: list[Regression] = []
    for window in _windows(store, series_id, config):
        points = extra.get(window.metric) or []
        if not points:
            continue
        n = len(window.values)
        changes = replay(window.values + points, METRICS[window.metric].direction,
                         config.for_metric(window.metric),
                         contaminated=window.contaminated + [False] * len(points))
        position = {p.run_id: i for i, p in enumerate(window.points)}
        mine = [r for r in stored if r.metric == window.metric]
        evidence: dict[str, object] = {"points": len(points), "values": list(points)}
        judged: set[str] = set()
        for change in changes:
            if change.start_index >= n or change.confirmed_index is None or (
                    change.confirmed_index < n) or change.status != "open":
                continue
            record = _match(change, mine, position)
            if record is not None and record.status not in ("suspected", "dismissed"):
                continue  # already open, acknowledged or decided by a person
            if record is not None and _relocated(record, change, position):
                moved = _superseded(record, window.points[change.start_index].run_id)
                store.save_regression(moved)
                saved.append(moved)
                judged.add(moved.regression_id)
                record = None
            if record is None:
                # detected and confirmed within the points: the scheduled runs name it
                record = _record(window, replace(
                    change, detected_index=min(change.detected_index, n - 1),
                    confirmed_index=None))
            done = replace(record, status="open", confirmed_at=record.confirmed_at or when,
                           after_value=change.after, relative_change=change.relative_change,
                           statistic=change.statistic, p_value=change.p_value,
                           confirmation={**evidence, "verdict": "confirmed",
                                         "relative_change": change.relative_change,
                                         "statistic": change.statistic})
            store.save_regression(done)
            saved.append(done)
            judged.add(done.regression_id)
        for record in mine:
            if record.status != "suspected" or record.regression_id in judged:
                continue
            seen = next((c for c in changes if _match(c, [record], position)), None)
            gone = seen is None or seen.status == "dismissed"
            verdict = "dismissed" if gone or _back_at_old_level(record, points) else (
                "inconclusive")
            done = replace(record, status="dismissed" if verdict == "dismissed" else "suspected",
                           confirmation={**evidence, "verdict": verdict})
            store.save_regression(done)
            saved.append(done)
    return saved


def _back_at_old_level(record: Regression, extra: list[float]) -> bool:
    """Most confirmation points sit on the old side of the line halfway between the two
    levels: what raised the suspicion has passed (a burst of noise)."""
    if record.before_value <= 0 or record.after_value <= 0:
        return False
    mid = 0.5 * (math.log(record.before_value) + math.log(record.after_value))
    sign = 1 if record.after_value > record.before_value else -1
    back = sum((math.log(v) - mid) * sign < 0 for v in extra if v > 0)
    return back * 2 > len(extra)


def accept_as_baseline(store: Store, series_id: str, metric: str, *,
                       reason: str | None = None) -> tuple[Baseline, list[Regression]]:
    """Mark a series' metric as changed on purpose: its active changes become expected and
    detection restarts from the newest one's first run (or from the latest run)."""
    active = [r for r in store.regressions(ACTIVE_STATUSES, series_id=series_id,
                                           metric=metric)]
    history = store.series_history(series_id, 1)
    if active:
        newest = max(active, key=lambda r: r.start_time)
        since, run_id = newest.start_time, newest.start_run_id
    elif history.runs:
        since, run_id = history.runs[-1].time, history.runs[-1].run_id
    else:
        raise LookupError(f"series {series_id} has no results")
    baseline = Baseline(series_id, metric, since, run_id, reason)
    store.add_baseline(baseline)
    expected = [replace(r, status="expected", note=reason or r.note) for r in active]
    for record in expected:
        store.save_regression(record)
    return baseline, expected
