"""The bisection search (collector/usecases/bisect.py) with fake A/B tests: the first bad version at
every position, skipped versions, ambiguity, no effect, several packages."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from collector.analysis.bisect import (
    PackageRange,
    Step,
    StepVerdict,
    bisect,
    bisect_packages,
    package_ranges,
    select_versions,
)
from collector.domain.errors import ConfigError

FIVE = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]


def fake(first_bad: int, versions: list[str], failing: tuple[str, ...] = (),
         calls: list[str] | None = None) -> Callable[[str], Step]:
    def test(version: str) -> Step:
        if calls is not None:
            calls.append(version)
        if version in failing:
            return Step(version, "failed", message="no wheel")
        worse = versions.index(version) >= first_bad
        return Step(version, "worse" if worse else "same")
    return test


@pytest.mark.parametrize("first_bad", [1, 2, 3, 4])
def test_finds_the_first_bad_version_at_every_position(first_bad: int) -> None:
    calls: list[str] = []
    result = bisect(FIVE, fake(first_bad, FIVE, calls=calls))
    assert result.outcome == "found"
    assert result.first_bad == FIVE[first_bad]
    assert result.candidates == (FIVE[first_bad],)
    assert not result.ambiguous
    assert calls[0] == FIVE[-1]  # the bad end is confirmed first
    assert len(calls) <= 1 + 2  # confirm + log2(3 inner versions) rounded up
    assert "good" not in {s.verdict for s in result.steps}
    assert result.text == f"first bad version is {FIVE[first_bad]}"
    assert result.effect is not None and result.effect.version == FIVE[first_bad]


def test_no_effect_between_the_ends() -> None:
    result = bisect(FIVE, lambda v: Step(v, "same"), package="slowpoke")
    assert result.outcome == "no_effect"
    assert result.first_bad is None
    assert len(result.steps) == 1 and result.steps[0].role == "confirm"
    assert result.text == "no effect between the ends: slowpoke 1.4.0 is not worse than 1.0.0"


def test_better_at_the_bad_end_is_no_effect_and_better_inside_counts_as_good() -> None:
    assert bisect(FIVE, lambda v: Step(v, "better")).outcome == "no_effect"

    def test(version: str) -> Step:
        verdict: StepVerdict = "better" if version in ("1.1.0", "1.2.0") else "worse"
        return Step(version, verdict)
    assert bisect(FIVE, test).first_bad == "1.3.0"


def test_a_bad_end_that_fails_is_reported() -> None:
    result = bisect(FIVE, fake(2, FIVE, failing=("1.4.0",)))
    assert result.outcome == "bad_failed"
    assert "could not be measured" in result.text


def test_a_failed_version_is_skipped_and_the_search_narrows_around_it() -> None:
    seven = [f"1.{i}.0" for i in range(7)]
    calls: list[str] = []
    result = bisect(seven, fake(5, seven, failing=("1.3.0",), calls=calls))
    assert calls == ["1.6.0", "1.3.0", "1.2.0", "1.4.0", "1.5.0"]  # the middle, then around
    assert result.first_bad == "1.5.0"
    assert result.skipped == ("1.3.0",)
    assert not result.ambiguous  # the skipped version lies on the good side of 1.4.0


def test_a_skip_next_to_the_first_bad_makes_it_ambiguous() -> None:
    result = bisect(FIVE, fake(3, FIVE, failing=("1.2.0",)))
    # 1.1.0 is good, 1.2.0 could not be measured, 1.3.0 is bad: either may be the first
    assert result.first_bad == "1.3.0"
    assert result.candidates == ("1.2.0", "1.3.0")
    assert result.ambiguous
    assert result.text == "first bad version is 1.3.0 or one of the skipped 1.2.0"
    named = bisect(FIVE, fake(2, FIVE, failing=("1.1.0",)), package="slowpoke")
    assert named.candidates == ("1.1.0", "1.2.0")
    assert named.text == "first bad slowpoke version is 1.2.0 or one of the skipped 1.1.0"


def test_a_skip_off_the_path_is_never_tested() -> None:
    calls: list[str] = []
    result = bisect(FIVE, fake(1, FIVE, failing=("1.3.0",), calls=calls))
    assert result.first_bad == "1.1.0" and not result.ambiguous
    assert "1.3.0" not in calls


def test_every_inner_version_failing_leaves_them_all_candidates() -> None:
    result = bisect(FIVE, fake(4, FIVE, failing=("1.1.0", "1.2.0", "1.3.0")))
    assert result.first_bad == "1.4.0"
    assert result.candidates == ("1.1.0", "1.2.0", "1.3.0", "1.4.0")
    assert set(result.skipped) == {"1.1.0", "1.2.0", "1.3.0"}


def test_two_versions_need_only_the_confirmation() -> None:
    result = bisect(["1.0.0", "1.1.0"], lambda v: Step(v, "worse"))
    assert result.first_bad == "1.1.0" and len(result.steps) == 1


def test_every_step_is_reported_as_it_runs() -> None:
    seen: list[str] = []
    result = bisect(FIVE, fake(2, FIVE), on_step=lambda s: seen.append(s.version))
    assert seen == [s.version for s in result.steps]
    assert result.as_dict()["first_bad"] == "1.2.0"


def test_several_packages_each_bisected_when_it_alone_reproduces() -> None:
    packs = [PackageRange("slowpoke", "1.0.0", "1.4.0"), PackageRange("other", "2.0", "2.2")]
    versions = {"slowpoke": FIVE, "other": ["2.0", "2.1", "2.2"]}
    calls: list[tuple[str, ...]] = []

    def ab(pins: tuple[str, ...], label: str) -> Step:
        calls.append(pins)
        slow = dict(p.split("==") for p in pins)["slowpoke"]
        return Step(label, "worse" if FIVE.index(slow) >= 2 else "same")

    result = bisect_packages(packs, lambda p: versions[p.name], ab)
    assert result.outcome == "bisected" and result.found
    assert [(name, s.verdict) for name, s in result.alone] == [("slowpoke", "worse"),
                                                               ("other", "same")]
    assert [r.package for r in result.results] == ["slowpoke"]
    assert result.results[0].first_bad == "1.2.0"
    assert calls[0] == ("slowpoke==1.4.0", "other==2.2")  # all bad first
    # the alone step stands for the bisection's confirmation: not run twice
    assert calls.count(("slowpoke==1.4.0", "other==2.0")) == 1


def test_an_effect_that_needs_both_packages() -> None:
    packs = [PackageRange("a", "1.0", "1.1"), PackageRange("b", "1.0", "1.1")]

    def ab(pins: tuple[str, ...], label: str) -> Step:
        both = all(p.endswith("1.1") for p in pins)
        return Step(label, "worse" if both else "same")

    result = bisect_packages(packs, lambda p: [p.good, p.bad], ab)
    assert result.outcome == "needs_together"
    assert "needs them together" in result.text
    assert not result.found


def test_several_packages_without_an_effect() -> None:
    packs = [PackageRange("a", "1.0", "1.1"), PackageRange("b", "1.0", "1.1")]
    result = bisect_packages(packs, lambda p: [p.good, p.bad], lambda _p, label: Step(
        label, "same"))
    assert result.outcome == "no_effect"


def test_one_package_is_bisected_directly() -> None:
    packs = [PackageRange("slowpoke", "1.0.0", "1.4.0")]

    def ab(pins: tuple[str, ...], label: str) -> Step:
        version = pins[0].split("==")[1]
        return Step(label, "worse" if FIVE.index(version) >= 3 else "same")

    result = bisect_packages(packs, lambda _p: FIVE, ab)
    assert result.results[0].first_bad == "1.3.0"
    assert result.together.role == "confirm"
    assert result.text == "first bad slowpoke version is 1.3.0"
    none = bisect_packages(packs, lambda _p: FIVE, lambda _p, label: Step(label, "same"))
    assert none.outcome == "no_effect"
    assert none.text == "no effect between the ends: slowpoke 1.4.0 is not worse than 1.0.0"


def test_versions_between_the_ends_sorted_released_only() -> None:
    listed = ["1.4.0", "1.10.0", "1.2.0rc1", "1.2.0", "0.9", "1.1.0", "1.0.0", "2.0.0",
              "not-a-version"]
    assert select_versions(listed, "1.0.0", "1.10.0") == ["1.0.0", "1.1.0", "1.2.0",
                                                          "1.4.0", "1.10.0"]
    assert select_versions(listed, "1.1.0", "1.2.0rc1") == ["1.1.0", "1.2.0rc1"]


def test_an_end_missing_from_the_index_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        select_versions(["1.0.0", "1.1.0"], "1.0.0", "1.3.0", "slowpoke")
    assert "slowpoke 1.3.0 is not on the index" in str(caught.value.problems[0])
    with pytest.raises(ConfigError):
        select_versions(["1.0.0", "1.1.0"], "1.1.0", "1.0.0")


def test_package_ranges_checked() -> None:
    assert package_ranges(["a"], ["1.0"], ["2.0"]) == [PackageRange("a", "1.0", "2.0")]
    for names, goods, bads in ((["a"], ["1.0"], []), (["a b"], ["1"], ["2"]),
                               (["a", "A"], ["1", "1"], ["2", "2"]), (["a"], ["2"], ["1"]),
                               ([], [], [])):
        with pytest.raises(ConfigError):
            package_ranges(names, goods, bads)
