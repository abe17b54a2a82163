"""What the regression detector is told: its settings, and the defaults of each metric
profile (collector.domain.catalogue.Profile). The detector (collector/detect/) runs on them;
`compare` and the report read a metric's minimum effect from here, so neither imports the
detector to know what size of change counts."""

from __future__ import annotations

from dataclasses import dataclass

from collector.domain.catalogue import METRICS, Profile


@dataclass(frozen=True)
class DetectorSettings:
    """Knobs of the detector; the defaults are what `benchmarks/detection_quality.py`
    measured against the acceptance goals."""

    min_persist: int = 3  # runs at a new level before it is flagged (suspected)
    confirm_runs: int = 6  # the latest runs that must sit at the new level to page (open)
    confirm_misses: int = 1  # of which this many may fall short (never the latest)
    confirm_line: float = 0.5  # "at the new level": this far from the old level to the new
    consistency_z: float = 3.5  # the two halves of those runs may differ by this much
    confirm_after: int = 4  # runs at the new level after the one that flagged it
    min_reference: int = 8  # runs of the current regime needed before a split
    reference_window: int = 40  # runs before the split whose median is the old level
    scale_window: int = 100  # runs before the split the noise is learnt from
    max_tail: int = 30  # longest tail tested
    z_threshold: float = 4.0  # evidence needed to page, in robust standard errors
    z_suspect: float = 3.2  # evidence needed to flag (suspected: recorded, never pages)
    rank_z: float = 3.09  # and to page: a rank test (Mann-Whitney, one-sided p <= 0.001)
    min_history: int = 20  # runs needed before anything is judged (the noise is learnt)
    min_effect: float = 0.03  # smallest relative change reported
    min_absolute: float = 0.0  # smallest change in the metric's unit
    noise_floor: float = 0.002  # lowest relative noise assumed
    clip_sigmas: float = 3.0  # winsorising for the location step
    dismiss_after: int = 20  # a suspected change not confirmed within this many runs is dropped
    # A single run this far out (robust z, the worse direction) asks for confirmation runs
    # at once: they, not this run, decide (collector.usecases.cycle, scan.confirm_series).
    z_trigger: float = 3.0

    def __post_init__(self) -> None:
        if self.min_persist < 1 or self.confirm_runs < self.min_persist:
            raise ValueError("need 1 <= min_persist <= confirm_runs")
        if self.min_reference < 3 or self.reference_window < self.min_reference:
            raise ValueError("need 3 <= min_reference <= reference_window")
        if self.max_tail < self.confirm_runs:
            raise ValueError("max_tail must be at least confirm_runs")
        if self.z_suspect > self.z_threshold:
            raise ValueError("z_suspect must not exceed z_threshold")
        if self.z_threshold <= 0 or self.min_effect < 0 or self.noise_floor <= 0:
            raise ValueError("z_threshold and noise_floor must be positive, min_effect >= 0")


# Memory: near-deterministic, so a threshold decides (a 2% and 4 MiB rise over three runs);
# the z-test only guards against a genuinely noisy series.
MEMORY_SETTINGS = DetectorSettings(min_effect=0.02, min_absolute=4 * 2**20, z_threshold=3.0,
                                   z_suspect=3.0,
                                   noise_floor=0.0005)
# First calls and compilation are dominated by one-off work and vary much more.
COLD_SETTINGS = DetectorSettings(min_effect=0.10)
# Instructions counted under valgrind repeat to a few hundredths of a percent: a change of
# 1% is work, not noise, and needs no persistence to be believed. One run flags it
# (min_persist 1) and one more at the new level proves it (a confirmation point, in the same
# cycle): a one-off glitch cannot page alone. The rank test of one run against the
# reference can only say "above every reference run" (z 1.69 for 40 runs), which is the
# statement wanted here.
# Ten runs teach a noise of a few hundredths of a percent as well as twenty would.
INSTRUCTION_SETTINGS = DetectorSettings(min_persist=1, confirm_runs=2, confirm_misses=0,
                                        confirm_after=1, min_effect=0.01, z_threshold=4.0,
                                        z_suspect=4.0, z_trigger=4.0, rank_z=1.6,
                                        noise_floor=0.0005, min_history=10)

_PROFILE_SETTINGS = {Profile.MEMORY: MEMORY_SETTINGS, Profile.INSTRUCTIONS: INSTRUCTION_SETTINGS,
                     Profile.COLD: COLD_SETTINGS}


def settings_for(metric: str, base: DetectorSettings | None = None) -> DetectorSettings:
    """Default settings of a catalogue metric, by its profile (memory: thresholds;
    instructions: tight and fast; cold paths: a larger minimum effect); `base` overrides the
    default for the steady state (time and rate metrics)."""
    chosen = _PROFILE_SETTINGS.get(METRICS[metric].profile)
    return chosen if chosen is not None else base or DetectorSettings()
