"""Energy over the timed region, where the hardware reports it.

CUDA: NVML's total energy counter of the GPU (millijoules since the driver loaded), read
before and after. CPU: RAPL through the kernel's powercap interface
(/sys/class/powercap/intel-rapl:<n>/energy_uj, one per package; a counter that wraps at
max_energy_range_uj). Neither is guessed: where the counter is absent (most VMs, these
machines included, expose no powercap) or unreadable, or went backwards (an NVML reset),
there is no energy metric, never a zero. Torch-free: it takes the device's type and index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


def _rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """The package-level RAPL domains (intel-rapl:0, intel-rapl:1, not their subzones)."""
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1
                  and (p / "energy_uj").is_file())


def _rapl_reader(root: Path = POWERCAP) -> Callable[[], list[tuple[int, int]]] | None:
    packages = _rapl_packages(root)
    if not packages:
        return None

    def read() -> list[tuple[int, int]]:
        return [(int((p / "energy_uj").read_text()), int((p / "max_energy_range_uj").read_text()))
                for p in packages]

    try:
        read()
    except (OSError, ValueError):  # present but not readable (root-only on recent kernels)
        return None
    return read


def _rapl_joules(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> float:
    total = 0
    for (start, _), (end, wrap) in zip(before, after, strict=True):
        total += end - start if end >= start else end + wrap - start  # one wrap at most
    return total / 1e6


def _nvml_reader(index: int) -> Callable[[], float] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # no binding, no library, no GPU, or a GPU without the counter
        return None

    def read() -> float:
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1e3

    return read


class EnergyMeter:
    """Joules over a region (`region()`), or None after it where nothing was measured."""

    def __init__(self, device_type: str, index: int | None = None,
                 powercap: Path = POWERCAP) -> None:
        self.joules: float | None = None
        self._nvml = _nvml_reader(index or 0) if device_type == "cuda" else None
        self._rapl = _rapl_reader(powercap) if device_type == "cpu" else None

    @property
    def available(self) -> bool:
        return self._nvml is not None or self._rapl is not None

    @contextlib.contextmanager
    def region(self) -> Iterator[None]:
        self.joules = None
        try:
            nvml0 = self._nvml() if self._nvml else None
            rapl0 = self._rapl() if self._rapl else None
        except (OSError, ValueError):
            nvml0 = rapl0 = None
        yield
        try:
            if nvml0 is not None and self._nvml is not None:
                spent = self._nvml() - nvml0
                self.joules = spent if spent > 0 else None  # a reset: discarded
            elif rapl0 is not None and self._rapl is not None:
                self.joules = _rapl_joules(rapl0, self._rapl())
        except (OSError, ValueError):
            self.joules = None
