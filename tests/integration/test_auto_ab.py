"""The automatic A/B of a confirmed regression whose attribution names package versions
(issue 14): the record that carries it in both real stores, the exporter's gauge, the CLI
listing, the bounds (off by default, max_per_cycle, model size, failures recorded), and
end to end with real package environments built from a local wheel index."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.adapters.config import AbSettings, Config, DetectionSettings, load_config
from collector.adapters.envs import EnvironmentCache
from collector.adapters.measure import WorkerPool
from collector.adapters.store import SQLiteStore, Stores
from collector.cli import main
from collector.detect.attribution import describe, environment_diff, package_changes
from collector.domain.catalogue import SIZE
from collector.domain.errors import CollectorError
from collector.domain.history import Regression, Store
from collector.domain.model import BenchmarkSpec
from collector.domain.packages import Pin
from collector.present.exposition import RegressionCollector
from collector.present.text import ab_line
from collector.usecases.auto_ab import auto_ab
from collector.usecases.cycle import detect_and_confirm, run_once
from collector.usecases.outcome import Outcome
from collector.usecases.scan import scan
from tests.helpers import make_run
from tests.toy_packages import build_toy_index, pip_args, toy_model

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=timezone.utc)
OLD = {"packages": {"slowpoke": "1.0.0", "tokenizers": "0.22.0"}}
NEW = {"packages": {"slowpoke": "1.4.0", "tokenizers": "0.22.0"}}
LATENCY = "latency_p50_seconds"


def _record(**fields: Any) -> Regression:
    base: dict[str, Any] = {
        "regression_id": "r1", "series_id": "s1", "metric": LATENCY, "kind": "regression",
        "status": "open", "start_run_id": "a" * 32, "start_time": T0,
        "last_good_run_id": None, "last_good_time": None, "detected_run_id": "b" * 32,
        "detected_at": T0, "confirmed_at": T0, "before_value": 0.01, "after_value": 0.013,
        "relative_change": 0.3, "statistic": 7.0, "p_value": 1e-6, "method": "test",
        "environment_diff": {"packages.slowpoke": ["1.0.0", "1.4.0"]},
        "attribution": "packages.slowpoke 1.0.0 -> 1.4.0"}
    return Regression(**{**base, **fields})


# -- attribution ----------------------------------------------------------------------------

def _point(environment: dict[str, Any]) -> Any:
    from collector.domain.history import RunPoint

    return RunPoint("r", T0, None, environment, "h")


def test_environment_diff_names_recorded_packages_and_their_pins() -> None:
    before = _point({"transformers_version": "5.23.0", "packages": {
        "slowpoke": "1.0.0", "tokenizers": "0.22.0", "gone": "1.0"}})
    after = _point({"transformers_version": "5.24.0", "packages": {
        "slowpoke": "1.4.0", "tokenizers": "0.22.0", "new-one": "2.0"}})
    diff = environment_diff(before, after)
    assert diff == {"transformers_version": ["5.23.0", "5.24.0"],
                    "packages.gone": ["1.0", None], "packages.new-one": [None, "2.0"],
                    "packages.slowpoke": ["1.0.0", "1.4.0"]}
    assert describe(diff) == ("transformers_version 5.23.0 -> 5.24.0; packages.gone 1.0 -> "
                              "None; packages.new-one None -> 2.0; packages.slowpoke 1.0.0 "
                              "-> 1.4.0")
    # Pins only for versions that moved from one version to another; torch stays out
    # when it did not change, and one package recorded twice is pinned once.
    diff["packages.transformers"] = ["5.23.0", "5.24.0"]
    assert package_changes(diff) == ([Pin("slowpoke", "1.0.0"), Pin("transformers", "5.23.0")],
                                     [Pin("slowpoke", "1.4.0"), Pin("transformers", "5.24.0")])
    assert package_changes({"torch_version": ["2.12.0", "2.13.0"], "config": ["x", "y"]}) == (
        [Pin("torch", "2.12.0")], [Pin("torch", "2.13.0")])
    assert package_changes({"config": ["x", "y"], "kernel": ["6.1", "6.2"]}) == ([], [])


def test_runs_without_recorded_packages_are_no_evidence_of_a_package_change() -> None:
    """A run from before environment.packages existed (or before record_packages was set)
    says nothing about packages: no packages.* entries against it."""
    old = _point({"transformers_version": "5.23.0"})
    empty = _point({"transformers_version": "5.23.0", "packages": {}})
    new = _point({"transformers_version": "5.23.0", "packages": {"slowpoke": "1.4.0"}})
    assert environment_diff(old, new) == {}
    assert environment_diff(empty, new) == {}


# -- the record in both stores ----------------------------------------------------------------

AB = {"metric": LATENCY, "ratio": 3.52, "low": 3.31, "high": 3.74, "verdict": "worse",
      "text": "A/B: slowpoke==1.4.0 is 3.52x slowpoke==1.0.0, 95% CI 3.31-3.74 (worse)",
      "a": ["slowpoke==1.0.0"], "b": ["slowpoke==1.4.0"], "rounds": 3,
      "when": "2026-07-01T09:00:00+00:00", "elapsed_s": 12.5}


def test_the_ab_is_stored_and_read_back_and_kept_by_later_saves(store: Store) -> None:
    feed = _Feed(store)
    feed.many(20, 0.010, OLD)
    feed.many(8, 0.013, NEW)
    [record] = [r for r in store.regressions(("open",), metric=LATENCY)]
    assert record.ab is None  # none ran
    assert record.environment_diff == {"packages.slowpoke": ["1.0.0", "1.4.0"]}
    store.save_regression(replace(record, ab=AB))
    [back] = store.regressions(("open",), metric=LATENCY)
    assert back.ab == AB and back == replace(record, ab=AB)
    # The detector's later saves (a scan replays and updates the record) keep it.
    feed.many(2, 0.013, NEW)
    [again] = store.regressions(("open",), metric=LATENCY)
    assert again.ab == AB
    failed = replace(record, regression_id="r-failed", ab={"failure": "no wheel", "a": []})
    store.save_regression(failed)
    assert next(r for r in store.regressions() if r.regression_id == "r-failed").ab == {
        "failure": "no wheel", "a": []}


def test_exporter_gives_the_ab_ratio_and_interval_of_active_regressions(
        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    try:
        feed = _Feed(store)
        feed.many(20, 0.010, OLD)
        feed.many(8, 0.013, NEW)
        [record] = store.regressions(("open",), metric=LATENCY)
        store.save_regression(replace(record, ab=AB))
        others = [r for r in store.regressions(("open",)) if r.metric != LATENCY]
        assert len(others) >= 2
        store.save_regression(replace(others[0], ab={"failure": "no wheel"}))
        # An A/B of another metric (the headline's, where this one had no comparison) is
        # no value of this one.
        store.save_regression(replace(others[1], ab=AB))
        registry = CollectorRegistry()
        registry.register(RegressionCollector(store))
        text = generate_latest(registry).decode()
    finally:
        store.close()
    lines = [x for x in text.splitlines() if x.startswith("collector_regression_ab_ratio{")]
    assert len(lines) == 3  # the failed A/B has no value, nor the other metric's
    values = {}
    for line in lines:
        assert f'regression_id="{record.regression_id}"' in line
        assert 'verdict="worse"' in line and f'metric="{LATENCY}"' in line
        assert 'status="open"' in line and 'benchmark="bert"' in line
        bound = line.split('bound="')[1].split('"')[0]
        values[bound] = float(line.rsplit(" ", 1)[1])
    assert values == {"estimate": 3.52, "low": 3.31, "high": 3.74}
    assert "# TYPE collector_regression_ab_ratio gauge" in text


def test_ab_line_says_the_summary_or_the_failure() -> None:
    assert ab_line(None) is None and ab_line({}) is None
    assert ab_line(AB) == AB["text"]
    assert ab_line({"failure": "no wheel for slowpoke==9.0"}) == (
        "A/B failed: no wheel for slowpoke==9.0")


# -- the automatic A/B with an A/B runner given ----------------------------------------------

class _Feed:
    """Stores runs one hour apart in a store and scans after each, as run-once does."""

    def __init__(self, store: Store, models: tuple[str, ...] = ("bert",)) -> None:
        self.store = store
        self.models = models
        self.hour = 0
        self.runs: list[Any] = []

    def many(self, count: int, latency: float | dict[str, float], environment: dict[str, Any],
             **kwargs: Any) -> None:
        for _ in range(count):
            jitter = 1 + 0.01 * ((self.hour * 7) % 5 - 2)  # deterministic +-2% noise
            for model in self.models:
                level = latency[model] if isinstance(latency, dict) else latency
                run = make_run(when=T0 + timedelta(hours=self.hour), models=(model,),
                               latency=level * jitter, environment=environment, **kwargs)
                self.store.record_run(run)
                self.runs.append(run)
            self.hour += 1
            scan(self.store)


class _Runner:
    """An A/B runner that answers as collector.usecases.ab would, and remembers what it was
    asked."""

    def __init__(self, fail: Exception | None = None, ratio: float = 1.3,
                 high: float | None = None) -> None:
        self.high = high
        self.calls: list[tuple[BenchmarkSpec, list[str], list[str], list[str]]] = []
        self.fail = fail
        self.ratio = ratio

    def __call__(self, spec: BenchmarkSpec, before: Sequence[Pin], after: Sequence[Pin],
                 metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append((spec, [str(p) for p in before], [str(p) for p in after],
                           list(metrics)))
        if self.fail is not None:
            raise self.fail
        high = self.ratio + 0.1 if self.high is None else self.high
        return {m: {"metric": m, "ratio": self.ratio, "low": self.ratio - 0.1,
                    "high": high, "verdict": "worse", "text": f"A/B: {m}"}
                for m in metrics if m == LATENCY}


def _config(**ab: Any) -> Config:
    return Config("test", (), detection=DetectionSettings(ab=AbSettings(**ab)))


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    opened = Stores(SQLiteStore(tmp_path / "local.db"), url)
    yield opened
    opened.close()


def _cycle(stores: Stores, models: tuple[str, ...] = ("bert",),
           slow: dict[str, float] | None = None, **kwargs: Any) -> Outcome:
    """History in the store of record with a confirmed step after slowpoke's upgrade; the
    cycle's outcome as run-once has it after confirmation."""
    feed = _Feed(stores.primary(), models)
    feed.many(20, 0.010, OLD, **kwargs)
    feed.many(8, slow or 0.013, NEW, **kwargs)
    confirmed = stores.primary().regressions(("open",))
    assert confirmed and all(r.kind == "regression" for r in confirmed)
    return Outcome(runs=feed.runs[-len(models):], confirmed=confirmed)


