"""Every config that `check-config` accepts starts `serve` and stops it cleanly.

The service object of `collector serve` runs in-process on a loopback port 0 with a tiny
synthetic suite: schedules and serve settings come from hypothesis (edge values: huge,
infinite, fractional, malformed cron fields), derandomized so CI sees the same ones. The
config is loaded as `check-config` loads it; whatever it accepts must start (every job
scheduled with a next run time), answer /healthz and stop within a few seconds. What it
refuses is not this test's business (tests/unit/test_config_bounds.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from collector.adapters.config import Config, load_config
from collector.adapters.config.bounds import DAY_S, YEAR_S
from collector.adapters.scheduling import next_fire_times
from collector.adapters.store import SQLiteStore, Stores
from collector.domain.errors import ConfigError
from collector.usecases.service import Service
from tests.helpers import FAST_MEASUREMENT, TINY_MODELS

STOP_S = 10.0  # nothing runs: stopping is immediate whatever grace_s says

EDGE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**64),
    st.sampled_from([0, 0.5, 1.5, 59.9, DAY_S + 1, YEAR_S + 1, 1e20, 1e300, math.inf, "60",
                     None, True]))


def seconds(low: float, high: float, *, whole: bool = False) -> st.SearchStrategy[Any]:
    """Mostly values inside [low, high] (their ends included), sometimes an edge value:
    about half of the generated configs are accepted, and those are what is tested."""
    ends = st.sampled_from([low, high])
    inside = st.one_of(st.integers(math.ceil(low), int(high)), ends) if whole else st.one_of(
        st.floats(low, high), st.integers(math.ceil(low), int(high)), ends)
    return mostly(inside, EDGE)


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any],
           odds: int = 12) -> st.SearchStrategy[Any]:
    """`usual` odds-1 times in odds (st.one_of would pick each branch about as often)."""
    # Not st.integers: hypothesis favours the ends of a range.
    return st.sampled_from(range(odds)).flatmap(lambda d: rare if d == odds // 2 else usual)


def cron_field(valid: list[str]) -> st.SearchStrategy[str]:
    bad = st.sampled_from(["*/0", "60", "99", "32", "13", "L", "last", "?", "-1", "5-1x"])
    good = st.sampled_from(valid)
    return mostly(good, bad, 15)


CRON = st.tuples(
    cron_field(["*", "*/5", "0", "59", "1-5", "1,15", "*/20"]),
    cron_field(["*", "0", "23", "*/6", "2-4"]),
    cron_field(["*", "1", "15", "29", "30", "31", "1-15"]),
    cron_field(["*", "1", "2", "12", "feb", "jun-aug"]),
    cron_field(["*", "mon", "sun", "mon-fri", "0", "6"])).map(" ".join)
ZONES = st.sampled_from(["UTC", "UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu",
                         "Pacific/Chatham", "Mars/Olympus"])
SCHEDULE = st.one_of(
    st.fixed_dictionaries({"cron": mostly(CRON, st.text(max_size=10), 8)},
                          optional={"timezone": ZONES}),
    st.fixed_dictionaries({"interval_s": seconds(1, YEAR_S)},
                          optional={"timezone": ZONES, "jitter_s": seconds(0, YEAR_S)}))
SERVE = st.fixed_dictionaries({}, optional={
    "grace_s": seconds(0, DAY_S), "misfire_grace_s": seconds(1, YEAR_S, whole=True),
    "outbox_retry_s": seconds(1, DAY_S), "port": seconds(0, 65535, whole=True)})
TIMEOUT = st.one_of(st.none(), seconds(0.001, DAY_S))


def document(schedules: list[dict[str, Any]], serve: dict[str, Any],
             timeout_s: Any) -> dict[str, Any]:
    bench: dict[str, Any] = {"name": "b", "model": TINY_MODELS["bert"], "sequence_length": 8,
                             "measurement": FAST_MEASUREMENT}
    if timeout_s is not None:
        bench["timeout_s"] = timeout_s
    suites = {f"s{i}": {"schedule": schedule, "benchmarks": [{**bench, "name": f"b{i}"}]}
              for i, schedule in enumerate(schedules)}
    return {"version": 1, "serve": serve, "suites": suites}


def accepted(directory: Path, body: dict[str, Any]) -> Config | None:
    path = directory / "c.yml"
    with path.open("w") as handle:
        YAML().dump(body, handle)
    try:
        return load_config(path)  # what check-config does
    except ConfigError:
        return None


def serve_and_stop(directory: Path, config: Config) -> None:
    """Start the service as `collector serve` does (no run at start: no benchmark runs),
    check it is up and scheduled, and stop it."""
    config = dataclasses.replace(config, serve=config.serve.model_copy(
        update={"run_at_start": False, "host": "127.0.0.1"}))
    # A database that is not there: the outbox retry job is scheduled with outbox_retry_s.
    stores = Stores(SQLiteStore(directory / "local.db"), "postgresql://127.0.0.1:9/none")
    service = Service(config, stores, port=0)
    try:
        service.start()
        host, port = service.address
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        runs = service.next_runs()
        assert set(runs) == {s.name for s in config.suites}
        assert all(when is not None for when in runs.values()), runs
        assert set(next_fire_times(config, count=2)) == set(runs)  # `collector schedule`
        started = time.monotonic()
        service.request_stop()
        assert service.stopped.wait(STOP_S), "serve did not stop"
        assert time.monotonic() - started < STOP_S
    finally:
        if not service.stopped.is_set():
            service.request_stop()
            service.stopped.wait(STOP_S)
        stores.close()


@settings(max_examples=80, derandomize=True, database=None, deadline=None, print_blob=False,
          suppress_health_check=list(HealthCheck))
@given(st.lists(SCHEDULE, min_size=1, max_size=2), SERVE, TIMEOUT)
def test_every_accepted_config_starts_and_stops_serve(
        schedules: list[dict[str, Any]], serve: dict[str, Any], timeout_s: Any) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        config = accepted(directory, document(schedules, serve, timeout_s))
        if config is not None:
            serve_and_stop(directory, config)


@pytest.mark.parametrize("schedule", [
    {"interval_s": YEAR_S, "jitter_s": YEAR_S, "timezone": "Pacific/Chatham"},
    {"interval_s": 1},
    {"cron": "59 23 31 12 *"},  # once a year
    {"cron": "0 0 29 2 *"},  # once every four years
])
def test_the_extreme_accepted_settings_start_and_stop_serve(
        tmp_path: Path, schedule: dict[str, Any]) -> None:
    body = document([schedule], {"grace_s": DAY_S, "misfire_grace_s": int(YEAR_S),
                                 "outbox_retry_s": DAY_S}, DAY_S)
    config = accepted(tmp_path, body)
    assert config is not None
    serve_and_stop(tmp_path, config)


def test_a_benchmark_at_the_longest_accepted_timeout_runs_and_serve_stops(
        tmp_path: Path) -> None:
    """timeout_s: .inf raised OverflowError in the worker wait; the bound (a day) runs."""
    body = document([{"interval_s": YEAR_S}], {"grace_s": DAY_S, "run_at_start": True},
                    DAY_S)
    path = tmp_path / "c.yml"
    with path.open("w") as handle:
        YAML().dump(body, handle)
    config = load_config(path)
    stores = Stores(SQLiteStore(tmp_path / "local.db"))
    service = Service(config, stores, port=0)
    try:
        service.start()
        deadline = time.monotonic() + 240
        while not (results := stored(tmp_path / "local.db", "SELECT status FROM results")):
            assert time.monotonic() < deadline, "the run at start did not finish"
            time.sleep(0.5)
        assert results == [("ok",)]
        service.request_stop()
        assert service.stopped.wait(STOP_S)
    finally:
        if not service.stopped.is_set():
            service.request_stop()
            service.stopped.wait(60)
        stores.close()


def stored(path: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(query).fetchall()
