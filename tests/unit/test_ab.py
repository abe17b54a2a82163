"""run_ab's rounds, order, budget, stop and failures, with the measuring edge injected (one
fresh-process repetition of a side) and real environments: sides without pins are this
interpreter (no pip), a side pinned to a package no index has fails to build for real."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.envs import EnvironmentCache
from collector.analysis.ab import ab_summary, side_label
from collector.domain.catalogue import headline
from collector.domain.model import BenchmarkResult, BenchmarkSpec, FailureKind
from collector.domain.packages import Pin
from collector.usecases.ab import run_ab
from tests.helpers import make_run, spec_dict

SLOWER_B = {"a": 0.010, "b": 0.013}


def spec(repetitions: int = 1) -> BenchmarkSpec:
    measurement = {**spec_dict("bert")["measurement"], "repetitions": repetitions}
    return BenchmarkSpec.model_validate(spec_dict("bert", suite="s", measurement=measurement))


class Fake:
    """One repetition of a side: a result of the bert spec with that side's latency (a
    little jitter so the sides have a spread), logging the order of the calls."""

    def __init__(self, latency: dict[str, float], fail: str | None = None,
                 clock: list[float] | None = None, step_s: float = 0.0) -> None:
        self.latency = latency
        self.fail = fail
        self.calls: list[str] = []
        self.clock = clock
        self.step_s = step_s

    def __call__(self, side: str, _spec: BenchmarkSpec) -> BenchmarkResult:
        self.calls.append(side)
        if self.clock is not None:
            self.clock[0] += self.step_s
        jitter = 1 + 0.004 * (len(self.calls) % 3)
        run = make_run(models=("bert",), latency=self.latency[side] * jitter,
                       fail="bert" if side == self.fail else None)
        result: BenchmarkResult = run.results[0]
        return result


@pytest.fixture
def cache(tmp_path: Path) -> EnvironmentCache:
    return EnvironmentCache(tmp_path / "envs", pip_args=["--no-index", "--find-links",
                                                         str(tmp_path)])


def test_rounds_alternate_which_side_goes_first(cache: EnvironmentCache) -> None:
    fake = Fake(SLOWER_B)
    rounds: list[int] = []
    result = run_ab(spec(), (), (), rounds=4, cache=cache, repetition=fake,
                    on_round=lambda n, _a, _b: rounds.append(n))
    assert fake.calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert result.order == ("ab", "ba", "ab", "ba")
    assert result.rounds == 4 and rounds == [1, 2, 3, 4]
    assert len(result.results_a) == len(result.results_b) == 4
    assert result.failure is None
    assert result.cache_hits == (True, True)  # no pins: this interpreter, nothing built


def test_each_run_is_the_specs_repetitions_combined(cache: EnvironmentCache) -> None:
    fake = Fake(SLOWER_B)
    result = run_ab(spec(repetitions=3), (), (), rounds=2, cache=cache, repetition=fake)
    assert fake.calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert all(len(r.repetitions) == 3 for r in result.results_a + result.results_b)


def test_the_verdict_and_summary_come_from_compare_over_runs(cache: EnvironmentCache) -> None:
    result = run_ab(spec(), (), (), rounds=3, cache=cache,
                    repetition=Fake(SLOWER_B))
    row = next(r for r in result.comparison.rows
               if r.metric == headline(result.results_a[0].metrics))
    assert row.method == "welch" and row.n_a == row.n_b == 3
    summary = ab_summary(result)
    assert summary is not None
    assert summary.verdict == "worse"
    assert 1.25 < summary.ratio < 1.35
    assert summary.low is not None and summary.low > 1
    assert summary.text.startswith("A/B: the base environment is 1.3")
    assert summary.text.endswith("(slower)")
    assert summary.as_dict()["verdict"] == "worse"
    same = run_ab(spec(), (), (), rounds=3, cache=cache,
                  repetition=Fake({"a": 0.010, "b": 0.010}))
    assert (s := ab_summary(same)) is not None and s.verdict == "same"


def test_the_budget_stops_after_a_complete_round_never_before_two(
        cache: EnvironmentCache) -> None:
    clock = [0.0]
    fake = Fake(SLOWER_B, clock=clock, step_s=10.0)  # every run takes 10 s: a round 20 s
    result = run_ab(spec(), (), (), rounds=10, cache=cache, repetition=fake, budget_s=50,
                    clock=lambda: clock[0])
    # after round 2 (40 s) another 20 s round would pass 50 s: stop
    assert result.rounds == 2 and len(fake.calls) == 4
    clock[0] = 0.0
    tight = run_ab(spec(), (), (), rounds=10, cache=cache, repetition=Fake(
        SLOWER_B, clock=clock, step_s=10.0), budget_s=1, clock=lambda: clock[0])
    assert tight.rounds == 2  # the minimum, even past the budget
    clock[0] = 0.0
    roomy = run_ab(spec(), (), (), rounds=3, cache=cache, repetition=Fake(
        SLOWER_B, clock=clock, step_s=10.0), budget_s=1000, clock=lambda: clock[0])
    assert roomy.rounds == 3  # the rounds asked for bound it too


def test_stop_drops_an_incomplete_round(cache: EnvironmentCache) -> None:
    stop = threading.Event()

    class Stopping(Fake):
        def __call__(self, side: str, spec_: BenchmarkSpec) -> BenchmarkResult:
            if len(self.calls) == 2:
                stop.set()  # during round 2's first run
            return super().__call__(side, spec_)

    fake = Stopping(SLOWER_B)
    result = run_ab(spec(), (), (), rounds=5, cache=cache, repetition=fake, stop=stop)
    assert result.rounds == 1 and len(result.results_a) == len(result.results_b) == 1
    assert fake.calls == ["a", "b", "b"]


def test_a_side_that_fails_ends_the_ab_with_its_failure(cache: EnvironmentCache) -> None:
    fake = Fake(SLOWER_B, fail="b")
    result = run_ab(spec(), (), (), rounds=4, cache=cache, repetition=fake)
    assert result.rounds == 1 and fake.calls == ["a", "b"]
    assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT
    assert result.failure.message.startswith("side B (the base environment): ")
    assert ab_summary(result) is None


def test_an_environment_that_cannot_be_built_is_a_failure_not_an_exception(
        cache: EnvironmentCache) -> None:
    fake = Fake(SLOWER_B)
    result = run_ab(spec(), (), (Pin("no-such-package-x", "1.0"),), rounds=2, cache=cache,
                    repetition=fake)
    assert fake.calls == [] and result.rounds == 0
    assert result.failure is not None
    assert result.failure.kind is FailureKind.ENVIRONMENT_UNAVAILABLE
    assert "side B" in result.failure.message and "no-such-package-x" in result.failure.message
    assert result.comparison.rows == []
    assert ab_summary(result) is None


def test_side_labels_name_what_differs() -> None:
    a = (Pin("other", "2.0"), Pin("slowpoke", "1.0.0"))
    b = (Pin("other", "2.0"), Pin("slowpoke", "1.2.0"))
    assert side_label(b, a) == "slowpoke==1.2.0"
    assert side_label(a, a) == "other==2.0 slowpoke==1.0.0"
    assert side_label((), a) == "the base environment"


def test_rounds_must_be_positive(cache: EnvironmentCache) -> None:
    kwargs: dict[str, Any] = {"cache": cache, "repetition": Fake(SLOWER_B)}
    with pytest.raises(ValueError, match="at least one round"):
        run_ab(spec(), (), (), rounds=0, **kwargs)


# -- rerun's parts (collector/usecases/rerun.py)
# ----------------------------------------------------

def test_rerun_pins_are_the_recorded_versions_that_differ_from_here() -> None:
    from collector.usecases.rerun import recorded_pins

    recorded = {"transformers_version": "5.23.0", "torch_version": "2.13.0+cpu",
                "packages": {"Slow_Poke": "1.4.0", "torch": "2.13.0+cpu",
                             "transformers": "5.23.0"}}
    here = {"transformers": "5.24.0", "torch": "2.13.0+cpu", "slow-poke": "1.0.0"}
    assert recorded_pins(recorded, here) == (Pin("slow-poke", "1.4.0"),
                                             Pin("transformers", "5.23.0"))
    same = {"transformers": "5.23.0", "torch": "2.13.0+cpu", "slow-poke": "1.4.0"}
    assert recorded_pins(recorded, same) == ()  # recorded here: this interpreter
    assert recorded_pins({"torch_version": "2.12.0"}, here) == (Pin("torch", "2.12.0"),)


def test_rerun_finds_a_run_by_prefix_and_names_what_it_cannot_find(tmp_path: Path) -> None:
    from collector.adapters.store import SQLiteStore
    from collector.domain.errors import NotFoundError
    from collector.usecases.rerun import find_run, select_results

    store = SQLiteStore(tmp_path / "local.db")
    try:
        first = make_run(run_id="ab" + "0" * 30, models=("bert", "vit"))
        second = make_run(run_id="ab" + "1" * 30)
        for run in (first, second):
            store.record_run(run)
        assert find_run(store, "AB0").run_id == first.run_id
        with pytest.raises(NotFoundError, match="ambiguous: 2 runs match"):
            find_run(store, "ab")
        with pytest.raises(NotFoundError, match="no stored run has an id starting with"):
            find_run(store, "ff")
        results = store.stored_results([find_run(store, first.run_id)])
        assert [r.spec.name for r in select_results(results, "v*")] == ["vit"]
        with pytest.raises(NotFoundError, match=r"it has: bert, vit"):
            select_results(results, "gpt*")
    finally:
        store.close()