def test_a_confirmed_package_regression_gets_one_ab_saved_on_its_records(
        stores: Stores) -> None:
    outcome = _cycle(stores)
    runner = _Runner()
    done = auto_ab(_config(enabled=True, rounds=4), stores, outcome, runner)
    # One A/B for the change, asked for every metric that stepped with it.
    [(spec, before, after, metrics)] = runner.calls
    assert (spec.name, before, after) == ("bert", ["slowpoke==1.0.0"], ["slowpoke==1.4.0"])
    assert LATENCY in metrics and len(metrics) == len(outcome.confirmed) >= 2
    stored = {r.regression_id: r for r in stores.primary().regressions(("open",))}
    assert {r.regression_id for r in done.ab} == set(stored)
    latency = next(r for r in stored.values() if r.metric == LATENCY)
    assert latency.ab is not None
    assert {k: latency.ab[k] for k in ("ratio", "verdict", "text", "a", "b", "rounds")} == {
        "ratio": 1.3, "verdict": "worse", "text": f"A/B: {LATENCY}",
        "a": ["slowpoke==1.0.0"], "b": ["slowpoke==1.4.0"], "rounds": 4}
    assert latency.ab["elapsed_s"] >= 0 and datetime.fromisoformat(latency.ab["when"])
    # A metric the A/B has no comparison of says so on its record.
    other = next(r for r in stored.values() if r.metric != LATENCY)
    assert other.ab is not None and other.ab["failure"] == f"the A/B measured no {other.metric}"
    # The outcome's confirmed records are the saved ones; the next cycle runs no second A/B.
    assert {r.regression_id: r for r in done.confirmed} == stored
    again = auto_ab(_config(enabled=True), stores, replace(done, ab=[]), runner)
    assert len(runner.calls) == 1 and again.ab == []


