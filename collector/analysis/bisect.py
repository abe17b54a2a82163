"""The first released version of a package that made a benchmark worse.

`bisect(versions, test)` is a binary search over an ordered list of versions, the first
known good and the last known bad; `test(v)` is an A/B run of version `v` against the good
one, decided by collector.analysis.compare's noise-aware verdict. A version that cannot be installed
or run is skipped and the search narrows around it, as `git bisect skip` does; when skips
leave more than one candidate, the result names them all.

`bisect_packages` handles several packages that changed at once: A/B all-good against
all-bad; then each package bad alone (the others good); each one that alone reproduces the
effect is bisected on its own, and if none does, the effect needs them together.

Pure logic: the released versions come from the package index
(collector/adapters/package_index.py), the A/B runs through `test`
(collector/usecases/bisect.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from packaging.version import InvalidVersion, Version

from collector.domain.errors import command_line_problem

if TYPE_CHECKING:
    from collector.analysis.ab import AbSummary

StepVerdict = Literal["worse", "same", "better", "failed"]


@dataclass(frozen=True)
class Step:
    """One A/B run of a bisection: `version` against the good one."""

    version: str
    verdict: StepVerdict
    summary: AbSummary | None = None  # ratio, interval and text (None when it failed)
    elapsed_s: float = 0.0
    message: str | None = None  # why it failed (an install or a run failure)
    role: str = "step"  # "confirm" (bad vs good, before the search), "alone", "step"

    @property
    def text(self) -> str:
        if self.verdict == "failed":
            return f"{self.version}: failed ({self.message or 'no result'}), skipped"
        shown = self.summary.text if self.summary is not None else self.verdict
        return f"{self.version}: {self.verdict}: {shown} [{self.elapsed_s:.0f} s]"

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "verdict": self.verdict, "role": self.role,
                "elapsed_s": self.elapsed_s, "message": self.message,
                "summary": self.summary.as_dict() if self.summary is not None else None}


@dataclass(frozen=True)
class BisectResult:
    package: str
    versions: tuple[str, ...]  # good first, bad last
    steps: tuple[Step, ...]
    # "found": first_bad named (ambiguous when `candidates` has more than it); "no_effect":
    # bad is not worse than good; "bad_failed": the bad end itself could not be measured.
    outcome: Literal["found", "no_effect", "bad_failed"]
    first_bad: str | None = None
    candidates: tuple[str, ...] = ()  # every version that may be the first bad one
    effect: Step | None = None  # the first bad version against the good one

    @property
    def good(self) -> str:
        return self.versions[0]

    @property
    def bad(self) -> str:
        return self.versions[-1]

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(s.version for s in self.steps if s.verdict == "failed")

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1

    @property
    def text(self) -> str:
        name = self.package
        if self.outcome == "no_effect":
            return (f"no effect between the ends: {name} {self.bad} is not worse than "
                    f"{self.good}").replace(":  ", ": ")
        if self.outcome == "bad_failed":
            return (f"{name} {self.bad} (the bad end) could not be measured; nothing to "
                    "bisect").lstrip()
        effect = (f" ({self.effect.summary.text})" if self.effect is not None
                  and self.effect.summary is not None else "")
        what = f"first bad {name} version" if name else "first bad version"
        if self.ambiguous:
            others = ", ".join(v for v in self.candidates if v != self.first_bad)
            return f"{what} is {self.first_bad} or one of the skipped {others}{effect}"
        return f"{what} is {self.first_bad}{effect}"

    def as_dict(self) -> dict[str, Any]:
        return {"package": self.package, "good": self.good, "bad": self.bad,
                "versions": list(self.versions), "outcome": self.outcome,
                "first_bad": self.first_bad, "candidates": list(self.candidates),
                "skipped": list(self.skipped), "text": self.text,
                "effect": self.effect.as_dict() if self.effect is not None else None,
                "steps": [s.as_dict() for s in self.steps]}


Test = Callable[[str], Step]


def _timed(test: Test, version: str, role: str) -> Step:
    started = time.monotonic()
    step = test(version)
    elapsed = step.elapsed_s or time.monotonic() - started
    return Step(version, step.verdict, step.summary, elapsed, step.message, role)


def _middle(candidates: list[int], lo: int, hi: int) -> int:
    """The untested index nearest the middle of (lo, hi); the lower one on a tie."""
    centre = (lo + hi) / 2
    return min(candidates, key=lambda i: (abs(i - centre), i))


def bisect(versions: Sequence[str], test: Test, *, confirmed: Step | None = None,
           on_step: Callable[[Step], None] | None = None, package: str = "") -> BisectResult:
    """Binary search for the first version `test` calls worse. versions[0] is good,
    versions[-1] bad; the bad end is tested first (or `confirmed` is its known step):
    not worse means no effect between the ends. A `failed` version is skipped."""
    if len(versions) < 2:
        raise ValueError("bisect needs at least two versions: the good and the bad end")
    steps: list[Step] = []

    def run(index: int, role: str) -> Step:
        step = _timed(test, versions[index], role)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        return step

    if confirmed is not None:
        end = Step(confirmed.version, confirmed.verdict, confirmed.summary,
                   confirmed.elapsed_s, confirmed.message, "confirm")
        steps.append(end)
    else:
        end = run(len(versions) - 1, "confirm")
    names = tuple(versions)
    if end.verdict == "failed":
        return BisectResult(package, names, tuple(steps), "bad_failed")
    if end.verdict != "worse":
        return BisectResult(package, names, tuple(steps), "no_effect")
    lo, hi = 0, len(versions) - 1  # versions[lo] is good, versions[hi] is bad
    effect = end
    skipped: set[int] = set()
    while True:
        untested = [i for i in range(lo + 1, hi) if i not in skipped]
        if not untested:
            break
        index = _middle(untested, lo, hi)
        step = run(index, "step")
        if step.verdict == "failed":
            skipped.add(index)
        elif step.verdict == "worse":
            hi, effect = index, step
        else:
            lo = index
    candidates = tuple(versions[i] for i in range(lo + 1, hi + 1))
    return BisectResult(package, names, tuple(steps), "found", first_bad=versions[hi],
                        candidates=candidates, effect=effect)


# -- several packages ----------------------------------------------------------------------

@dataclass(frozen=True)
class PackageRange:
    name: str
    good: str
    bad: str

    def pin(self, version: str) -> str:
        return f"{self.name}=={version}"


@dataclass(frozen=True)
class MultiBisect:
    """Several packages changed between good and bad."""

    packages: tuple[PackageRange, ...]
    together: Step  # all good against all bad
    alone: tuple[tuple[str, Step], ...] = ()  # (package, its bad version alone vs all good)
    results: tuple[BisectResult, ...] = ()  # one per package that alone reproduces
    outcome: Literal["bisected", "no_effect", "needs_together", "bad_failed"] = "bisected"

    @property
    def text(self) -> str:
        if len(self.packages) == 1 and self.results:
            return self.results[0].text
        if self.outcome == "no_effect":
            return "no effect between the ends: all bad is not worse than all good"
        if self.outcome == "bad_failed":
            return "the all-bad environment could not be measured; nothing to bisect"
        if self.outcome == "needs_together":
            names = ", ".join(p.name for p in self.packages)
            return (f"no package alone reproduces the effect: it needs them together "
                    f"({names})")
        return "; ".join(r.text for r in self.results)

    @property
    def found(self) -> bool:
        return self.outcome == "bisected" and any(r.outcome == "found" for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"packages": [{"name": p.name, "good": p.good, "bad": p.bad}
                             for p in self.packages],
                "outcome": self.outcome, "text": self.text,
                "together": self.together.as_dict(),
                "alone": [{"package": name, **step.as_dict()} for name, step in self.alone],
                "results": [r.as_dict() for r in self.results]}


# ab(b_pins) -> Step: an A/B of the all-good pins against `b_pins` (pins as NAME==VERSION).
PinsTest = Callable[[tuple[str, ...], str], Step]


def bisect_packages(packages: Sequence[PackageRange],
                    versions: Callable[[PackageRange], Sequence[str]], ab: PinsTest, *,
                    on_step: Callable[[Step], None] | None = None) -> MultiBisect:
    """Several packages: all good vs all bad first, then each bad alone (others good), then
    a bisection of each that alone reproduces. `ab(pins_b, label)` runs an A/B of the all-good
    pins against `pins_b` and returns its Step (version = `label`). One package: its
    bisection directly (its first step is the all-good vs all-bad A/B)."""
    packs = tuple(packages)
    if not packs:
        raise ValueError("no package to bisect")
    good = {p.name: p.pin(p.good) for p in packs}

    def with_version(pack: PackageRange, version: str) -> tuple[str, ...]:
        return tuple(pack.pin(version) if name == pack.name else pin
                     for name, pin in good.items())

    def notify(step: Step) -> Step:
        if on_step is not None:
            on_step(step)
        return step

    def bisect_one(pack: PackageRange, confirmed: Step | None) -> BisectResult:
        return bisect(list(versions(pack)),
                      lambda v: ab(with_version(pack, v), f"{pack.name}=={v}"),
                      confirmed=confirmed, on_step=on_step, package=pack.name)

    if len(packs) == 1:
        result = bisect_one(packs[0], None)
        together = result.steps[0]
        outcome: Literal["bisected", "no_effect", "bad_failed"] = (
            "bisected" if result.outcome == "found" else result.outcome)
        return MultiBisect(packs, together, results=(result,), outcome=outcome)
    all_bad = tuple(p.pin(p.bad) for p in packs)
    together = notify(_pins_step(ab, all_bad, " ".join(all_bad), "confirm"))
    if together.verdict == "failed":
        return MultiBisect(packs, together, outcome="bad_failed")
    if together.verdict != "worse":
        return MultiBisect(packs, together, outcome="no_effect")
    alone: list[tuple[str, Step]] = []
    for pack in packs:
        label = pack.pin(pack.bad)
        alone.append((pack.name, notify(_pins_step(ab, with_version(pack, pack.bad), label,
                                                   "alone"))))
    guilty = [(p, s) for p, (_, s) in zip(packs, alone, strict=True) if s.verdict == "worse"]
    if not guilty:
        return MultiBisect(packs, together, tuple(alone), outcome="needs_together")
    results = tuple(bisect_one(pack, Step(pack.bad, step.verdict, step.summary,
                                          step.elapsed_s, step.message))
                    for pack, step in guilty)
    return MultiBisect(packs, together, tuple(alone), results)


def _pins_step(ab: PinsTest, pins: tuple[str, ...], label: str, role: str) -> Step:
    def test(_version: str) -> Step:
        return ab(pins, label)
    return _timed(test, label, role)


# -- the versions between two ends ----------------------------------------------------------



def _parse(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise command_line_problem(where, f"not a version: {text!r}") from None


def select_versions(listed: Sequence[str], good: str, bad: str,
                    package: str = "the package") -> list[str]:
    """The versions from good to bad inclusive, sorted by packaging's order; pre-releases
    only when an end is one; both ends must be listed."""
    low, high = _parse(good, "--good"), _parse(bad, "--bad")
    if low >= high:
        raise command_line_problem("--good/--bad", f"{package}: the good version ({good}) "
                                   f"must be older than the bad one ({bad})")
    pre = low.is_prerelease or high.is_prerelease
    parsed: dict[Version, str] = {}
    for text in listed:
        try:
            version = Version(text)
        except InvalidVersion:
            continue  # an index may list legacy version strings: not part of a bisection
        if low <= version <= high and (pre or not version.is_prerelease or version in (
                low, high)):
            parsed.setdefault(version, text)
    for end, name in ((low, good), (high, bad)):
        if end not in parsed:
            raise command_line_problem(
                "--good" if end is low else "--bad",
                f"{package} {name} is not on the index (it lists "
                f"{', '.join(listed[:8]) or 'nothing'}{'...' if len(listed) > 8 else ''})")
    return [parsed[v] for v in sorted(parsed)]


PACKAGE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def package_ranges(names: Sequence[str], goods: Sequence[str],
                   bads: Sequence[str]) -> list[PackageRange]:
    """--package/--good/--bad triples (in order), checked."""
    if not names:
        raise command_line_problem("--package", "name at least one package to bisect")
    if not len(names) == len(goods) == len(bads):
        raise command_line_problem("--package/--good/--bad",
                                   f"give one --good and one --bad per --package (got "
                                   f"{len(names)} packages, {len(goods)} good, {len(bads)} "
                                   "bad)")
    ranges = []
    for name, good, bad in zip(names, goods, bads, strict=True):
        if not PACKAGE_NAME.match(name):
            raise command_line_problem("--package", f"not a package name: {name!r}")
        if _parse(good, "--good") >= _parse(bad, "--bad"):
            raise command_line_problem("--good/--bad", f"{name}: the good version ({good}) "
                                       f"must be older than the bad one ({bad})")
        ranges.append(PackageRange(name, good, bad))
    if len({r.name.lower() for r in ranges}) != len(ranges):
        raise command_line_problem("--package", "a package is named twice")
    return ranges


__all__ = ["BisectResult", "MultiBisect", "PackageRange", "Step", "bisect", "bisect_packages",
           "package_ranges", "select_versions"]
