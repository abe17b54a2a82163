"""Serving end to end through real runs: a slowdown injected into an external server (our
fault server's token delay, 5 ms -> 40 ms, shipped as its version 1.0 -> 1.1) becomes a
confirmed regression of the time per output token stored in PostgreSQL, attributed to the
server's version, exported as a Prometheus gauge, and drawn by the Serving dashboard's SQL
(run against that PostgreSQL as Grafana's read-only login, with Grafana's macros) with the
regression's annotation. And `collector ab` of a serving benchmark whose server the
collector starts in each package environment's interpreter (`{python}`): the same fault
server, calling the toy package slowpoke's work() between tokens (tests/toy_packages.py:
2 ms in 1.1.0, 8 ms from 1.2.0 on), judged slower in 1.2.0 by the time its tokens take.

Fast: the fault server answers without a model, 8 requests of 4 tokens, 2 in flight."""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ruamel.yaml import YAML

from collector.adapters.config import Config, load_config
from collector.adapters.measure import WorkerPool
from collector.adapters.store import Stores
from collector.cli import main
from collector.domain.history import Regression
from collector.present.exposition import Exposition, ServiceCollector
from collector.usecases.cycle import run_once
from tests import toy_packages
from tests.grafana_queries import TimeRange
from tests.helpers import TINY_MODELS
from tests.integration.test_grafana import (
    READER,
    SqlRunner,
    by_uid,
    resolve_sql_variables,
    sql_targets,
)
from tests.openai_fault_server import FaultServer
from tests.toy_packages import build_toy_index

ROOT = Path(__file__).resolve().parents[2]

TPOT = "time_per_output_token_p50_seconds"
FAST_S, SLOW_S = 0.005, 0.040  # the server's delay between tokens, before and after
BASELINE_RUNS = 22  # the detector judges nothing before 20 runs (docs/detection.md)
PIXEL = timedelta(seconds=1)  # $__interval: a short range, raw points
# Durations and margins: `pytest -o log_cli=true --log-cli-level=INFO` shows them.
log = logging.getLogger(__name__)


def _config(path: Path, url: str) -> Config:
    entry = {"name": "fault-serve", "model": TINY_MODELS["llama"], "threads": 1,
             "serving": {"endpoint": {"url": url, "model_name": "m"},
                         "profile": {"kind": "concurrent", "concurrency": 2},
                         "requests": 8, "warmup_requests": 1, "input_tokens": {"mean": 8},
                         "output_tokens": {"mean": 4}, "request_timeout_s": 20}}
    document: dict[str, Any] = {
        "version": 1,
        # Every run counts here: a busy CI machine must not have its runs set aside.
        "detection": {"contaminated_cpu_fraction": 1.0},
        "suites": {"serving-e2e": {"benchmarks": [entry]}}}
    with path.open("w") as handle:
        YAML().dump(document, handle)
    return load_config(path)


