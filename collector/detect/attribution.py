"""What changed between the last good run and the first bad one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from collector.domain.history import RunPoint

if TYPE_CHECKING:
    from collector.domain.packages import Pin

# Fields of the environment worth naming, in the order a reader wants them.
_FIELDS = ("commit", "transformers_version", "torch_version", "cuda_version", "cudnn_version",
           "gpu_driver", "python_version", "collector_version", "torch_threads", "kernel",
           "os", "cpu_model", "cpu_logical_cores", "memory_total_bytes", "gpu_name",
           "gpu_count", "int8_matmul", "server")
# Hardware: results from different hardware are never compared (a new segment starts).
HARDWARE_FIELDS = ("cpu_model", "cpu_logical_cores", "memory_total_bytes", "gpu_name",
                   "gpu_count")
PACKAGES_PREFIX = "packages."  # diff keys of environment.packages entries
# Fixed fields that are package versions (what an A/B can pin), by distribution name.
PACKAGE_FIELDS = {"transformers_version": "transformers", "torch_version": "torch"}


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
    diff.update(_package_diff(before.environment.get("packages"),
                              after.environment.get("packages")))
    if before.spec_hash != after.spec_hash and before.spec_hash and after.spec_hash:
        diff["config"] = [before.spec_hash, after.spec_hash]
    return diff


def _package_diff(before: Any, after: Any) -> dict[str, list[Any]]:
    """`packages.NAME` -> [before, after] for the recorded packages whose version differs
    (None where one side lacks the package). Only when both runs recorded packages: a run
    from before the field existed, or before `environment.record_packages` was set, is no
    evidence that a package changed."""
    if not isinstance(before, dict) or not isinstance(after, dict) or not (before and after):
        return {}
    return {f"{PACKAGES_PREFIX}{name}": [before.get(name), after.get(name)]
            for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name)}


def package_changes(diff: dict[str, list[Any]]) -> tuple[list[Pin], list[Pin]]:
    """The pins an A/B of this diff compares: (before pins, after pins), one per package
    whose version changed from one version to another (transformers_version,
    torch_version and packages.* entries; a package present on one side only is not a
    version an environment can be built with, and is left out). Empty when nothing
    pinnable changed."""
    from collector.domain.packages import Pin

    found: dict[str, tuple[str, str, str]] = {}  # canonical name -> (name, old, new)
    for key, values in diff.items():
        name = PACKAGE_FIELDS.get(key) or (
            key[len(PACKAGES_PREFIX):] if key.startswith(PACKAGES_PREFIX) else None)
        if name is None or len(values) != 2:
            continue
        old, new = values
        if not (isinstance(old, str) and isinstance(new, str) and old and new) or old == new:
            continue
        # transformers_version and packages.transformers are one package: named once.
        found.setdefault(canonicalize_name(name), (canonicalize_name(name), old, new))
    ordered = [found[key] for key in sorted(found)]
    return ([Pin(name, old) for name, old, _ in ordered],
            [Pin(name, new) for name, _, new in ordered])


def describe(diff: dict[str, list[Any]]) -> str:
    """One line for alerts and annotations: `transformers_version 5.23.0 -> 5.24.0; ...`."""
    return "; ".join(f"{name} {old} -> {new}" for name, (old, new) in diff.items())
