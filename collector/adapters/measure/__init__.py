"""Runs one BenchmarkSpec in an isolated worker and turns the outcome into a BenchmarkResult.

This package's __init__ and isolation module never import torch; only `worker` and `tasks`
(loaded inside worker processes) do. Specs in measurement mode `instructions` run under
valgrind (collector/adapters/measure/valgrind.py); callers need not know.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from collector.adapters.load.keys import KeyUnavailable, endpoint_key
from collector.adapters.measure.isolation import (
    ProgressCallback,
    Target,
    WorkerOutcome,
    WorkerPool,
)
from collector.adapters.measure.protocol import WorkerResult, describe, protocol_failure
from collector.adapters.measure.valgrind import instructions_mode_problem
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    Failure,
    FailureKind,
    MeasurementMode,
)

__all__ = ["WorkerPool", "run_benchmark"]


def _default_target() -> Target:
    from collector.adapters.measure.entry import benchmark

    return benchmark


def run_benchmark(pool: WorkerPool, spec: BenchmarkSpec, environment: Environment, *,
                  on_progress: ProgressCallback | None = None,
                  target: Target | None = None,
                  kill: threading.Event | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                  packages: Sequence[str] = (),
                  ) -> BenchmarkResult:
    """Run one benchmark to completion or failure; never raises for a benchmark's fault.
    `packages`: names whose installed versions the worker records in the result's
    environment.packages (collector.adapters.envs.record_names gives an environment's)."""
    started = now()
    instructions = spec.measurement.mode is MeasurementMode.INSTRUCTIONS
    problem = instructions_mode_problem(spec) if instructions else None
    payload: dict[str, Any] = {"spec": spec.model_dump(mode="json")}
    if problem is None and spec.serving is not None and spec.serving.endpoint is not None:
        try:  # read here: workers never see the collector's secrets
            key = endpoint_key(spec.serving.endpoint)
        except KeyUnavailable as exc:
            problem = str(exc)
        else:
            if key is not None:
                payload["api_key"] = key
    if problem is not None:  # refused before a worker (or valgrind) starts
        outcome = WorkerOutcome(None, Failure(kind=FailureKind.EXCEPTION, message=problem), 0.0)
    else:
        if packages:
            payload["packages"] = list(packages)
        outcome = pool.run(target or _default_target(), payload, timeout_s=spec.timeout_s,
                           memory_limit_bytes=(spec.memory_limit_mb * 2**20
                                               if spec.memory_limit_mb else None),
                           on_progress=on_progress, kill=kill, under_valgrind=instructions)
    finished = now()
    series_id = spec.series_id(environment.host)
    if outcome.payload is None:
        assert outcome.failure is not None
        return BenchmarkResult(spec=spec, series_id=series_id, status="failed",
                               started_at=started, finished_at=finished,
                               environment=environment, failure=outcome.failure)
    # The worker's result is untrusted input: a body that is not a valid result is this
    # benchmark's failure, never an exception that would lose the suite.
    try:
        body = WorkerResult.model_validate(outcome.payload)
        env = environment.model_copy(update=body.environment.model_dump(exclude_unset=True))
        if spec.serving is not None and spec.serving.endpoint is not None:
            # An external server's versions are its own (environment.server), not those
            # this collector has installed.
            env = env.model_copy(update={"torch_version": None, "transformers_version": None})
        return BenchmarkResult(
            spec=spec, series_id=series_id, status="ok", resolved_task=body.resolved_task,
            started_at=started, finished_at=finished,
            environment=Environment.model_validate(env.model_dump()),
            metrics=body.metrics, samples=body.samples, measurement=body.measurement,
            noise=body.noise,
        )
    except ValidationError as exc:
        return BenchmarkResult(spec=spec, series_id=series_id, status="failed",
                               started_at=started, finished_at=finished,
                               environment=environment, failure=protocol_failure(
                                   f"the worker sent a malformed result: {describe(exc)}"))
