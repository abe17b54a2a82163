"""Regressions in real stores (SQLite and PostgreSQL): the table contract, and detection
over stored history with attribution, acknowledgement, resolution and baselines."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.domain.history import ACTIVE_STATUSES, Baseline, Regression, Store
from collector.present.exposition import RegressionCollector
from collector.usecases.scan import ScanReport, accept_as_baseline, scan
from tests.helpers import make_run

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
OLD = {"transformers_version": "5.23.0", "torch_version": "2.13.0"}
NEW = {"transformers_version": "5.24.0", "torch_version": "2.13.0"}


class Feed:
    """Stores runs one hour apart and scans after each, as run-once does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.hour = 0
        self.runs: list[Any] = []

    def run(self, latency: float, **kwargs: Any) -> ScanReport:
        jitter = 1 + 0.01 * ((self.hour * 7) % 5 - 2)  # deterministic +-2% noise
        run = make_run(when=T0 + timedelta(hours=self.hour), models=("bert",),
                       latency=latency * jitter, **kwargs)
        self.hour += 1
        self.store.record_run(run)
        self.runs.append(run)
        return scan(self.store)

    def many(self, count: int, latency: float, **kwargs: Any) -> list[ScanReport]:
        return [self.run(latency, **kwargs) for _ in range(count)]


def _latency(store: Store, statuses: tuple[str, ...] | None = None) -> list[Regression]:
    return store.regressions(statuses, metric="latency_p50_seconds")


def test_a_slowdown_is_stored_with_attribution_then_acknowledged_and_resolved(
        store: Store) -> None:
    feed = Feed(store)
    feed.many(20, 0.010, environment=OLD)
    assert store.regressions() == []
    first_bad = len(feed.runs)
    feed.many(8, 0.013, environment=NEW)  # +30% after a transformers upgrade
    [reg] = _latency(store)
    assert reg.kind == "regression"
    assert reg.status == "open"
    assert reg.start_run_id == feed.runs[first_bad].run_id
    assert reg.last_good_run_id == feed.runs[first_bad - 1].run_id
    assert reg.relative_change == pytest.approx(0.30, abs=0.05)
    assert reg.before_value == pytest.approx(0.010, rel=0.03)
    assert reg.environment_diff == {"transformers_version": ["5.23.0", "5.24.0"]}
    assert reg.attribution == "transformers_version 5.23.0 -> 5.24.0"
    assert reg.confirmed_at is not None and reg.p_value is not None and reg.statistic > 4
    # Throughput is 1/latency: its drop is the same regression, seen from the other side.
    [tput] = store.regressions(metric="throughput_samples_per_second")
    assert (tput.kind, tput.status) == ("regression", "open")
    assert tput.relative_change < -0.2
    # Memory did not change: nothing there.
    assert store.regressions(metric="peak_rss_bytes") == []

    # The exporter shows the active change with its labels and value.
    registry = CollectorRegistry()
    registry.register(RegressionCollector(store))
    text = generate_latest(registry).decode()
    line = next(x for x in text.splitlines()
                if x.startswith("collector_regression_relative_change{")
                and 'metric="latency_p50_seconds"' in x)
    assert 'status="open"' in line and 'kind="regression"' in line
    assert 'attribution="transformers_version 5.23.0 -> 5.24.0"' in line
    assert f'regression_id="{reg.regression_id}"' in line and 'model="BertForSequence' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(reg.relative_change)

    # Acknowledged by a person: kept through later scans, still tracked.
    store.save_regression(replace(reg, status="acknowledged", acknowledged_by="ana",
                                  acknowledged_at=T0))
    feed.many(2, 0.013, environment=NEW)
    [acked] = _latency(store)
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "ana")

    # The level returns: resolved by itself, and no longer exported.
    feed.many(4, 0.010, environment=NEW)
    [done] = _latency(store)
    assert done.status == "resolved"
    assert done.resolved_at is not None and done.resolved_run_id is not None
    assert _latency(store, ACTIVE_STATUSES) == []
    later = generate_latest(registry).decode()
    assert not [line for line in later.splitlines()
                if line.startswith("collector_regression_relative_change{")
                and 'metric="latency_p50_seconds"' in line]


def test_an_expected_change_becomes_the_new_baseline(store: Store) -> None:
    feed = Feed(store)
    feed.many(20, 0.010)
    feed.many(8, 0.015)
    [reg] = _latency(store)
    assert reg.status == "open"
    series_id = reg.series_id
    baseline, expected = accept_as_baseline(store, series_id, "latency_p50_seconds",
                                            reason="bigger model on purpose")
    assert [r.regression_id for r in expected] == [reg.regression_id]
    assert baseline.since == reg.start_time
    assert [b.since for b in store.baselines(series_id)] == [reg.start_time]
    feed.many(12, 0.015)  # the new normal: nothing more is detected
    [kept] = _latency(store)
    assert (kept.status, kept.note) == ("expected", "bigger model on purpose")


def test_contaminated_runs_and_excursions_do_not_alert(store: Store) -> None:
    feed = Feed(store)
    feed.many(20, 0.010)
    feed.many(6, 0.030, other_cpu_fraction=0.6)  # another process took a core: flagged
    feed.many(2, 0.014)  # a two-run excursion
    feed.many(10, 0.010)
    assert [r for r in store.regressions() if r.status in ("open", "acknowledged")] == []