def test_a_slower_server_version_is_detected_attributed_exported_and_drawn(
        tmp_path: Path, pool: WorkerPool, pg_url: str) -> None:
    began = time.monotonic()
    stores = Stores.open(tmp_path / "local.db", pg_url)
    try:
        with FaultServer(tokens=4, token_delay_s=FAST_S, version="1.0") as server:
            config = _config(tmp_path / "serving.yml", server.base_url)

            def run() -> Any:
                outcome = run_once(config, stores=stores, pool=pool)
                assert outcome.store_error is None and outcome.detection_error is None
                [result] = outcome.runs[0].results
                assert result.status == "ok", result.failure
                assert result.environment.server is not None
                return outcome

            baseline = [run().runs[0].results[0] for _ in range(BASELINE_RUNS)]
            assert {r.environment.server for r in baseline} == {"version 1.0"}
            before = [r.metrics[TPOT] for r in baseline]
            baseline_s = time.monotonic() - began

            # The new release: 8x the time between tokens. The first run is an outlier;
            # confirmation runs follow at once and page in the same cycle.
            server.set(token_delay_s=SLOW_S, version="1.1")
            outcome = run()
            first_slow_run = outcome.runs[0].run_id
            slow = outcome.runs[0].results[0]
            assert slow.environment.server == "version 1.1"
            assert outcome.confirmation_runs
            after = [slow.metrics[TPOT]] + [r.results[0].metrics[TPOT]
                                            for r in outcome.confirmation_runs]
        detected_s = time.monotonic() - began

        # (Noise on a busy machine may add suspicions of its own: they come and go.)
        records = stores.primary().regressions()
        paged = {r.metric: r for r in records if r.status == "open"
                 and r.kind == "regression" and r.start_run_id == first_slow_run}
        everything = [(r.metric, r.kind, r.status, r.start_run_id[:8], r.note) for r in records]
        assert TPOT in paged, everything
        reg = paged[TPOT]
        assert reg.confirmation is not None and reg.confirmation["verdict"] == "confirmed"
        # Nothing but the server changed: its version is what the change is put down to.
        assert reg.environment_diff == {"server": ["version 1.0", "version 1.1"]}
        assert reg.attribution == "server version 1.0 -> version 1.1"
        assert reg.relative_change > 3  # 40 ms a token against 5 ms
        # Far outside the noise: every slow run against the baseline's median (a busy
        # neighbour's spike may reach 2x it; 8x is what the server was told).
        margin = min(after) / statistics.median(before)
        assert margin > 4, (before, after)
        # Whatever else paged with it (ITL, request latency: 3 gaps of 40 ms instead of 5)
        # is put down to the server too.
        assert {r.attribution for r in paged.values()} == {reg.attribution}

        # Exported for Prometheus with the series' labels (the load among them).
        exposition = Exposition(stores.local, ServiceCollector({"version": "t"}),
                                regressions=stores.primary)
        text = exposition.render().decode()
        [line] = [x for x in text.splitlines()
                  if x.startswith("collector_regression_relative_change{")
                  and f'regression_id="{reg.regression_id}"' in x]
        assert f'metric="{TPOT}"' in line and 'status="open"' in line
        assert 'attribution="server version 1.0 -> version 1.1"' in line
        assert 'load="concurrent 2"' in line and 'benchmark="fault-serve"' in line
        assert float(line.rsplit(" ", 1)[1]) == reg.relative_change

        _check_the_serving_dashboard(stores, pg_url, reg)
    finally:
        stores.close()
    log.info("baseline %.1f s, confirmed at %.1f s, all %.1f s; TPOT ms before %.2f-%.2f "
             "(median %.2f), after %.2f-%.2f; margin %.2fx over the median, %.2fx over the "
             "slowest baseline run; paged: %s", baseline_s, detected_s,
             time.monotonic() - began, min(before) * 1e3, max(before) * 1e3,
             statistics.median(before) * 1e3, min(after) * 1e3, max(after) * 1e3, margin,
             min(after) / max(before), sorted(paged))


def _check_the_serving_dashboard(stores: Stores, pg_url: str, reg: Regression) -> None:
    """The Serving dashboard's panels and annotation, as Grafana would query them."""
    stores.remote().create_reader(READER, "reader-pw")
    reader_url = pg_url.replace("postgres@", f"{READER}:reader-pw@", 1)
    now = datetime.now(timezone.utc)
    window = TimeRange(now - timedelta(hours=1), now + timedelta(minutes=5))
    with psycopg.connect(reader_url, autocommit=True) as conn:
        runner = SqlRunner(conn, window)
        board = by_uid("collector-serving")
        defs, selections, options = resolve_sql_variables(board, runner)
        assert options["load"] == ["concurrent 2"]
        assert options["benchmark"] == ["fault-serve"]
        results = {title: runner.rows(target["rawSql"], defs, selections, PIXEL)
                   for title, target in sql_targets(board)}
        [annotations] = board["annotations"]["list"]
        marks = runner.rows(annotations["target"]["rawSql"], defs, selections, PIXEL)
    # Every panel draws this series, except the sweep's (no sweep ran) and the costs' (no
    # cost section: never a zero where no price was given).
    sweep = {"p99 TTFT against throughput", "Goodput against offered rate",
             "Points of the latest sweep", "Cost per 1M output tokens",
             "Cost per 1k requests"}
    assert sorted(t for t, rows in results.items() if not rows) == sorted(sweep)
    label = "fault-serve float32 eager cpu bs=1 seq=8 new=4 [concurrent 2] @ "
    p50 = sorted((t, v) for t, name, v in results["Time per output token"]
                 if name.startswith(label) and name.endswith(" p50"))
    values = [v for _, v in p50]
    assert len(values) >= BASELINE_RUNS + 1
    # The slowdown, visible: the last point is several times the first, and the points
    # from the slow run on sit far above the ones before it.
    assert values[-1] > 3 * values[0], values
    assert min(values[BASELINE_RUNS:]) > 4 * statistics.median(values[:BASELINE_RUNS]), values
    log.info("the Serving dashboard's TPOT p50: %d points, first %.2f ms, last %.2f ms",
             len(values), values[0] * 1e3, values[-1] * 1e3)
    tpot_marks = [a for a in marks if f" {TPOT} " in a[2]]
    assert len(tpot_marks) == 1, marks
    [(start, end, note, tags)] = tpot_marks
    assert start == reg.start_time and end >= start
    assert note.startswith(f"fault-serve {TPOT} +")
    assert note.endswith(": server version 1.0 -> version 1.1")
    assert tags.startswith(f"regression,open,{TPOT}")