def test_one_ab_serves_a_change_whose_metrics_start_a_run_apart(stores: Stores) -> None:
    """The detector may place the start of one slowdown's metrics a run apart (p99 is
    noisier than p50): the same series and pins are one change, one A/B."""
    outcome = _cycle(stores)
    first, *rest = outcome.confirmed
    moved = replace(first, start_run_id=outcome.runs[0].run_id)
    runner = _Runner()
    done = auto_ab(_config(enabled=True), stores, replace(outcome, confirmed=[moved, *rest]),
                   runner)
    assert len(runner.calls) == 1
    assert len(done.ab) == len(outcome.confirmed) and all(r.ab for r in done.ab)


def test_the_automatic_ab_is_off_by_default_and_bounded_per_cycle(stores: Stores) -> None:
    outcome = _cycle(stores, models=("bert", "vit"), slow={"bert": 0.013, "vit": 0.016})
    runner = _Runner()
    assert auto_ab(_config(), stores, outcome, runner) == outcome  # off by default
    assert auto_ab(_config(enabled=True, max_per_cycle=0), stores, outcome, runner) == outcome
    assert runner.calls == []
    done = auto_ab(_config(enabled=True, max_per_cycle=1), stores, outcome, runner)
    # The larger change first: vit's +60%, then nothing more this cycle.
    assert [c[0].name for c in runner.calls] == ["vit"]
    assert {r.series_id for r in done.ab} == {outcome.runs[1].results[0].series_id}
    bert = [r for r in stores.primary().regressions(("open",))
            if r.series_id == outcome.runs[0].results[0].series_id]
    assert bert and all(r.ab is None for r in bert)


