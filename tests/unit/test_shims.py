"""The deprecated import paths kept for one release (docs/architecture.md): each still gives
the same objects as the new path, and says that it moved."""

from __future__ import annotations

import importlib
import sys

import pytest

import collector.adapters.envs
import collector.adapters.measure
import collector.domain.model
import collector.domain.packages

SHIMS = {
    "collector.model": (collector.domain.model, ["BenchmarkSpec", "BenchmarkResult",
                                                 "RunResult", "Environment", "Failure",
                                                 "FailureKind"]),
    "collector.envs": (collector.adapters.envs, ["EnvironmentCache", "EnvironmentBuildError"]),
    "collector.runner": (collector.adapters.measure, ["WorkerPool", "run_benchmark"]),
}


@pytest.mark.parametrize("old", sorted(SHIMS))
def test_an_old_path_gives_the_new_objects_and_warns(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        shim = importlib.import_module(old)
    new, names = SHIMS[old]
    for name in names:
        assert getattr(shim, name) is getattr(new, name)
    if old == "collector.envs":
        assert shim.parse_pins is collector.domain.packages.parse_pins