# -- A/B across package environments ----------------------------------------------------------

SLOWPOKE_KNOBS = {"tokens": 4, "ttft_s": 0.02, "work_module": toy_packages.TOY_PACKAGE}


def test_ab_of_a_started_server_in_two_package_environments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = build_toy_index(tmp_path / "index")
    command = ["{python}", str(ROOT / "tests" / "openai_fault_server.py"), "--port", "{port}",
               "--knobs", json.dumps(SLOWPOKE_KNOBS)]
    entry = {"name": "slowpoke-serve", "model": TINY_MODELS["llama"], "threads": 1,
             "serving": {"server": {"command": command, "ready_timeout_s": 60},
                         "profile": {"kind": "concurrent", "concurrency": 2},
                         "requests": 8, "warmup_requests": 1, "input_tokens": {"mean": 8},
                         "output_tokens": {"mean": 4}, "request_timeout_s": 20}}
    config = tmp_path / "ab.yml"
    with config.open("w") as handle:
        YAML().dump({"version": 1, "suites": {"ab": {"benchmarks": [entry]}}}, handle)
    began = time.monotonic()
    code = main(["ab", "slowpoke-serve", "-c", str(config), "--find-links", str(index),
                 "--no-index", "--env-cache", str(tmp_path / "envs"), "--rounds", "3",
                 "--a", "slowpoke==1.1.0", "--b", "slowpoke==1.2.0", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    document = json.loads(out)
    ab = document["ab"]
    assert ab["failure"] is None and ab["order"] == ["ab", "ba", "ab"]
    assert ab["versions_a"]["slowpoke"] == "1.1.0" and ab["versions_b"]["slowpoke"] == "1.2.0"
    rows = {r["metric"]: r for r in document["rows"]}
    assert {r["method"] for r in rows.values()} == {"welch"}
    # Each token but the first waits for slowpoke.work(): 2 ms in 1.1.0, 8 ms in 1.2.0, so
    # B's time per output token is A's plus 6 ms (the server's own overhead is the same).
    tpot = rows[TPOT]
    added_ms = toy_packages.sleep_ms("1.2.0") - toy_packages.sleep_ms("1.1.0")
    expected = 1 + added_ms / 1e3 / tpot["a"]
    assert tpot["verdict"] == "worse" and tpot["ci95"][0] > 1
    assert abs(tpot["ratio"] / expected - 1) < 0.15, (tpot, expected)
    # The first token comes before any work(): its time does not move.
    ttft = rows["time_to_first_token_p50_seconds"]
    assert ttft["verdict"] == "same" and 0.9 < ttft["ratio"] < 1.1, ttft
    # The headline (request latency: 20 ms to the first token, then 3 tokens) and its line.
    summary = ab["summary"]
    assert summary["metric"] == "request_latency_p50_seconds"
    assert summary["verdict"] == "worse" and summary["ratio"] > 1.3, err
    assert summary["text"].startswith(
        f"A/B: slowpoke==1.2.0 is {summary['ratio']:.2f}x slowpoke==1.1.0, 95% CI ")
    assert summary["text"].endswith("(slower)")
    assert "round 1: A " in err and "round 3: A " in err
    log.info("A/B %.1f s (builds %.1f s); TPOT %.2f -> %.2f ms, %.2fx (expected %.2fx, CI "
             "%.2f-%.2f); TTFT %.3fx (CI %.3f-%.3f); request latency %.2fx (CI %.2f-%.2f)",
             time.monotonic() - began, ab["build_s"], tpot["a"] * 1e3, tpot["b"] * 1e3,
             tpot["ratio"], expected, *tpot["ci95"], ttft["ratio"], *ttft["ci95"],
             summary["ratio"], summary["low"], summary["high"])
