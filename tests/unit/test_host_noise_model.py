"""benchmarks/detection_quality.py: the host noise model (a moving-block bootstrap of a
recorded series) and the emulation of the service's confirmation runs."""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from collector.detect.detector import Detector, replay
from collector.domain.catalogue import Direction
from collector.domain.detection import DetectorSettings

LOWER = Direction.LOWER_IS_BETTER
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "detection_quality.py"


@pytest.fixture(scope="module")
def dq() -> ModuleType:
    spec = importlib.util.spec_from_file_location("detection_quality", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def noisy(n: int, cv: float = 0.03, level: float = 1.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + cv * rng.gauss(0, 1)) for _ in range(n)]


def recording(path: Path, series: dict[str, list[float]],
              fractions: list[float | None] | None = None) -> Path:
    n = len(next(iter(series.values())))
    document = {"recorded_at": "2026-01-01T00:00:00+00:00", "host_cpu": 2, "series": {
        name: {"series_id": name, "task": "text-classification",
               "metrics": {"latency_p50_seconds": values, "peak_rss_bytes": [1e8] * n},
               "other_cpu_fraction": fractions or [None] * n}
        for name, values in series.items()}}
    path.write_text(json.dumps(document))
    return path


def test_bootstrap_resamples_recorded_blocks(dq: ModuleType) -> None:
    deviations = tuple(float(i) for i in range(40))  # each value names its position
    model = dq.HostModel("s", "latency_p50_seconds", 1.0, deviations, 8)
    drawn = model.sample(np.random.default_rng(0), 100)
    assert len(drawn) == 100 and set(drawn.tolist()) <= set(deviations)
    for k in range(0, 96, 8):  # within a block the recorded order is kept
        assert np.all(np.diff(drawn[k:k + 8]) == 1)
    again = model.sample(np.random.default_rng(0), 100)
    assert np.array_equal(drawn, again)


def test_host_series_scale_nothing(dq: ModuleType) -> None:
    model = dq.HostModel("s", "latency_p50_seconds", 0.002, (-0.1, 0.0, 0.05, 0.2), 2)
    scn = dq.Scenario("host s null", "host null", LOWER, 50, "host", host=model)
    values = dq.generate(scn, np.random.default_rng(1))
    logs = set(np.round(np.log(values / 0.002), 12).tolist())
    assert logs <= {-0.1, 0.0, 0.05, 0.2}
    step = dq.Scenario("host s +10%", "host steps", LOWER, 50, "host", steps=((25, 0.10),),
                       host=model)
    stepped = dq.generate(step, np.random.default_rng(1))
    assert np.allclose(stepped[:25], values[:25]) and np.allclose(stepped[25:],
                                                                  values[25:] * 1.1)


def test_load_drops_contaminated_and_picks_the_level(dq: ModuleType, tmp_path: Path) -> None:
    flat = noisy(60, 0.02, 0.002, seed=3)
    drifting = [v * (1 + 0.3 * i / 60) for i, v in enumerate(noisy(60, 0.02, 0.002, seed=4))]
    fractions: list[float | None] = [None] * 60
    fractions[5] = 0.9  # another process took the CPU: the detector skips it
    path = recording(tmp_path / "noise.json", {"flat": flat, "drift": drifting}, fractions)
    models, stats = dq.load_host_models(path, ["latency_p50_seconds"], block=8,
                                        level_mode="auto", confirm_points=6,
                                        settings=DetectorSettings())
    by_name = {s["series"]: s for s in stats}
    assert [m.series for m in models] == ["drift", "flat"]
    assert by_name["flat"]["n"] == 59 and by_name["flat"]["dropped"] == 1
    assert by_name["flat"]["level"] == "median"
    assert by_name["drift"]["level"].startswith("rolling") and by_name["drift"]["drift_z"] > 3
    flat_model = next(m for m in models if m.series == "flat")
    clean = [v for i, v in enumerate(flat) if i != 5]
    assert flat_model.level == pytest.approx(float(np.median(clean)))
    assert np.allclose(np.exp(flat_model.deviations) * flat_model.level, clean)
    forced, _ = dq.load_host_models(path, ["latency_p50_seconds"], block=8,
                                    level_mode="median", confirm_points=6,
                                    settings=DetectorSettings())
    drift_model = next(m for m in forced if m.series == "drift")
    logs = np.log([v for i, v in enumerate(drifting) if i != 5])
    assert np.ptp(logs - np.array(drift_model.deviations)) < 1e-12  # one level: the median


