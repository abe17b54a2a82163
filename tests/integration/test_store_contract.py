"""One contract, two real stores: the embedded SQLite store and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from collector.adapters.store import SQLiteStore
from collector.adapters.store.migrate import load_migrations
from collector.domain.errors import StoreError
from collector.domain.history import Store
from collector.domain.model import Attention, Quantization
from collector.domain.series import series_info
from tests.helpers import make_run

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_record_and_read_back_a_run(store: Store) -> None:
    run = make_run(when=T0, latency=0.02)
    assert store.record_run(run) is True
    assert store.run_count() == 1
    bert, vit = run.results
    points = store.history(bert.series_id, "latency_p50_seconds")
    assert [(p.value, p.run_id) for p in points] == [(0.02, run.run_id)]
    assert points[0].time == bert.finished_at
    series = store.list_series()
    assert {s.series_id for s in series} == {bert.series_id, vit.series_id}
    info = next(s for s in series if s.series_id == bert.series_id)
    assert (info.host, info.suite, info.benchmark, info.architecture, info.source) == (
        "host-a", "s", "bert", "BertForSequenceClassification", "synthetic")
    assert info.model == series_info(run.results[0]).model  # the model's identity
    assert info.model.startswith("BertForSequenceClassification@")
    assert (info.task, info.backend, info.device, info.dtype) == (
        "text-classification", "eager", "cpu", "float32")
    assert (info.batch_size, info.sequence_length, info.new_tokens) == (1, 8, 4)
    assert info.load == ""  # not under load


def test_a_series_under_load_keeps_its_load(store: Store) -> None:
    """The load (BenchmarkSpec.load) is a series dimension: stored, read back, filtered."""
    run = make_run(when=T0, models=("llama",))
    [plain] = run.results
    serving = {"endpoint": {"url": "http://127.0.0.1:8000/v1"},
               "profile": {"kind": "poisson", "rate": 4}}
    spec = plain.spec.model_validate({**plain.spec.model_dump(mode="json"),
                                      "sequence_length": 64, "new_tokens": 16,
                                      "serving": serving})
    loaded = plain.model_copy(update={"spec": spec, "series_id": spec.series_id("host-a")})
    store.record_run(run.model_copy(update={"results": (plain, loaded)}))
    by_id = {s.series_id: s for s in store.list_series()}
    assert (by_id[loaded.series_id].load, by_id[plain.series_id].load) == ("poisson 4/s", "")
    assert by_id[loaded.series_id] == series_info(loaded)
    assert [s.series_id for s in store.list_series(load="poisson 4/s")] == [loaded.series_id]


def test_recording_is_idempotent_by_run_id(store: Store) -> None:
    run = make_run(when=T0)
    assert store.record_run(run) is True
    assert store.record_run(run) is False
    assert store.run_count() == 1
    assert len(store.history(run.results[0].series_id, "latency_p50_seconds")) == 1


def test_latest_samples_are_the_newest_scheduled_results_that_have_them(store: Store) -> None:
    """What the numerics drift of the next run is measured against."""
    def with_fingerprint(run: Any, values: list[float] | None) -> Any:
        results = tuple(r.model_copy(update={"samples": {
            **r.samples, **({"output_sample": values} if values is not None else {})}})
            for r in run.results)
        return run.model_copy(update={"results": results})

    old, new = [1.0, 2.0, 3.0], [1.5, 2.5, 3.5]
    store.record_run(with_fingerprint(make_run(when=T0, models=("bert",)), old))
    store.record_run(with_fingerprint(make_run(when=T0 + timedelta(hours=1),
                                               models=("bert",)), new))
    # The newest run has none (a failed fingerprint, an older collector): skipped.
    store.record_run(with_fingerprint(make_run(when=T0 + timedelta(hours=2),
                                               models=("bert",)), None))
    series_id = make_run(models=("bert",)).results[0].series_id
    assert store.latest_samples(series_id, ["output_sample", "output_tokens"]) == {
        "output_sample": new}
    assert store.latest_samples(series_id, ["output_tokens"]) == {}
    assert store.latest_samples("no-such-series", ["output_sample"]) == {}


def test_history_is_ordered_and_range_filtered(store: Store) -> None:
    runs = [make_run(when=T0 + timedelta(hours=h), latency=0.01 * (h + 1)) for h in range(5)]
    for run in reversed(runs):  # stored out of order, read back in time order
        store.record_run(run)
    series_id = runs[0].results[0].series_id
    all_points = store.history(series_id, "latency_p50_seconds")
    assert [round(p.value, 3) for p in all_points] == [0.01, 0.02, 0.03, 0.04, 0.05]
    window = store.history(series_id, "latency_p50_seconds",
                           start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=3))
    assert [round(p.value, 3) for p in window] == [0.02, 0.03]
    assert store.history(series_id, "no_such_metric") == []


def test_latest_value_per_series_and_metric(store: Store) -> None:
    store.record_run(make_run(when=T0, latency=0.05))
    newest = make_run(when=T0 + timedelta(days=1), latency=0.03)
    store.record_run(newest)
    store.record_run(make_run(when=T0 - timedelta(days=1), latency=0.09))
    latest = store.latest("latency_p50_seconds")
    assert {(v.series_id, v.value, v.run_id) for v in latest} == {
        (r.series_id, 0.03, newest.run_id) for r in newest.results}
    assert all(v.unit == "seconds" for v in latest)
    every = store.latest()
    assert {v.metric for v in every} == {"latency_p50_seconds", "latency_p90_seconds",
                                         "throughput_samples_per_second", "peak_rss_bytes"}


def test_series_filters(store: Store) -> None:
    store.record_run(make_run(when=T0, host="host-a"))
    store.record_run(make_run(when=T0, host="host-b", models=("bert",)))
    assert {s.host for s in store.list_series(benchmark="bert")} == {"host-a", "host-b"}
    assert [s.benchmark for s in store.list_series(host="host-b")] == ["bert"]
    assert store.list_series(batch_size=1, host="host-a", task="text-classification")
    assert store.list_series(dtype="bfloat16") == []
    with pytest.raises(ValueError, match="unknown series filter"):
        store.list_series(colour="red")


def test_quantization_and_attention_are_series_labels(store: Store,
                                                      request: pytest.FixtureRequest) -> None:
    """Variants of one model are told apart by label, not by series_id alone; the columns
    a migration backfills from the identity hold the same values."""
    run = make_run(when=T0, models=("bert",))
    [plain] = run.results
    spec = plain.spec.model_copy(update={"quantization": Quantization.INT8_DYNAMIC,
                                         "attn_implementation": Attention.SDPA})
    variant = plain.model_copy(update={"spec": spec, "series_id": spec.series_id("host-a")})
    store.record_run(run.model_copy(update={"results": (plain, variant)}))
    [found] = store.list_series(quantization="int8-dynamic")
    assert (found.series_id, found.attn_implementation) == (variant.series_id, "sdpa")
    [default] = store.list_series(quantization="none")
    assert (default.series_id, default.attn_implementation) == (plain.series_id, "auto")
    # The migration's backfill, run again on rows reset to the column defaults.
    dialect = "sqlite" if isinstance(store, SQLiteStore) else "postgres"
    [migration] = [m for m in load_migrations(dialect) if m.name == "series_variants"]
    backfill = migration.sql[migration.sql.index("UPDATE series"):].split(";")[0]
    reset = "UPDATE series SET quantization = 'none', attn_implementation = 'auto'"
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute(reset)
            conn.execute(backfill)
    else:
        with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
            conn.execute(reset)
            conn.execute(backfill)
    assert {(s.quantization, s.attn_implementation) for s in store.list_series()} == {
        ("int8-dynamic", "sdpa"), ("none", "auto")}


def test_failures_are_recorded_and_read(store: Store) -> None:
    run = make_run(when=T0, fail="vit")
    store.record_run(run)
    store.record_run(make_run(when=T0 + timedelta(hours=1)))
    failures = store.failures()
    assert len(failures) == 1
    failure = failures[0]
    assert (failure.kind, failure.message, failure.run_id) == (
        "timeout", "took too long", run.run_id)
    assert failure.series_id == run.results[1].series_id
    assert store.failures(since=T0 + timedelta(minutes=30)) == []
    assert store.failures(series_id=run.results[0].series_id) == []


def _raw(store: Store, statement: str, params: tuple[Any, ...]) -> None:
    """Write behind the store's back, with the store's own connection."""
    conn: Any = store._conn  # type: ignore[attr-defined]  # test reaches into the adapter
    if isinstance(store, SQLiteStore):
        conn.execute(statement.replace("%s", "?"), params)
    else:
        conn.execute(statement, params)


def test_a_run_is_written_atomically(store: Store) -> None:
    """A real constraint violation half-way through (samples come after runs, series,
    results and measurements) leaves nothing behind."""
    run = make_run(when=T0)
    first = run.results[0]
    _raw(store, "INSERT INTO samples (run_id, series_id, metric, idx, value) "
                "VALUES (%s, %s, %s, %s, %s)",
         (run.run_id, first.series_id, "latency_seconds", 0, 1.0))
    with pytest.raises(StoreError):
        store.record_run(run)
    assert store.run_count() == 0
    assert store.list_series() == []
    assert store.latest() == []
    _raw(store, "DELETE FROM samples WHERE run_id = %s", (run.run_id,))
    assert store.record_run(run) is True  # nothing half-written blocks the retry
    assert store.run_count() == 1
    assert len(store.latest("latency_p50_seconds")) == 2
