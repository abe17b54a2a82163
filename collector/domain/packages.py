"""Package pins: one package at one exact version, as A/B runs, bisect, rerun and
attribution name them (`transformers==5.24.0`)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from collector.domain.errors import InputError

# Always recorded with the pinned packages: what a benchmark's speed depends on most.
ALWAYS_RECORDED = ("torch", "transformers")


@dataclass(frozen=True, order=True)
class Pin:
    """One package at one exact version; the name canonicalised (PEP 503)."""

    name: str
    version: str

    def __post_init__(self) -> None:
        # Pin("Slow_Poke", "01.0") is slow-poke==1.0: one spelling, one cache key.
        object.__setattr__(self, "name", canonicalize_name(self.name))
        with contextlib.suppress(InvalidVersion):
            object.__setattr__(self, "version", str(Version(self.version)))

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def _parse_pin(text: str) -> Pin:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        raise InputError(f"{text!r} is not a package pin: write name==version, e.g. "
                         "transformers==5.23.0") from None
    specifiers = list(requirement.specifier)
    if (requirement.extras or requirement.marker or requirement.url or len(specifiers) != 1
            or specifiers[0].operator != "==" or "*" in specifiers[0].version):
        raise InputError(f"{text!r} is not an exact pin: write name==version (one exact "
                         "version, no extras, markers or ranges), e.g. transformers==5.23.0")
    try:
        version = str(Version(specifiers[0].version))
    except InvalidVersion:
        raise InputError(f"{text!r}: {specifiers[0].version!r} is not a version") from None
    return Pin(canonicalize_name(requirement.name), version)


def parse_pins(texts: Sequence[str]) -> tuple[Pin, ...]:
    """Pins from command-line texts ("a==1.0"; one text may hold several, separated by
    commas or spaces), sorted; InputError naming the bad text, or a package pinned twice."""
    pins: dict[str, Pin] = {}
    for text in texts:
        for item in re.split(r"[,\s]+", text.strip()):
            if not item:
                continue
            pin = _parse_pin(item)
            if pin.name in pins and pins[pin.name] != pin:
                raise InputError(f"{pin.name} is pinned twice ({pins[pin.name]} and {pin}): "
                                 "give one version per package")
            pins[pin.name] = pin
    return tuple(sorted(pins.values()))


def record_names(pins: Sequence[Pin]) -> tuple[str, ...]:
    """The package names whose versions a result records: the pinned ones, torch and
    transformers; sorted, canonical."""
    return tuple(sorted({*(p.name for p in pins), *ALWAYS_RECORDED}))