def test_the_service_path_ab_tests_what_its_detection_opens(stores: Stores,
                                                            pool: WorkerPool) -> None:
    """serve's detect_and_confirm (runs already stored and forwarded): the scan that opens
    a change from scheduled runs alone A/Bs it in that call, once."""
    feed = _Feed(stores.primary())
    feed.many(20, 0.010, OLD)
    runner = _Runner()
    config = Config("test", (), detection=DetectionSettings(
        ab=AbSettings(enabled=True), contaminated_cpu_fraction=1.0))
    opened_at = None
    for index in range(10):
        run = make_run(when=T0 + timedelta(hours=20 + index), models=("bert",),
                       latency=0.013, environment=NEW)
        stores.primary().record_run(run)
        outcome = detect_and_confirm(config, stores, [run], None, pool=pool, confirm=False,
                                     ab_runner=runner)
        assert outcome.detection is not None and outcome.detection_error is None
        if opened_at is None and stores.primary().regressions(("open",), metric=LATENCY):
            opened_at = index
            assert {r.metric for r in outcome.ab} >= {LATENCY}
    assert opened_at is not None
    [(spec, before, after, _)] = runner.calls  # in the call that opened it, and only then
    assert (spec.name, before, after) == ("bert", ["slowpoke==1.0.0"], ["slowpoke==1.4.0"])
    [latency] = stores.primary().regressions(("open",), metric=LATENCY)
    assert latency.ab is not None and latency.ab["text"] == f"A/B: {LATENCY}"


def test_an_unbounded_interval_is_stored_as_no_bound(stores: Stores) -> None:
    """JSON (and so both stores) has no infinity: a bound that is not finite is None."""
    outcome = _cycle(stores)
    auto_ab(_config(enabled=True), stores, outcome, _Runner(high=float("inf")))
    [latency] = stores.primary().regressions(("open",), metric=LATENCY)
    assert latency.ab is not None and latency.ab["high"] is None and latency.ab["low"] == 1.2


def test_models_above_the_size_bound_get_no_ab(stores: Stores) -> None:
    outcome = _cycle(stores, metrics={SIZE.name: 3 * 2**30})  # 3 GiB of weights
    runner = _Runner()
    assert auto_ab(_config(enabled=True), stores, outcome, runner) == outcome  # 2048 MiB
    assert runner.calls == []
    auto_ab(_config(enabled=True, max_model_size_mib=None), stores, outcome, runner)
    assert len(runner.calls) == 1


@pytest.mark.parametrize("error", [CollectorError("environment a: no matching "
                                                  "distribution for slowpoke==1.0.0"),
                                   RuntimeError("boom")])
def test_an_ab_that_cannot_run_is_a_failure_on_the_record_not_an_exception(
        stores: Stores, error: Exception) -> None:
    outcome = _cycle(stores)
    done = auto_ab(_config(enabled=True), stores, outcome, _Runner(fail=error))
    assert done.ab and all(r.ab is not None for r in done.ab)
    for record in stores.primary().regressions(("open",)):
        assert record.ab is not None
        assert record.ab["b"] == ["slowpoke==1.4.0"] and "ratio" not in record.ab
        expected = str(error) if isinstance(error, CollectorError) else "RuntimeError: boom"
        assert record.ab["failure"] == expected
        assert ab_line(record.ab) == f"A/B failed: {expected}"


def test_a_regression_without_package_changes_gets_no_ab(stores: Stores) -> None:
    feed = _Feed(stores.primary())
    feed.many(20, 0.010, {"transformers_version": "5.23.0"})
    feed.many(8, 0.013, {"transformers_version": "5.23.0", "kernel": "other"})
    runner = _Runner()
    outcome = Outcome(runs=feed.runs[-1:], confirmed=stores.primary().regressions(("open",)))
    assert outcome.confirmed
    assert auto_ab(_config(enabled=True), stores, outcome, runner) == outcome
    assert runner.calls == []


