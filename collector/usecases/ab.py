"""A/B of one benchmark in two package environments, side by side on this host, now.

Each side is a set of pins (collector.adapters.envs), built once into a cached environment (a side
with no pins is this interpreter) in which that side's workers run. The sides are measured
in rounds: each round runs the spec once per side, each run being the spec's own
`measurement.repetitions` fresh processes combined (collector.analysis.combine), as run-once does.
Which side goes first alternates from round to round (A B, B A, A B, ...), so a host that
drifts slower or faster during the A/B weighs on both sides alike.

The verdict is collector.analysis.compare's: every round is one run of each side, and with two
rounds or more it is Welch's interval over the runs (the run is the unit of noise). A
budget stops the A/B after a complete round once another round of the same length would
pass it (never before two rounds). A side whose environment cannot be built, or whose run
fails, ends the A/B with a `failure` (never an exception).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collector.adapters.envs import BuiltEnvironment, EnvironmentBuildError, EnvironmentCache
from collector.analysis.ab import AbResult, side_label
from collector.analysis.combine import combine
from collector.analysis.compare import compare
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Failure, FailureKind
from collector.domain.packages import Pin, record_names

if TYPE_CHECKING:
    from collector.adapters.measure import WorkerPool

MIN_ROUNDS = 2
SIDES = ("a", "b")

# One fresh-process repetition of `spec` on a side ("a" or "b"): the measuring edge.
Repetition = Callable[[str, BenchmarkSpec], BenchmarkResult]
# Called after each complete round: (round number from 1, result of A, result of B).
OnRound = Callable[[int, BenchmarkResult, BenchmarkResult], None]
# Called as each side's environment is built or found: (side, the environment).
OnBuild = Callable[[str, BuiltEnvironment], None]


def _build(cache: EnvironmentCache, pins: Sequence[Pin],
           name: str) -> BuiltEnvironment | Failure:
    try:
        return cache.ensure(pins)
    except EnvironmentBuildError as exc:
        return Failure(kind=FailureKind.ENVIRONMENT_UNAVAILABLE,
                       message=f"side {name.upper()}: {exc}")


class WorkerPools:
    """WorkerPools by interpreter (None: this one), kept across A/B runs: a bisection
    measures its good side in every step, and starts its forkserver once, not per step."""

    def __init__(self, start_method: str = "forkserver") -> None:
        self.start_method = start_method
        self._pools: dict[str | None, WorkerPool] = {}

    def get(self, python: str | None) -> WorkerPool:
        from collector.adapters.measure import WorkerPool

        if python not in self._pools:
            self._pools[python] = WorkerPool(self.start_method, python=python)
        return self._pools[python]

    def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def __enter__(self) -> WorkerPools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Measure:
    """The real measuring edge: one fresh-process run of a spec in an interpreter (None:
    this one), through `pools`, with the package versions of `packages` recorded."""

    def __init__(self, pools: WorkerPools, host: str | None,
                 packages: tuple[str, ...]) -> None:
        from collector.adapters.host import capture_host

        self.pools = pools
        self._environment = capture_host(host)
        self._packages = packages

    def __call__(self, spec: BenchmarkSpec, python: str | None) -> BenchmarkResult:
        from collector.adapters.measure import run_benchmark

        return run_benchmark(self.pools.get(python), spec, self._environment,
                             packages=self._packages)


def _failed(side: str, pins: Sequence[Pin], other: Sequence[Pin],
            result: BenchmarkResult) -> Failure:
    assert result.failure is not None
    return result.failure.model_copy(update={
        "message": f"side {side.upper()} ({side_label(pins, other)}): "
                   f"{result.failure.message}"})


def run_ab(spec: BenchmarkSpec, a: Sequence[Pin], b: Sequence[Pin], *, rounds: int,
           cache: EnvironmentCache, host: str | None = None,
           start_method: str = "forkserver", stop: threading.Event | None = None,
           budget_s: float | None = None, on_round: OnRound | None = None,
           pools: WorkerPools | None = None, repetition: Repetition | None = None,
           on_build: OnBuild | None = None,
           clock: Callable[[], float] = time.monotonic) -> AbResult:
    """Measure `spec` with pins `a` and pins `b` in `rounds` interleaved rounds (fewer when
    `budget_s` or `stop` ends it, at least two unless stopped). `pools`: worker pools to
    use and keep (default: this A/B's own, in `start_method`, closed at its end).
    `on_build(side, env)` follows each side's environment build (or cache hit).
    `repetition` replaces the measuring edge (one fresh-process run of a side), for
    tests."""
    if rounds < 1:
        raise ValueError("an A/B needs at least one round")
    started = clock()
    pins = {"a": tuple(sorted(set(a))), "b": tuple(sorted(set(b)))}
    built: dict[str, BuiltEnvironment] = {}
    failure: Failure | None = None
    for side in SIDES:
        env = _build(cache, pins[side], side)
        if isinstance(env, Failure):
            failure = env
            break
        built[side] = env
        if on_build is not None:
            on_build(side, env)
    build_s = clock() - started
    plan = _Plan(spec, pins, rounds, started, budget_s, stop, on_round, clock)
    if failure is None and repetition is not None:
        failure = plan.run(repetition)
    elif failure is None:
        own = pools is None
        used = pools if pools is not None else WorkerPools(start_method)
        measure = Measure(used, host, record_names(pins["a"] + pins["b"]))
        python = {side: env.python if env.pins else None for side, env in built.items()}
        try:
            failure = plan.run(lambda side, spec: measure(spec, python[side]))
        finally:
            if own:
                used.close()
    done = plan.done

    def versions(side: str) -> dict[str, str]:
        return dict(built[side].versions) if side in built else {}

    return AbResult(
        spec=spec, a=pins["a"], b=pins["b"], results_a=done["a"], results_b=done["b"],
        comparison=compare(done["a"], done["b"]), rounds=len(plan.order), build_s=build_s,
        elapsed_s=clock() - started, failure=failure, order=tuple(plan.order),
        versions_a=versions("a"), versions_b=versions("b"),
        cache_hits=(built["a"].cache_hit if "a" in built else False,
                    built["b"].cache_hit if "b" in built else False))


@dataclass
class _Plan:
    """The rounds of one A/B and what they measured so far."""

    spec: BenchmarkSpec
    pins: dict[str, tuple[Pin, ...]]
    rounds: int
    started: float
    budget_s: float | None
    stop: threading.Event | None
    on_round: OnRound | None
    clock: Callable[[], float]
    done: dict[str, list[BenchmarkResult]] = field(
        default_factory=lambda: {"a": [], "b": []})
    order: list[str] = field(default_factory=list)

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _one_round(self, first: str, repetition: Repetition) -> dict[str, BenchmarkResult]:
        """Each side once, in the order `first`; incomplete ({} or one side) when stopped."""
        got: dict[str, BenchmarkResult] = {}
        for side in first:
            if self._stopped():
                break
            got[side] = combine([repetition(side, self.spec)
                                 for _ in range(self.spec.measurement.repetitions)])
        return got

    def run(self, repetition: Repetition) -> Failure | None:
        """Rounds until done, out of budget, stopped or failed; the failure, if any."""
        while len(self.order) < self.rounds and not self._stopped():
            first = "ab" if len(self.order) % 2 == 0 else "ba"
            round_started = self.clock()
            got = self._one_round(first, repetition)
            if len(got) < len(SIDES):
                break  # an incomplete round is dropped: the sides stay paired
            for side in SIDES:
                self.done[side].append(got[side])
            self.order.append(first)
            if self.on_round is not None:
                self.on_round(len(self.order), got["a"], got["b"])
            broken = [s for s in first if got[s].status != "ok"]
            if broken:
                side = broken[0]
                return _failed(side, self.pins[side], self.pins["b" if side == "a" else "a"],
                               got[side])
            now = self.clock()
            if (self.budget_s is not None and len(self.order) >= MIN_ROUNDS
                    and now - self.started + (now - round_started) > self.budget_s):
                break
        return None


def rejudged(result: AbResult, metric: str | None, threshold: float | None) -> AbResult:
    """The A/B's comparison again with another metric and threshold (the command line's)."""
    if threshold is None and metric is None:
        return result
    comparison = compare(result.results_a, result.results_b, threshold=threshold,
                         metrics=[metric] if metric else None)
    return dataclasses.replace(result, comparison=comparison)


__all__ = ["Measure", "OnBuild", "OnRound", "WorkerPools", "rejudged", "run_ab"]
