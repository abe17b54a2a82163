from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from collector.adapters.measure.measure import measure
from collector.domain.model import MeasurementSettings


class FakeClock:
    """A clock the fake step advances: each step 'takes' the next duration."""

    def __init__(self, durations: Callable[[], int]) -> None:
        self.now = 0
        self.durations = durations

    def __call__(self) -> int:
        return self.now

    def step(self) -> None:
        self.now += self.durations()


def test_stops_once_the_median_is_stable() -> None:
    rng = random.Random(1)
    clock = FakeClock(lambda: int(rng.gauss(1_000_000, 10_000)))  # 1 ms, 1% noise
    settings = MeasurementSettings(warmup_iterations=2, min_iterations=10, min_duration_s=0.0,
                                   max_duration_s=60, target_rel_ci=0.005)
    measured = measure(clock.step, settings, clock=clock)
    assert measured.info is not None
    assert measured.info.converged
    assert measured.info.stop_reason == "converged"
    assert measured.info.achieved_rel_ci is not None
    assert measured.info.achieved_rel_ci <= 0.005
    assert len(measured.samples_ns) == measured.info.iterations
    assert 10 <= measured.info.iterations < 200


def test_respects_min_iterations_and_min_duration() -> None:
    clock = FakeClock(lambda: 1_000_000)  # perfectly stable: would converge at once
    settings = MeasurementSettings(warmup_iterations=0, min_iterations=25, min_duration_s=0.05,
                                   max_duration_s=10)
    measured = measure(clock.step, settings, clock=clock)
    assert measured.info is not None and measured.info.converged
    assert measured.info.iterations >= 50  # 50 x 1 ms reaches the minimum duration


def test_noisy_steps_stop_at_max_duration_and_say_so() -> None:
    rng = random.Random(2)
    clock = FakeClock(lambda: int(rng.expovariate(1.0) * 1_000_000) + 1)
    settings = MeasurementSettings(warmup_iterations=0, min_iterations=5, min_duration_s=0,
                                   max_duration_s=0.05, target_rel_ci=0.001)
    measured = measure(clock.step, settings, clock=clock)
    assert measured.info is not None
    assert not measured.info.converged
    assert measured.info.stop_reason == "max_duration"
    assert measured.info.achieved_rel_ci is not None
    assert measured.info.achieved_rel_ci > 0.001
    assert sum(measured.samples_ns) >= 50_000_000


def test_max_iterations_caps_the_loop() -> None:
    rng = random.Random(4)
    clock = FakeClock(lambda: rng.randint(1_000, 3_000))
    settings = MeasurementSettings(warmup_iterations=0, min_iterations=5, max_iterations=12,
                                   min_duration_s=0, max_duration_s=10, target_rel_ci=1e-6)
    measured = measure(clock.step, settings, clock=clock)
    assert measured.info is not None
    assert measured.info.iterations == 12
    assert measured.info.stop_reason == "max_iterations"


def test_warmup_is_not_timed_and_payloads_are_kept() -> None:
    calls = itertools.count()
    clock = FakeClock(lambda: 1_000_000)

    def step() -> int:
        clock.step()
        return next(calls)

    settings = MeasurementSettings(warmup_iterations=4, min_iterations=6, max_iterations=6,
                                   min_duration_s=0, max_duration_s=10)
    measured = measure(step, settings, clock=clock)
    assert measured.payloads == [4, 5, 6, 7, 8, 9]  # warmup calls 0..3 were not kept
    assert len(measured.samples_ns) == 6


def test_sync_runs_inside_the_timed_region() -> None:
    clock = FakeClock(lambda: 1_000)

    def sync() -> None:
        clock.now += 5_000  # the 'GPU' finishes later than the launch returns

    settings = MeasurementSettings(warmup_iterations=1, min_iterations=6, max_iterations=6,
                                   min_duration_s=0, max_duration_s=10)
    measured = measure(clock.step, settings, sync=sync, clock=clock)
    assert measured.samples_ns == [6_000] * 6


def test_progress_is_reported_while_measuring() -> None:
    clock = FakeClock(lambda: 100_000_000)  # 100 ms steps
    seen: list[dict[str, object]] = []
    settings = MeasurementSettings(warmup_iterations=0, min_iterations=8, max_iterations=8,
                                   min_duration_s=0, max_duration_s=10)
    measure(clock.step, settings, clock=clock, on_progress=seen.append)
    assert seen and all(p["phase"] == "measuring" for p in seen)
    counts = [int(str(p["iterations"])) for p in seen]
    assert counts == sorted(counts)


def test_min_iterations_run_even_when_one_step_outlasts_max_duration() -> None:
    clock = FakeClock(lambda: 2_000_000_000)  # 2 s per step, max_duration 1 s
    settings = MeasurementSettings(warmup_iterations=0, min_iterations=4, min_duration_s=0,
                                   max_duration_s=1)
    measured = measure(clock.step, settings, clock=clock)
    assert measured.info is not None
    assert measured.info.iterations == 4
    assert measured.info.stop_reason == "max_duration"