def test_a_busy_host_sets_runs_aside_for_time_not_for_memory(store: Store) -> None:
    """Another process's CPU use moves latency, not memory (or instruction counts): the
    same disturbed runs are no evidence of a slowdown but are of a memory rise."""
    feed = Feed(store)
    feed.many(20, 0.010)
    feed.many(10, 0.030, other_cpu_fraction=0.6, metrics={"peak_rss_bytes": 4e8})
    active = [r for r in store.regressions() if r.status in ("open", "acknowledged")]
    assert [(r.metric, r.kind) for r in active] == [("peak_rss_bytes", "regression")]


def test_other_hardware_starts_a_new_segment(store: Store) -> None:
    feed = Feed(store)
    feed.many(20, 0.010)
    feed.many(10, 0.020, environment={"cpu_model": "a much slower CPU"})
    assert store.regressions() == []


def test_regression_records_round_trip_and_filter(store: Store) -> None:
    run = make_run(when=T0, models=("bert",))
    store.record_run(run)
    sid = run.results[0].series_id
    version = store.data_version()
    reg = Regression(
        regression_id="r1", series_id=sid, metric="latency_p50_seconds", kind="regression",
        status="suspected", start_run_id=run.run_id, start_time=T0, last_good_run_id=None,
        last_good_time=None, detected_run_id=run.run_id, detected_at=T0, confirmed_at=None,
        before_value=1.0, after_value=1.2, relative_change=0.2, statistic=5.0, p_value=1e-6,
        method="m", environment_diff={"torch_version": ["2.12.0", "2.13.0"]},
        attribution="torch_version 2.12.0 -> 2.13.0")
    store.save_regression(reg)
    assert store.data_version() != version  # the exporter re-renders
    assert store.regressions() == [reg]
    store.save_regression(replace(reg, status="open", confirmed_at=T0 + timedelta(hours=1)))
    [back] = store.regressions(("open",))
    assert back.confirmed_at == T0 + timedelta(hours=1)
    assert store.regressions(("resolved",)) == []
    assert store.regressions(metric="decode_tokens_per_second") == []
    with pytest.raises(ValueError, match="unknown regression status"):
        store.regressions(("bogus",))
    store.add_baseline(Baseline(sid, "latency_p50_seconds", T0, run.run_id, "why"))
    assert store.baselines() == [Baseline(sid, "latency_p50_seconds", T0, run.run_id, "why")]
    assert store.baselines("other") == []


def _outputs(store: Store) -> list[Regression]:
    return [r for r in store.regressions() if r.kind == "outputs_changed"]


def test_changed_outputs_are_their_own_kind_attributed_and_flagged_once(store: Store) -> None:
    """Output drift is deterministic: a step is recorded (open at once, attributed) at its
    first run only, float-reordering jitter is not, an agreement drop is, and a later
    spike after the level returned is a change of its own."""
    feed = Feed(store)
    drift = {"output_max_rel_diff_ratio": 1e-7, "output_top1_agreement_ratio": 1.0}
    feed.many(6, 0.010, environment=OLD, metrics=drift)
    feed.run(0.010, environment=OLD, metrics={**drift, "output_max_rel_diff_ratio": 3e-7})
    assert _outputs(store) == []  # 1e-7 -> 3e-7: a reordering, far below the tolerance
    first_bad = len(feed.runs)
    stepped = {"output_max_rel_diff_ratio": 0.02, "output_top1_agreement_ratio": 0.875}
    feed.many(5, 0.010, environment=NEW, metrics=stepped)
    found = {r.metric: r for r in _outputs(store)}
    assert set(found) == {"output_max_rel_diff_ratio", "output_top1_agreement_ratio"}
    for record in found.values():
        assert record.status == "open" and record.confirmed_at is not None
        assert record.start_run_id == feed.runs[first_bad].run_id
        assert record.last_good_run_id == feed.runs[first_bad - 1].run_id
        assert record.attribution == "transformers_version 5.23.0 -> 5.24.0"
        assert record.method == "outputs-step/1"
    rel = found["output_max_rel_diff_ratio"]
    assert rel.before_value == pytest.approx(3e-7) and rel.after_value == 0.02
    assert rel.relative_change == pytest.approx((0.02 - 3e-7) / 1e-4)
    assert found["output_top1_agreement_ratio"].relative_change == pytest.approx(-0.125)
    # The latency did not move: no regression of any other kind.
    assert [r for r in store.regressions() if r.kind != "outputs_changed"] == []
    # Exported like the other kinds (the alert rule selects kind="outputs_changed").
    registry = CollectorRegistry()
    registry.register(RegressionCollector(store))
    lines = [x for x in generate_latest(registry).decode().splitlines()
             if x.startswith("collector_regression_relative_change{")]
    assert sum('kind="outputs_changed"' in x and 'status="open"' in x for x in lines) == 2

    # Accepted as the new baseline: detection restarts from it, nothing new.
    _, accepted = accept_as_baseline(store, feed.runs[0].results[0].series_id,
                                     "output_max_rel_diff_ratio", reason="int8 kernels now")
    assert [r.status for r in accepted] == ["expected"]
    feed.many(3, 0.010, environment=NEW, metrics=stepped)
    assert len(_outputs(store)) == 2

    # A one-run spike against the series' previous run (how an upgrade of the reference
    # itself shows) is a change each time it happens.
    spikes = {"output_token_agreement_ratio": 1.0}
    feed.many(3, 0.010, environment=NEW, metrics={**stepped, **spikes})
    for _ in range(2):
        feed.run(0.010, environment=NEW,
                 metrics={**stepped, "output_token_agreement_ratio": 0.5})
        feed.many(2, 0.010, environment=NEW, metrics={**stepped, **spikes})
    tokens = [r for r in _outputs(store) if r.metric == "output_token_agreement_ratio"]
    assert len(tokens) == 2 and all(r.before_value == 1.0 for r in tokens)
