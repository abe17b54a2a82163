"""Confirmation runs, host drift and the detector's learnt noise, in real stores (SQLite and
PostgreSQL): a suspicion is confirmed or dismissed by confirmation points in the same cycle;
confirmation runs are stored apart and never become points of their series; a step with no
change behind it is host drift; the minimum detectable effect is stored and exported."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.domain.history import Regression, Store
from collector.present.exposition import RegressionCollector
from collector.usecases.scan import confirm_series, scan
from tests.helpers import make_run

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
OLD = {"transformers_version": "5.23.0"}
NEW = {"transformers_version": "5.24.0"}
METRIC = "latency_p50_seconds"


def _feed(store: Store, latencies: list[float], **kwargs: Any) -> list[Any]:
    runs = []
    start = len(store.series_history(make_run(models=("bert",)).results[0].series_id,
                                     1000).runs)
    for i, latency in enumerate(latencies):
        jitter = 1 + 0.01 * (((start + i) * 7) % 5 - 2)  # deterministic +-2%
        run = make_run(when=T0 + timedelta(hours=start + i), models=("bert",),
                       latency=latency * jitter, **kwargs)
        store.record_run(run)
        runs.append(run)
    return runs


def _confirm(store: Store, record: Regression, values: list[float]) -> Regression:
    saved = confirm_series(store, record.series_id, {METRIC: values})
    [judged] = [r for r in saved if r.regression_id == record.regression_id]
    return judged


def _suspected(store: Store) -> Regression:
    scan(store)
    [record] = [r for r in store.regressions(metric=METRIC)]
    assert record.status == "suspected"
    return record


def test_confirmation_points_at_the_new_level_page_in_the_same_cycle(store: Store) -> None:
    _feed(store, [0.010] * 24, environment=OLD)
    _feed(store, [0.012] * 3, environment=NEW)  # +20%: flagged, not yet proven
    record = _suspected(store)
    judged = _confirm(store, record, [0.0121, 0.0119, 0.0122, 0.0120, 0.0121, 0.0120])
    assert judged.status == "open"
    assert judged.confirmed_at is not None
    assert judged.confirmation is not None
    assert judged.confirmation["verdict"] == "confirmed"
    assert judged.confirmation["points"] == 6
    [stored] = store.regressions(metric=METRIC)
    assert stored.status == "open"
    assert stored.confirmation == judged.confirmation
    # The next scheduled run keeps it open (the scheduled runs alone have not proven it).
    _feed(store, [0.012], environment=NEW)
    scan(store)
    [after] = store.regressions(metric=METRIC)
    assert after.status == "open"


def test_confirmation_points_back_at_the_old_level_dismiss_a_burst(store: Store) -> None:
    _feed(store, [0.010] * 24, environment=OLD)
    _feed(store, [0.012] * 3, environment=NEW)
    record = _suspected(store)
    judged = _confirm(store, record, [0.0100, 0.0101, 0.0099, 0.0100, 0.0100, 0.0101])
    assert judged.status == "dismissed"
    assert judged.confirmation is not None
    assert judged.confirmation["verdict"] == "dismissed"


def test_scheduled_runs_reopen_a_change_that_confirmation_dismissed(store: Store) -> None:
    _feed(store, [0.010] * 24, environment=OLD)
    _feed(store, [0.013] * 3, environment=NEW)
    record = _suspected(store)
    assert _confirm(store, record, [0.010] * 6).status == "dismissed"
    _feed(store, [0.013] * 8, environment=NEW)  # the schedule proves it after all
    scan(store)
    [after] = store.regressions(metric=METRIC)
    assert after.regression_id == record.regression_id
    assert after.status == "open"


def test_one_outlying_run_asks_for_confirmation_which_pages_in_that_cycle(
        store: Store) -> None:
    _feed(store, [0.010] * 24, environment=OLD)
    assert scan(store).triggers == []
    runs = _feed(store, [0.0115], environment=NEW)  # +15%: one run, far out
    report = scan(store)
    assert report.new == []  # one run is not a suspicion...
    assert METRIC in {t.metric for t in report.triggers}  # ...but asks for confirmation
    [trigger] = [t for t in report.triggers if t.metric == METRIC]
    assert trigger.relative_change > 0.1
    saved = confirm_series(store, trigger.series_id,
                           {METRIC: [0.0116, 0.0114, 0.0115, 0.0116, 0.0115, 0.0114]})
    [record] = [r for r in saved if r.metric == METRIC]
    assert record.status == "open" and record.kind == "regression"
    assert record.start_run_id == runs[0].run_id  # the scheduled run, not a point
    assert record.attribution == "transformers_version 5.23.0 -> 5.24.0"
    assert record.confirmation is not None
    assert record.confirmation["verdict"] == "confirmed"
    # While it is open, its worse runs ask for no more points: the record explains them.
    _feed(store, [0.0116], environment=NEW)
    assert [t for t in scan(store).triggers if t.metric == METRIC] == []
    # Back at the old level it resolves; then an outlier whose points sit at the old level
    # confirms nothing.
    _feed(store, [0.010] * 4, environment=NEW)
    scan(store)
    assert store.regressions(metric=METRIC)[0].status == "resolved"
    _feed(store, [0.0116], environment=NEW)
    again = [t for t in scan(store).triggers if t.metric == METRIC]
    assert again
    assert [r for r in confirm_series(store, trigger.series_id, {METRIC: [0.010] * 6})
            if r.status == "open" and r.regression_id != record.regression_id] == []


def test_a_slowdown_right_after_a_host_drift_suspicion_is_a_regression_at_its_own_run(
        store: Store) -> None:
    """The host drifts up a little (suspected, host drift), then a software change makes it
    much slower two runs later: the confirmed change starts at the change's run, names it,
    and pages as a regression; the drift suspicion is superseded, not promoted."""
    _feed(store, [0.010] * 25, environment=OLD)
    _feed(store, [0.0115] * 2, environment=OLD)
    runs = _feed(store, [0.030], environment=NEW)
    report = scan(store)
    [drift] = [r for r in report.new if r.metric == METRIC]
    assert (drift.kind, drift.status) == ("host_drift", "suspected")
    saved = confirm_series(store, drift.series_id, {METRIC: [0.030, 0.0302, 0.0298, 0.0301,
                                                             0.0299, 0.030]})
    [paged] = [r for r in saved if r.metric == METRIC and r.status == "open"]
    assert paged.kind == "regression" and paged.start_run_id == runs[0].run_id
    assert paged.attribution == "transformers_version 5.23.0 -> 5.24.0"
    [gone] = [r for r in store.regressions(metric=METRIC)
              if r.regression_id == drift.regression_id]
    assert gone.status == "dismissed" and (gone.note or "").startswith("superseded")
    # The next scheduled run keeps the page as it is.
    _feed(store, [0.030], environment=NEW)
    scan(store)
    [still] = [r for r in store.regressions(metric=METRIC) if r.status == "open"]
    assert still.regression_id == paged.regression_id and still.kind == "regression"


def test_a_step_with_nothing_changed_is_host_drift_and_does_not_page(store: Store) -> None:
    _feed(store, [0.010] * 24, environment=OLD)
    _feed(store, [0.013] * 8, environment=OLD)  # same software, same spec: the host moved
    scan(store)
    [record] = store.regressions(metric=METRIC)
    assert record.kind == "host_drift"
    assert record.attribution == ""
    registry = CollectorRegistry()
    registry.register(RegressionCollector(store))
    text = generate_latest(registry).decode()
    assert 'kind="host_drift"' in text
    assert 'kind="regression"' not in text


def test_the_learnt_noise_and_minimum_detectable_effect_are_stored_and_exported(
        store: Store) -> None:
    _feed(store, [0.010] * 19, environment=OLD)
    scan(store)
    assert store.detection_states() == []  # nothing is judged before 20 runs
    _feed(store, [0.010] * 6, environment=OLD)
    scan(store)
    states = {s.metric: s for s in store.detection_states()}
    state = states[METRIC]
    assert state.runs == 25
    # The +-2% deterministic jitter: a noise of about 1-2%, an MDE of a few percent.
    assert 0.005 < state.noise < 0.03
    assert state.confirm_min_detectable_effect is not None
    assert 0.03 <= state.min_detectable_effect < 0.15
    assert state.confirm_min_detectable_effect >= 0.03
    assert "peak_rss_bytes" in states  # memory: a threshold profile, still an MDE
    registry = CollectorRegistry()
    registry.register(RegressionCollector(store))
    text = generate_latest(registry).decode()
    assert "collector_detection_noise_ratio{" in text
    line = next(x for x in text.splitlines()
                if x.startswith("collector_detection_min_detectable_effect_ratio{")
                and f'metric="{METRIC}"' in x and 'within="confirmation"' in x)
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(
        state.confirm_min_detectable_effect)


def test_confirmation_runs_are_stored_apart_from_the_series_points(store: Store) -> None:
    scheduled = _feed(store, [0.010] * 3, environment=OLD)
    extra = make_run(when=T0 + timedelta(hours=10), models=("bert",),
                     latency=0.5).model_copy(update={"purpose": "confirmation"})
    store.record_run(extra)
    series_id = scheduled[0].results[0].series_id
    history = store.series_history(series_id, 100)
    assert [p.run_id for p in history.runs] == [r.run_id for r in scheduled]
    assert all(p.value < 0.1 for p in store.history(series_id, METRIC))
    assert all(v.value < 0.1 for v in store.latest(METRIC))
    [activity] = store.series_activity()
    assert activity.results == {"ok": 3}
