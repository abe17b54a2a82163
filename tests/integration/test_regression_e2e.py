"""End to end through real runs: a benchmark made slower on purpose (the synthetic model's
`delay_ms` knob) becomes a stored, attributed regression, a Prometheus gauge and a CLI
listing; acknowledging and resolving work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.adapters.measure import WorkerPool
from collector.adapters.store import Stores
from collector.domain.history import Regression
from collector.present.exposition import Exposition, ServiceCollector
from collector.usecases.cycle import run_once
from tests.helpers import benchmark_yaml

METRIC = "latency_p50_seconds"
DELAY_MS = 40.0  # the tiny model's forward takes about a millisecond


def _config(path: Path, delay_ms: float) -> Path:
    entry = benchmark_yaml("bert")
    entry["model"] = {**entry["model"], "delay_ms": delay_ms}
    entry["threads"] = 1
    document: dict[str, Any] = {
        "version": 1,
        # Every run counts here: a busy CI machine must not have its runs set aside.
        "detection": {"contaminated_cpu_fraction": 1.0},
        "suites": {"e2e": {"benchmarks": [entry]}}}
    with path.open("w") as handle:
        YAML().dump(document, handle)
    return path


def _latency(stores: Stores) -> list[Regression]:
    return [r for r in stores.local.regressions(metric=METRIC) if r.kind == "regression"]


def _status(stores: Stores, regression_id: str) -> str:
    """(Noise on a busy machine may add suspicions of its own: they come and go.)"""
    [found] = [r for r in _latency(stores) if r.regression_id == regression_id]
    return found.status


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_injected_slowdown_is_detected_attributed_exported_acked_and_resolved(
        tmp_path: Path, pool: WorkerPool) -> None:
    db = tmp_path / "local.db"
    stores = Stores.open(db, None)
    fast = load_config(_config(tmp_path / "fast.yml", 0.0))
    slow = load_config(_config(tmp_path / "slow.yml", DELAY_MS))

    def run(config: Any) -> None:
        outcome = run_once(config, stores=stores, pool=pool)
        assert outcome.store_error is None and outcome.detection_error is None
        assert [r.status for r in outcome.runs[0].results] == ["ok"]

    try:
        for _ in range(22):  # enough history to learn the noise
            run(fast)
        assert [r for r in _latency(stores) if r.status == "open"] == []
        # The first slow cycle: its run is an outlier, confirmation runs follow at once
        # and page in that same cycle; they are stored apart from the series' points.
        series_id = stores.local.list_series()[0].series_id
        outcome = run_once(slow, stores=stores, pool=pool)
        assert outcome.store_error is None and outcome.detection_error is None
        history = stores.local.series_history(series_id, 100)
        first_slow_run = history.runs[-1].run_id
        assert len(history.runs) == 23  # 22 fast + 1 slow: no confirmation point among them
        assert outcome.confirmation_runs
        assert {r.purpose for r in outcome.confirmation_runs} == {"confirmation"}
        [reg] = [r for r in _latency(stores) if r.status == "open"]
        assert reg.confirmation is not None and reg.confirmation["verdict"] == "confirmed"
        assert reg.start_run_id == first_slow_run
        assert reg.relative_change > 5  # +40 ms on about 1 ms
        # Only the injected delay changed, and it is part of the spec, not the identity:
        # the same series, attributed to a configuration change.
        assert list(reg.environment_diff) == ["config"]
        assert reg.attribution.startswith("config ")

        # Exported for Prometheus with the series labels.
        text = Exposition(stores.local, ServiceCollector({"version": "t"})).render().decode()
        [line] = [x for x in text.splitlines()
                  if x.startswith("collector_regression_relative_change{")
                  and f'regression_id="{reg.regression_id}"' in x]
        assert f'metric="{METRIC}"' in line
        assert 'status="open"' in line and 'benchmark="bert"' in line and 'suite="e2e"' in line

        # Listed and acknowledged through the CLI.
        listed = _cli("regressions", "--local-store", str(db), "--metric", METRIC, "--format",
                      "json")
        assert listed.returncode == 0, listed.stderr
        assert [r["regression_id"] for r in json.loads(listed.stdout)
                if r["kind"] == "regression" and r["status"] == "open"] == [reg.regression_id]
        acked = _cli("regressions", "ack", reg.regression_id, "--local-store", str(db))
        assert acked.returncode == 0, acked.stderr
        assert _status(stores, reg.regression_id) == "acknowledged"
        after_ack = Exposition(stores.local, ServiceCollector({"version": "t"})).render()
        assert b'status="acknowledged"' in after_ack

        # The fix ships: the level returns and the regression resolves by itself.
        for _ in range(8):
            run(fast)
            if _status(stores, reg.regression_id) == "resolved":
                break
        [done] = [r for r in _latency(stores) if r.regression_id == reg.regression_id]
        assert done.status == "resolved" and done.resolved_run_id is not None
    finally:
        stores.close()
