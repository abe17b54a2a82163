"""The "outputs changed" rule (collector/detect/outputs.py) on deterministic drift series."""

from __future__ import annotations

import pytest

from collector.detect.outputs import changes, relative_step, worse
from collector.domain.catalogue import METRICS, Direction

LOWER, HIGHER = Direction.LOWER_IS_BETTER, Direction.HIGHER_IS_BETTER
REL = METRICS["output_max_rel_diff_ratio"].tolerance
AGREE = METRICS["output_top1_agreement_ratio"].tolerance


def test_a_persistent_step_is_flagged_at_its_first_run_only() -> None:
    values = [0.02] * 8 + [0.05] * 8
    assert changes(values, LOWER, REL) == [8]


def test_float_reordering_and_exact_zeros_are_not_changes() -> None:
    assert changes([1e-7, 3e-7, 2e-7, 1e-7, 4e-7], LOWER, REL) == []
    assert changes([0.0] * 10, LOWER, REL) == []
    assert changes([1.0] * 10, HIGHER, AGREE) == []


def test_a_difference_must_double_and_pass_the_tolerance() -> None:
    # An int8 drift of 2% that moves to 2.5%: the same kernels, rounding otherwise.
    assert changes([0.02] * 5 + [0.025] * 3, LOWER, REL) == []
    assert changes([0.02] * 5 + [0.041] * 3, LOWER, REL) == [5]
    assert changes([0.0] * 5 + [2e-4], LOWER, REL) == [5]
    assert changes([0.0] * 5 + [5e-5], LOWER, REL) == []


def test_spikes_against_the_previous_run_are_each_a_change() -> None:
    # A series compared with its own previous run: 0 while nothing changes, one run off
    # where its outputs changed (an upgrade), then 0 again at the new outputs.
    values = [0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.2, 0.0]
    assert changes(values, LOWER, REL) == [3, 6]
    agreement = [1.0, 1.0, 0.5, 1.0, 1.0, 0.75, 1.0]
    assert changes(agreement, HIGHER, AGREE) == [2, 5]


def test_improvements_are_not_changes_for_the_worse() -> None:
    assert changes([0.05] * 5 + [0.0] * 5, LOWER, REL) == []
    assert changes([0.5] * 5 + [1.0] * 5, HIGHER, AGREE) == []
    assert not worse(1.0, 1.0, Direction.NEUTRAL, 0.0)


def test_the_relative_step_is_finite_from_zero() -> None:
    assert relative_step(0.0, 1e-3, REL) == pytest.approx(10.0)
    assert relative_step(1.0, 0.5, AGREE) == pytest.approx(-0.5)
