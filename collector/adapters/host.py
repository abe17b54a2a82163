"""What machine and software a result was measured on, and how busy the machine was.

The parent side reads versions from package metadata (no torch import); the worker adds what
only the live process knows (torch threads, CUDA, GPU) through `Environment.model_copy`.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from collector.domain.model import Environment, NoiseProbe
from collector.version import __version__


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def capture_host(host: str | None = None) -> Environment:
    """The static part of the environment, cheap enough to take once per run."""
    import psutil

    return Environment(
        host=host or socket.gethostname(),
        os=platform.platform(terse=True),
        kernel=platform.release(),
        cpu_model=_cpu_model(),
        cpu_logical_cores=os.cpu_count() or 1,
        cpu_physical_cores=psutil.cpu_count(logical=False),
        memory_total_bytes=psutil.virtual_memory().total,
        python_version=platform.python_version(),
        collector_version=__version__,
        torch_version=_version("torch"),
        transformers_version=_version("transformers"),
    )


# ---------------------------------------------------------------------------------------------
# Noise probe: CPU time the rest of the machine used while we measured.

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_cpu_seconds() -> float | None:
    """Machine-wide busy CPU time (all cores) from /proc/stat; None off Linux."""
    try:
        with Path("/proc/stat").open() as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    values = [int(v) for v in fields[1:]]
    busy = values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
    return busy / _CLOCK_TICKS


def _self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


@dataclass
class NoiseMeter:
    """Start before measuring, call stop() after; the numbers cover exactly that window."""

    # CPU seconds of other processes that are part of the measurement (a serving
    # benchmark's server): counted as our own, not as another process's.
    ours: Callable[[], float] | None = None
    _wall: float = 0.0
    _busy: float | None = None
    _self: float = 0.0
    _load: float | None = None

    def _own(self) -> float:
        return _self_cpu_seconds() + (self.ours() if self.ours is not None else 0.0)

    def start(self) -> NoiseMeter:
        self._wall = time.monotonic()
        self._busy = _busy_cpu_seconds()
        self._self = self._own()
        self._load = _loadavg()
        return self

    def stop(self, gpu: dict[str, object] | None = None) -> NoiseProbe:
        wall = max(time.monotonic() - self._wall, 0.0)
        own = max(self._own() - self._self, 0.0)
        busy_end = _busy_cpu_seconds()
        other = 0.0
        if self._busy is not None and busy_end is not None:
            # Tick granularity (10 ms per core) can make the difference slightly negative.
            other = max(busy_end - self._busy - own, 0.0)
        capacity = wall * (os.cpu_count() or 1)
        return NoiseProbe(
            wall_s=wall,
            self_cpu_s=own,
            other_cpu_s=other,
            # clock ticks and wall time are read apart: clamp their rounding into [0, 1]
            other_cpu_fraction=min(other / capacity, 1.0) if capacity > 0 else 0.0,
            loadavg_1m_start=self._load,
            loadavg_1m_end=_loadavg(),
            gpu=gpu,
        )
