"""Energy from RAPL's powercap files (collector/adapters/measure/energy.py), on a tree laid out as
the kernel lays it out, and absent (never zero) where a host exposes none."""

from __future__ import annotations

from pathlib import Path

from collector.adapters.measure import energy
from collector.adapters.measure.energy import EnergyMeter


def _package(root: Path, name: str, uj: int, wrap: int = 2**32) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
    return zone


def test_joules_over_the_region_summed_over_packages_with_a_wrap(tmp_path: Path) -> None:
    first = _package(tmp_path, "intel-rapl:0", 1_000_000)
    second = _package(tmp_path, "intel-rapl:1", 2**32 - 500_000)
    _package(tmp_path, "intel-rapl:0:0", 7)  # a subzone (core): counted in its package
    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert meter.available
    with meter.region():
        (first / "energy_uj").write_text("3500000\n")  # +2.5 J
        (second / "energy_uj").write_text("1500000\n")  # wrapped: +2.0 J
    assert meter.joules is not None
    assert abs(meter.joules - 4.5) < 1e-9


def test_no_counter_no_energy(tmp_path: Path) -> None:
    meter = EnergyMeter("cpu", powercap=tmp_path)  # an empty powercap
    assert not meter.available
    zone = _package(tmp_path, "intel-rapl:0", 5)
    (zone / "energy_uj").chmod(0)
    unreadable = EnergyMeter("cpu", powercap=tmp_path)
    # root reads any file; as another user the counter is unreadable and there is none.
    assert unreadable.available == bool(_readable(zone / "energy_uj"))


def test_this_host_reports_energy_only_if_it_exposes_rapl() -> None:
    exposed = bool(energy._rapl_packages())
    assert EnergyMeter("cpu").available is exposed


def _readable(path: Path) -> bool:
    try:
        path.read_text()
    except OSError:
        return False
    return True
