from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from collector.adapters.host import NoiseMeter, capture_host
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Failure,
    FailureKind,
    RunResult,
)
from tests.helpers import spec_dict

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def spec(**overrides: Any) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate(spec_dict("bert", **overrides))


def test_series_id_is_stable_and_depends_on_workload_and_host() -> None:
    base = spec()
    assert base.series_id("h1") == spec().series_id("h1")
    assert len(base.series_id("h1")) == 16
    assert base.series_id("h1") != base.series_id("h2")
    assert base.series_id("h1") != spec(batch_size=2).series_id("h1")
    assert base.series_id("h1") != spec(dtype="bfloat16").series_id("h1")
    # Names, suites and measurement knobs are labels: history survives renames.
    assert base.series_id("h1") == spec(name="renamed", suite="other").series_id("h1")
    assert base.series_id("h1") == spec(
        measurement={"target_rel_ci": 0.05}).series_id("h1")


def test_series_id_ignores_compile_settings_unless_compiled() -> None:
    assert spec().series_id("h") == spec(compile={"mode": "max-autotune"}).series_id("h")
    assert spec(backend="compile").series_id("h") != spec(
        backend="compile", compile={"mode": "max-autotune"}).series_id("h")


def result(**fields: Any) -> BenchmarkResult:
    base: dict[str, Any] = {"spec": spec(), "series_id": "0123456789abcdef", "status": "ok",
                            "started_at": T0, "finished_at": T0 + timedelta(seconds=1),
                            "environment": capture_host("h")}
    base.update(fields)
    return BenchmarkResult(**base)


def test_results_validate_in_their_constructor() -> None:
    with pytest.raises(ValidationError, match="a failed result needs a failure"):
        result(status="failed")
    with pytest.raises(ValidationError, match="cannot carry a failure"):
        result(failure=Failure(kind=FailureKind.CRASH, message="x"))
    with pytest.raises(ValidationError, match="unknown metric"):
        result(metrics={"latency_p50_ms": 1.0})
    with pytest.raises(ValidationError, match="before started_at"):
        result(finished_at=T0 - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="frozen"):
        result().status = "failed"  # type: ignore[misc]  # the point: assignment must fail


def test_run_status_summarises_its_results() -> None:
    ok = result()
    bad = result(status="failed", failure=Failure(kind=FailureKind.TIMEOUT, message="slow"))
    run = {"run_id": "0" * 32, "suite": "s", "host": "h", "started_at": T0,
           "finished_at": T0, "collector_version": "0"}
    assert RunResult(**run, results=(ok, ok)).status == "ok"
    assert RunResult(**run, results=(ok, bad)).status == "partial"
    assert RunResult(**run, results=(bad,)).status == "failed"


def test_environment_describes_this_machine() -> None:
    env = capture_host()
    assert env.cpu_logical_cores >= 1
    assert env.memory_total_bytes > 2**28
    assert env.python_version.count(".") == 2
    assert env.torch_version is not None  # from package metadata, without importing torch


def test_noise_meter_sees_cpu_burnt_by_another_process() -> None:
    import subprocess
    import sys
    import time

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it start burning
        meter = NoiseMeter().start()
        time.sleep(1.0)
        probe = meter.stop()
    finally:
        burner.kill()
        burner.wait()
    # A process we have not reaped is somebody else's CPU: about one core for one second.
    # (Other load on a shared machine can only add to it.)
    assert probe.other_cpu_s >= 0.6
    assert probe.self_cpu_s < 0.3  # we slept
    assert 0.6 / (probe.wall_s * 64) <= probe.other_cpu_fraction <= 1.0
