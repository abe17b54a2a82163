"""Rerun a stored point: the exact spec of each result of a stored run, measured again now
with its own repetitions in fresh processes, compared with the stored values
(collector.analysis.compare). With `same_environment`, in an environment pinned to the versions the
stored result recorded (collector.adapters.envs): transformers, torch where it differs from this
interpreter's, and every recorded package; a version equal to this interpreter's needs no
pin, so a run recorded here and now reruns in this interpreter.

The rerun is not stored: a run's purpose is `scheduled` (a point of its series) or
`confirmation`, and a rerun is neither (a third purpose needs a migration of both stores).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collector.adapters.envs import (
    BuiltEnvironment,
    EnvironmentBuildError,
    EnvironmentCache,
    base_versions,
)
from collector.analysis.combine import combine
from collector.analysis.compare import Comparison, compare
from collector.detect.attribution import PACKAGE_FIELDS
from collector.domain.errors import NotFoundError
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Failure, FailureKind
from collector.domain.packages import Pin, record_names
from collector.usecases.ab import Measure, WorkerPools

if TYPE_CHECKING:
    from collector.domain.history import Store, StoredRun

# One fresh-process repetition of a spec, in the interpreter given (None: this one).
Repetition = Callable[[BenchmarkSpec, str | None], BenchmarkResult]


@dataclass(frozen=True)
class RerunResult:
    run: StoredRun
    stored: list[BenchmarkResult]  # the stored results rerun
    fresh: list[BenchmarkResult]  # their reruns, in the same order
    comparison: Comparison  # A = stored, B = fresh
    pins: tuple[Pin, ...] = ()  # the environment's pins (same_environment)
    environment: BuiltEnvironment | None = None
    failure: Failure | None = None  # the environment could not be built


def find_run(store: Store, run_id: str) -> StoredRun:
    """The stored scheduled run whose id is or starts with `run_id`."""
    wanted = run_id.strip().lower()
    if not wanted:
        raise NotFoundError("give a run id (or a prefix of one)")
    runs = store.runs(run_id_prefix=wanted)
    exact = [r for r in runs if r.run_id == wanted]
    if exact:
        return exact[0]
    if not runs:
        raise NotFoundError(f"no stored run has an id starting with {run_id!r}")
    if len(runs) > 1:
        shown = ", ".join(r.run_id[:12] for r in runs[:5])
        raise NotFoundError(f"run id prefix {run_id!r} is ambiguous: {len(runs)} runs match "
                            f"({shown}{', ...' if len(runs) > 5 else ''}); give more of it")
    return runs[0]


def select_results(results: Sequence[BenchmarkResult],
                   benchmark: str | None) -> list[BenchmarkResult]:
    """The stored results to rerun: every one, or those whose name matches the glob."""
    if benchmark is None:
        return list(results)
    chosen = [r for r in results if fnmatch.fnmatchcase(r.spec.name, benchmark)]
    if not chosen:
        names = ", ".join(sorted({r.spec.name for r in results})) or "none"
        raise NotFoundError(f"no successful result of that run matches {benchmark!r} "
                            f"(it has: {names})")
    return chosen


def recorded_pins(environment: dict[str, Any],
                  here: dict[str, str] | None = None) -> tuple[Pin, ...]:
    """Pins for the versions a result's environment recorded (transformers_version,
    torch_version, packages), leaving out each that is this interpreter's version already."""
    from packaging.utils import canonicalize_name

    recorded: dict[str, str] = {}
    packages = environment.get("packages") or {}
    for name, version in packages.items():
        if version:
            recorded[canonicalize_name(str(name))] = str(version)
    for field_name, name in PACKAGE_FIELDS.items():
        version = environment.get(field_name)
        if version:
            recorded[name] = str(version)
    installed = here if here is not None else base_versions(tuple(recorded))
    return tuple(sorted(Pin(name, version) for name, version in recorded.items()
                        if installed.get(name) != version))


def _environment(result: BenchmarkResult) -> dict[str, Any]:
    return result.environment.model_dump(mode="json")


def rerun(store: Store, run_id: str, *, benchmark: str | None = None,
          same_environment: bool = False, cache: EnvironmentCache | None = None,
          host: str | None = None, start_method: str = "forkserver",
          repetition: Repetition | None = None,
          on_result: Callable[[BenchmarkResult], None] | None = None) -> RerunResult:
    """Rerun the (chosen) successful results of stored run `run_id` and compare them with
    the stored values. `repetition` replaces the measuring edge, for tests."""
    run = find_run(store, run_id)
    stored = select_results(store.stored_results([run]), benchmark)
    if not stored:
        raise NotFoundError(f"run {run.run_id} has no successful result to rerun")
    pins: tuple[Pin, ...] = ()
    built: BuiltEnvironment | None = None
    if same_environment:
        pins = recorded_pins(_environment(stored[0]))
        if pins:
            try:
                built = (cache or EnvironmentCache()).ensure(pins)
            except EnvironmentBuildError as exc:
                return RerunResult(run, stored, [], compare([], []), pins, None, Failure(
                    kind=FailureKind.ENVIRONMENT_UNAVAILABLE, message=str(exc)))
    python = built.python if built is not None and built.pins else None
    measure = None
    if repetition is None:
        measure = Measure(WorkerPools(start_method), host, record_names(pins))
        repetition = measure
    fresh: list[BenchmarkResult] = []
    try:
        for result in stored:
            spec = result.spec
            again = combine([repetition(spec, python)
                             for _ in range(spec.measurement.repetitions)])
            fresh.append(again)
            if on_result is not None:
                on_result(again)
    finally:
        if measure is not None:
            measure.pools.close()
    return RerunResult(run, stored, fresh, compare(stored, fresh), pins, built)


__all__ = ["RerunResult", "find_run", "recorded_pins", "rerun", "select_results"]
