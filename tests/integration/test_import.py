"""`collector import` into real stores: idempotent, all or nothing, and imported history is
judged like the collector's own (a step found and attributed to the commit behind it)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from collector.adapters.imports.common import ImportedPoint, build_runs
from collector.adapters.store.postgres import PostgresStore
from collector.domain.errors import InputError, StoreError
from collector.domain.history import Store
from collector.domain.workload import Origin
from collector.usecases.importing import import_runs

T0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
METRIC = "latency_p50_seconds"


def history(days: int = 40, *, step_day: int | None = 28, step: float = 0.25,
            series: int = 2, seed: int = 7) -> list[ImportedPoint]:
    """Daily points of `series` models measured on one GPU box, 2% noise; from `step_day`
    on, the first model is `step` slower, and the commit the runs were made at changes
    that day (a new commit every day until then would blur the attribution: the module's
    history has a commit per merge, several days apart)."""
    rng = random.Random(seed)
    points = []
    for day in range(days):
        commit = "9f8e7d6" if step_day is not None and day >= step_day else "1a2b3c4"
        for index in range(series):
            slow = 1 + step if index == 0 and step_day is not None and day >= step_day else 1
            value = 0.050 * (index + 1) * slow * (1 + rng.gauss(0, 0.02))
            samples = [value * (1 + rng.gauss(0, 0.02)) for _ in range(20)]
            points.append(ImportedPoint(
                Origin.BENCHMARK_V2, f"results.jsonl:{day * series + index + 1}",
                f"run-{day}", {"name": f"model-{index}",
                               "model": {"source": "hub", "id": f"org/model-{index}"},
                               "task": "text-generation", "device": "cuda",
                               "dtype": "bfloat16", "sequence_length": 128,
                               "new_tokens": 32},
                T0 + timedelta(days=day), {METRIC: value}, {METRIC: samples},
                host="gpu-box-1",
                environment={"commit": commit, "gpu_name": "NVIDIA H100 80GB HBM3",
                             "gpu_count": 1, "transformers_version": "5.1.0"},
                duration_s=30))
    return points


def _counts(store: Store) -> tuple[int, int]:
    series = store.list_series()
    points = sum(len(store.history(s.series_id, METRIC)) for s in series)
    return len(series), points


def test_importing_twice_adds_nothing(store: Store) -> None:
    runs = build_runs(history(days=12, step_day=None))
    first = import_runs(store, runs, detect=False)
    assert (first.points, first.runs, first.added, first.series) == (24, 12, 12, 2)
    assert _counts(store) == (2, 24)
    again = import_runs(store, build_runs(history(days=12, step_day=None)), detect=False)
    assert (again.added, again.points) == (0, 24)
    assert _counts(store) == (2, 24)
    # A longer history imported later adds only its new days.
    longer = import_runs(store, build_runs(history(days=15, step_day=None)), detect=False)
    assert longer.added == 3
    assert _counts(store) == (2, 30)


def test_imported_series_say_where_they_come_from(store: Store) -> None:
    import_runs(store, build_runs(history(days=3, step_day=None, series=1)), detect=False)
    [info] = store.list_series()
    assert info.origin == "benchmark_v2"
    assert info.suite == "benchmark_v2"
    assert info.host == "gpu-box-1"
    assert info.model == "org/model-0"
    run = min(store.runs(), key=lambda r: r.started_at)
    assert run.started_at == T0
    assert run.environment["commit"] == "1a2b3c4"
    assert run.environment["gpu_name"] == "NVIDIA H100 80GB HBM3"
    points = store.history(info.series_id, METRIC)
    assert [p.time for p in points] == [T0 + timedelta(days=d, seconds=30) for d in range(3)]
    # The collector's own series of the same workload is another series.
    [result] = build_runs(history(days=1, step_day=None, series=1))[0].results
    native = result.spec.model_copy(update={"origin": None})
    assert native.series_id("gpu-box-1") != info.series_id
    assert result.spec.label.endswith("from benchmark_v2")


def test_a_step_in_imported_history_is_detected_and_attributed_to_its_commit(
        store: Store) -> None:
    report = import_runs(store, build_runs(history()))
    steps = [c for c in report.changes if c.metric == METRIC and c.kind == "regression"]
    assert len(steps) == 1, report.changes
    [step] = steps
    assert step.relative_change == pytest.approx(0.25, abs=0.05)
    assert step.start_time == T0 + timedelta(days=28, seconds=30)  # when it finished
    assert step.environment_diff["commit"] == ["1a2b3c4", "9f8e7d6"]
    assert "commit 1a2b3c4 -> 9f8e7d6" in step.attribution
    # The other model did not move: nothing about it.
    [info] = [s for s in store.list_series() if s.benchmark == "model-1"]
    assert not [c for c in report.changes if c.series_id == info.series_id]
    assert [r.regression_id for r in store.regressions(metric=METRIC)] == [step.regression_id]


def test_a_bad_record_keeps_nothing_of_the_import(tmp_path: Path) -> None:
    points = history(days=5, step_day=None, series=1)
    bad = points[3]
    points[3] = ImportedPoint(bad.origin, bad.where, bad.group, {**bad.spec, "batch_size": 0},
                              bad.time, bad.metrics)
    with pytest.raises(InputError, match=r"^results.jsonl:4: batch_size: Input should be "
                                         r"greater than or equal to 1$"):
        build_runs(points)
    unknown = ImportedPoint(bad.origin, "results.jsonl:9", "g", bad.spec, bad.time,
                            {"latency_p50_ms": 3.0})
    with pytest.raises(InputError, match=r"results\.jsonl:9: metric.* latency_p50_ms"):
        build_runs([unknown])


def test_a_write_the_database_refuses_keeps_nothing(pg_url: str) -> None:
    """One transaction: the database refusing the last run (a NUL in its host, which
    PostgreSQL's text cannot hold) rolls back the runs before it."""
    runs = build_runs(history(days=4, step_day=None, series=1))
    poisoned = runs[-1].model_copy(update={"host": "box\x00"})
    store = PostgresStore(pg_url)
    try:
        with pytest.raises(StoreError):
            store.record_runs([*runs[:-1], poisoned])
        assert store.runs() == []
        assert store.record_runs(runs) == 4
    finally:
        store.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (4,)


def test_imported_history_is_drawn_by_the_trends_dashboard(pg_url: str) -> None:
    """As Grafana would query it: the origin is a variable, the imported series a line
    labelled with its tool, the regression an annotation, all over the import's year."""
    from tests.grafana_queries import TimeRange
    from tests.integration.test_grafana import (
        READER,
        SqlRunner,
        by_uid,
        resolve_sql_variables,
        sql_targets,
    )

    store = PostgresStore(pg_url)
    try:
        report = import_runs(store, build_runs(history()))
        [step] = report.changes
        store.create_reader(READER, "reader-pw")
    finally:
        store.close()
    reader_url = pg_url.replace("postgres@", f"{READER}:reader-pw@", 1)
    window = TimeRange(T0 - timedelta(days=1), T0 + timedelta(days=45))
    with psycopg.connect(reader_url, autocommit=True) as conn:
        runner = SqlRunner(conn, window)
        board = by_uid("collector-trends")
        defs, selections, options = resolve_sql_variables(board, runner)
        assert options["origin"] == ["benchmark_v2"]
        [latency] = [t for title, t in sql_targets(board) if title == "Latency"]
        rows = runner.rows(latency["rawSql"], defs, selections, timedelta(hours=1))
        [annotations] = [a for a in board["annotations"]["list"]
                         if "regression_annotations" in a.get("target", {}).get("rawSql", "")]
        marks = runner.rows(annotations["target"]["rawSql"], defs, selections,
                            timedelta(hours=1))
    names = {name for _, name, _ in rows}
    label = ("model-0 bfloat16 eager cuda bs=1 seq=128 new=32 from benchmark_v2 "
             "@ gpu-box-1")
    assert any(name.startswith(label) for name in names), names
    assert len([1 for _, name, _ in rows if name.startswith(label)]) >= 40
    [mark] = [m for m in marks if "commit 1a2b3c4 -> 9f8e7d6" in str(m)]
    assert step.metric in str(mark)
