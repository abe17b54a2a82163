"""`collector compare` on stored runs, in both real stores: run ids, suites, time windows
and environments select the sides; stored results come back with their metrics, samples
and repetitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from collector.adapters.store import SQLiteStore
from collector.analysis.compare import compare
from collector.domain.errors import ConfigError, InputError
from collector.domain.history import Store
from collector.usecases.select import select_stored
from tests.helpers import make_run
from tests.integration.test_regressions_store import NEW, OLD, T0

ROOT = Path(__file__).parents[2]


def seed(store: Store) -> list[str]:
    """Ten hourly runs of bert: five on transformers 5.23.0 at 10 ms, five on 5.24.0 at
    13 ms (+-1 %)."""
    ids = []
    for hour in range(10):
        slow = hour >= 5
        run = make_run(when=T0 + timedelta(hours=hour), models=("bert",),
                       latency=(0.013 if slow else 0.010) * (1 + 0.01 * (hour % 3 - 1)),
                       environment=NEW if slow else OLD)
        store.record_run(run)
        ids.append(run.run_id)
    return ids


def test_two_environments_compare_from_the_store(store: Store) -> None:
    seed(store)
    a = select_stored("transformers_version=5.23.0", store)
    b = select_stored("transformers_version=5.24.0", store)
    assert len(a) == len(b) == 5
    assert {r.environment.transformers_version for r in a} == {"5.23.0"}
    # Stored results carry their samples (the latency's raw samples) and metrics.
    assert len(a[0].samples["latency_seconds"]) == 20
    assert a[0].metrics["latency_p50_seconds"] == pytest.approx(0.010, rel=0.02)
    [row] = [r for r in compare(a, b).rows if r.metric == "latency_p50_seconds"]
    assert (row.method, row.n_a, row.n_b, row.verdict) == ("welch", 5, 5, "worse")
    assert row.ratio == pytest.approx(1.3, rel=0.02)


def test_run_ids_windows_and_last(store: Store) -> None:
    ids = seed(store)
    [first] = select_stored(f"run={ids[0][:8]}", store)
    assert first.started_at == T0
    window = select_stored(f"since={(T0 + timedelta(hours=2)).isoformat()},"
                           f"until={(T0 + timedelta(hours=4)).isoformat()}", store)
    assert [r.started_at for r in window] == [T0 + timedelta(hours=3), T0 + timedelta(hours=2)]
    assert len(select_stored("suite=s,last=3", store)) == 3
    assert len(select_stored("suite=s", store)) == 10  # the default: the newest 10
    with pytest.raises(InputError, match="no stored scheduled run matches"):
        select_stored("suite=nope", store)
    for selector, message in (("colour=red", "unknown key 'colour'"),
                              ("since=yesterday", "since: expected an ISO time"),
                              ("last=0", "last: at least 1 run"), ("suite", "expected KEY=VALUE")):
        with pytest.raises(ConfigError) as caught:
            select_stored(selector, store)
        [problem] = caught.value.problems
        assert problem.field == selector and message in problem.message, str(problem)


def test_the_command_compares_selectors_of_the_local_store(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    store = SQLiteStore(path)
    try:
        seed(store)
    finally:
        store.close()
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "compare", "--local-store", str(path),
         "--a", "transformers_version=5.23.0", "--b", "transformers_version=5.24.0",
         "--format", "json", "--fail-on-regression", "0.2"],
        cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    [row] = [r for r in doc["rows"] if r["metric"] == "latency_p50_seconds"]
    assert row["word"] == "slower" and row["n_a"] == 5
