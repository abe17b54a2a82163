"""What changed between the last good run and the first bad one."""

from __future__ import annotations

from typing import Any

from collector.history import RunPoint

# Fields of the environment worth naming, in the order a reader wants them.
_FIELDS = ("transformers_version", "torch_version", "cuda_version", "cudnn_version",
           "gpu_driver", "python_version", "collector_version", "torch_threads", "kernel",
           "os", "cpu_model", "cpu_logical_cores", "memory_total_bytes", "gpu_name",
           "gpu_count")
# Hardware: results from different hardware are never compared (a new segment starts).
HARDWARE_FIELDS = ("cpu_model", "cpu_logical_cores", "memory_total_bytes", "gpu_name",
                   "gpu_count")


def hardware_key(run: RunPoint) -> tuple[Any, ...]:
    return tuple(run.environment.get(name) for name in HARDWARE_FIELDS)


def environment_diff(before: RunPoint | None, after: RunPoint) -> dict[str, list[Any]]:
    """Field -> [before, after] for every field that differs, plus `config` when the
    benchmark's full spec changed (measurement knobs, or anything that is not identity)."""
    if before is None:
        return {}
    diff: dict[str, list[Any]] = {}
    for name in _FIELDS:
        old, new = before.environment.get(name), after.environment.get(name)
        if old != new:
            diff[name] = [old, new]
    if before.spec_hash != after.spec_hash and before.spec_hash and after.spec_hash:
        diff["config"] = [before.spec_hash, after.spec_hash]
    return diff


def describe(diff: dict[str, list[Any]]) -> str:
    """One line for alerts and annotations: `transformers_version 5.23.0 -> 5.24.0; ...`."""
    return "; ".join(f"{name} {old} -> {new}" for name, (old, new) in diff.items())