# -- end to end: real environments, real runs ---------------------------------------------------

def _toy_config(path: Path, model: Path, index: Path, cache: Path) -> Path:
    path.write_text(textwrap.dedent(f"""\
        version: 1
        detection:
          contaminated_cpu_fraction: 1.0  # every run counts on a busy machine
          ab:
            enabled: true
            rounds: 2
            budget_s: 120
            env_cache: {json.dumps(str(cache))}
            pip_args: {json.dumps(pip_args(index))}
        environment:
          record_packages: [slowpoke]
        suites:
          toy:
            benchmarks:
              - name: slowpoke
                model: {{source: local, path: {json.dumps(str(model))}, trust_remote_code: true}}
                task: feature-extraction
                sequence_length: 8
                threads: 1
                timeout_s: 120
                measurement: {{warmup_iterations: 2, min_iterations: 10, min_duration_s: 0.0,
                               max_duration_s: 0.15}}
        """))
    return path


def test_an_upgrade_of_a_package_is_confirmed_attributed_and_ab_tested_end_to_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = build_toy_index(tmp_path / "index")
    model = toy_model(tmp_path / "model")
    cache_dir = tmp_path / "envs"
    config = load_config(_toy_config(tmp_path / "c.yml", model, index, cache_dir))
    cache = EnvironmentCache(cache_dir, pip_args=pip_args(index))
    db = tmp_path / "local.db"
    stores = Stores.open(db, None)
    with ThreadPoolExecutor(2) as builds:  # both at once: pip waits on its disk
        old, new = builds.map(cache.ensure, [[Pin("slowpoke", "1.0.0")],
                                             [Pin("slowpoke", "1.4.0")]])
    try:
        with WorkerPool(python=old.python) as pool:
            for _ in range(20):  # the detector judges nothing before 20 runs
                outcome = run_once(config, stores=stores, pool=pool)
                [result] = outcome.runs[0].results
                assert result.status == "ok", result.failure
                assert result.environment.packages == {"slowpoke": "1.0.0"}
            # (noise may open host drift of a time metric: nothing of ours changed)
            assert not [r for r in stores.local.regressions(("open",))
                        if r.kind == "regression"]
        with WorkerPool(python=new.python) as pool:
            outcome = run_once(config, stores=stores, pool=pool)
    finally:
        stores.close()
    [slow] = outcome.runs[0].results
    assert slow.status == "ok", slow.failure
    assert slow.environment.packages == {"slowpoke": "1.4.0"}
    # Confirmed in the slow cycle, attributed to the upgrade, and A/B'd in that cycle.
    assert len(outcome.confirmation_runs) == 6
    assert [r.metric for r in outcome.confirmed if r.status == "open"], (
        outcome.detection, outcome.confirmed)
    [reg] = [r for r in outcome.ab if r.metric == LATENCY]
    assert (reg.kind, reg.status) == ("regression", "open")
    assert reg.environment_diff == {"packages.slowpoke": ["1.0.0", "1.4.0"]}
    assert reg.attribution == "packages.slowpoke 1.0.0 -> 1.4.0"
    assert reg.ab is not None, reg
    assert "failure" not in reg.ab, reg.ab
    assert reg.ab["a"] == ["slowpoke==1.0.0"] and reg.ab["b"] == ["slowpoke==1.4.0"]
    assert reg.ab["verdict"] == "worse" and reg.ab["ratio"] > 2  # 8 ms of sleep against 2
    assert reg.ab["low"] > 1 and reg.ab["rounds"] == 2
    assert reg.ab["text"].startswith("A/B: slowpoke==1.4.0 is ")
    # Every record of the change carries the A/B: its metric's, or the headline's, named.
    for record in outcome.ab:
        assert record.ab is not None and "failure" not in record.ab, record.ab
        assert record.ab["text"].startswith(("A/B: ", "A/B of latency_p50_seconds: "))

    # Stored where confirmations are kept, and listed by the CLI.
    assert main(["regressions", "--local-store", str(db), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    [body] = [r for r in listed if r["regression_id"] == reg.regression_id]
    assert body["ab"] == reg.ab
    assert main(["regressions", "--local-store", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{reg.regression_id} {LATENCY}: {reg.ab['text']}" in lines