def test_confirmation_points_see_the_level_at_the_run(dq: ModuleType) -> None:
    step = dq.Scenario("s", "steps", LOWER, 160, cv=0.0, steps=((100, 0.2),))
    rng = np.random.default_rng(0)
    assert dq.confirmation_points(step, rng, 99, 3) == pytest.approx([1.0] * 3)
    assert dq.confirmation_points(step, rng, 100, 3) == pytest.approx([1.2] * 3)
    excursion = dq.Scenario("e", "excursions", LOWER, 160, cv=0.0, excursion=(100, 2, 0.2))
    # points run between run i and run i+1: they see an excursion that goes on past run i
    assert dq.level_at(excursion, 100) == pytest.approx(1.2)
    assert dq.level_at(excursion, 101) == pytest.approx(1.0)
    one_run = dq.Scenario("e1", "excursions", LOWER, 160, cv=0.0, excursion=(100, 1, 0.2))
    assert dq.level_at(one_run, 100) == pytest.approx(1.0)


def test_a_copy_of_the_state_is_the_replay_of_the_prefix() -> None:
    values = noisy(100, seed=5) + noisy(40, level=1.15, seed=6)
    points = noisy(6, level=1.15, seed=7)
    detector = Detector(LOWER, DetectorSettings())
    for i, value in enumerate(values):
        detector.push(value)
        if i % 7 and i < 100:
            continue
        trial = copy.deepcopy(detector)
        for point in points:
            trial.push(point)
        assert trial.changes == replay(values[:i + 1] + points, LOWER)


def test_a_step_pages_in_its_first_cycle_with_confirmation(dq: ModuleType) -> None:
    values = noisy(100, cv=0.01, seed=8) + noisy(60, cv=0.01, level=1.2, seed=9)
    rng = random.Random(10)

    def draw(i: int) -> list[float]:
        level = 1.2 if i >= 100 else 1.0
        return [level * (1 + 0.01 * rng.gauss(0, 1)) for _ in range(6)]

    result = dq.replay_paging(values, LOWER, DetectorSettings(), 6, draw)
    assert result.changes == replay(values, LOWER)  # the schedule is not touched
    scn = dq.Scenario("s", "steps", LOWER, 160, cv=0.01, steps=((100, 0.2),))
    score = dq.score_pages(scn, result.events)
    assert score["delays"] == [0] and score["false_pages"] == 0
    scheduled = dq.score_pages(scn, [e for e in result.events if e.via == "schedule"])
    assert scheduled["delays"][0] is not None and scheduled["delays"][0] > 0
    assert score["pages"] == 1  # the scheduled confirmation later is the same record
    assert result.confirmations >= 1 and result.outlier_triggers >= 1


def test_a_burst_at_the_old_level_does_not_page(dq: ModuleType) -> None:
    values = noisy(120, seed=11)
    values[80] *= 1.5  # one slow run: an outlier, and the points are back at the old level
    rng = random.Random(12)
    result = dq.replay_paging(values, LOWER, DetectorSettings(), 6,
                              lambda _i: [1 + 0.03 * rng.gauss(0, 1) for _ in range(6)])
    assert result.outlier_triggers >= 1
    assert not [e for e in result.events if e.kind == "regression"]


def test_one_record_pages_once(dq: ModuleType) -> None:
    event = dq.OpenEvent
    events = [event(105, 100, "regression", "schedule"),
              event(100, 101, "regression", "confirmation"),
              event(103, 100, "regression", "confirmation"),
              event(101, 103, "improvement", "confirmation"),
              event(130, 120, "regression", "confirmation")]
    found = dq.opened(events)
    assert [(e.run, e.start, e.kind) for e in found] == [
        (100, 101, "regression"), (101, 103, "improvement"), (130, 120, "regression")]
    scn = dq.Scenario("s", "steps", LOWER, 160, steps=((100, 0.1),))
    assert dq.score_pages(scn, events) == {"pages": 2, "false_pages": 0, "delays": [0]}
    null = dq.Scenario("n", "null", LOWER, 160)
    assert dq.score_pages(null, events)["false_pages"] == 2


def test_follow_points_continue_the_recording(dq: ModuleType) -> None:
    deviations = tuple(0.01 * i for i in range(20))
    model = dq.HostModel("s", "latency_p50_seconds", 2.0, deviations, 5)
    scn = dq.Scenario("host s +10%", "host steps", LOWER, 60, "host", steps=((30, 0.10),),
                      host=model)
    values = dq.generate(scn, dq.series_rng(0, scn.name, 3))
    positions = model.positions(dq.series_rng(0, scn.name, 3), scn.runs)
    level = np.where(np.arange(60) >= 30, 2.2, 2.0)
    assert np.allclose(values, level * np.exp(np.asarray(deviations)[positions]))
    points = dq.following_points(scn, positions, 40, 3)
    after = [deviations[(int(positions[40]) + k) % 20] for k in (1, 2, 3)]
    assert points == pytest.approx([2.2 * np.exp(d) for d in after])
