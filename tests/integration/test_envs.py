"""Package environments end to end: real pip (no network: the toy wheels of
tests/toy_packages.py from a --find-links directory), real venvs, workers inside them."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.adapters.envs import BuiltEnvironment, EnvironmentBuildError, EnvironmentCache
from collector.adapters.measure import WorkerPool, run_benchmark
from collector.adapters.measure.forkservers import SERVERS
from collector.domain import catalogue as metrics
from collector.domain.model import Environment
from collector.domain.packages import Pin, parse_pins, record_names
from tests import toy_packages
from tests.toy_packages import build_toy_index, slowpoke_probe, toy_model, toy_spec

LIGHT_PRELOAD = ("collector.adapters.measure.forkserver_init",)


@dataclass(frozen=True)
class Built:
    cache: EnvironmentCache
    fast: BuiltEnvironment  # slowpoke 1.0.0
    slow: BuiltEnvironment  # slowpoke 1.4.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Two environments, built once for the module (each pip run costs seconds)."""
    index = build_toy_index(tmp_path_factory.mktemp("index"))
    cache = EnvironmentCache(tmp_path_factory.mktemp("envs"),
                             pip_args=toy_packages.pip_args(index))
    return Built(cache, cache.ensure(parse_pins(["slowpoke==1.0.0"])),
                 cache.ensure(parse_pins(["slowpoke==1.4.0"])))


def test_an_environment_has_its_pins_and_reuses_the_base_torch(built: Built) -> None:
    env = built.fast
    assert not env.cache_hit and env.build_s > 0
    assert env.pins == (Pin("slowpoke", "1.0.0"),)
    assert env.versions["slowpoke"] == "1.0.0"
    base = built.cache.ensure([])  # no pins: the base interpreter itself
    assert base.pins == () and base.cache_hit
    assert env.versions["torch"] == base.versions["torch"]  # reused, not installed
    assert not list(env.path.glob("lib/python*/site-packages/torch"))
    assert Path(env.python).is_file() and env.path.parent == built.cache.root
    assert {e.key for e in built.cache.entries()} >= {built.fast.key, built.slow.key}


def test_the_second_ensure_is_a_cache_hit_in_under_a_second(built: Built) -> None:
    started = time.monotonic()
    again = built.cache.ensure([Pin("slowpoke", "1.0.0")])
    elapsed = time.monotonic() - started
    assert again.cache_hit and elapsed < 1.0, elapsed
    assert (again.key, again.path, again.python, again.versions) == (
        built.fast.key, built.fast.path, built.fast.python, built.fast.versions)
    before = next(e for e in built.cache.entries() if e.key == again.key)
    built.cache.ensure([Pin("slowpoke", "1.0.0")])
    after = next(e for e in built.cache.entries() if e.key == again.key)
    assert after.last_used > before.last_used


def test_a_version_that_does_not_exist_is_a_clear_error_and_leaves_nothing(
        built: Built) -> None:
    before = sorted(p.name for p in built.cache.root.iterdir() if not p.name.endswith(".lock"))
    entries = built.cache.entries()
    with pytest.raises(EnvironmentBuildError) as caught:
        built.cache.ensure(parse_pins(["slowpoke==9.9"]))
    message = str(caught.value)
    assert "slowpoke==9.9" in message
    assert "No matching distribution found for slowpoke==9.9" in message
    after = sorted(p.name for p in built.cache.root.iterdir() if not p.name.endswith(".lock"))
    assert after == before
    assert [e.key for e in built.cache.entries()] == [e.key for e in entries]


def test_two_threads_asking_for_one_new_environment_build_it_once(built: Built) -> None:
    barrier = threading.Barrier(2)
    got: list[BuiltEnvironment] = []

    def ask() -> None:
        barrier.wait()
        got.append(built.cache.ensure([Pin("slowpoke", "1.2.0")]))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(env.cache_hit for env in got) == [False, True]
    assert {env.path for env in got} == {got[0].path}
    assert got[0].versions["slowpoke"] == "1.2.0"
    assert not list(built.cache.root.glob(".build-*"))


def test_a_package_that_does_not_exist_is_a_clear_error(built: Built) -> None:
    with pytest.raises(EnvironmentBuildError, match=re.escape("no-such-package-xyz==1.0")):
        built.cache.ensure(parse_pins(["no-such-package-xyz==1.0"]))


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_pools_with_different_environments_in_one_process_each_see_their_own(
        built: Built, start_method: str) -> None:
    with WorkerPool(start_method, LIGHT_PRELOAD, python=built.fast.python) as fast, \
            WorkerPool(start_method, LIGHT_PRELOAD, python=built.slow.python) as slow, \
            WorkerPool(start_method, LIGHT_PRELOAD) as plain:
        seen = {name: pool.run(slowpoke_probe, None, timeout_s=60)
                for name, pool in (("fast", fast), ("slow", slow), ("plain", plain),
                                   ("fast again", fast))}
        servers = [SERVERS[pool._server_key].pid for pool in (fast, slow)
                   if pool._server_key is not None]
    assert len(servers) == (2 if start_method == "forkserver" else 0)
    assert plain._server_key is None  # the default pool keeps multiprocessing's server
    for pid in servers:  # close() stopped each pool's own forkserver
        assert pid is not None
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    for outcome in seen.values():
        assert outcome.failure is None, outcome.failure
    payloads = {name: outcome.payload for name, outcome in seen.items()}
    assert payloads["fast"] is not None and payloads["slow"] is not None
    assert payloads["fast"]["slowpoke"] == "1.0.0"
    assert payloads["fast"]["executable"] == built.fast.python
    assert payloads["fast"]["location"].startswith(str(built.fast.path))
    assert payloads["slow"]["slowpoke"] == "1.4.0"
    assert payloads["slow"]["executable"] == built.slow.python
    assert payloads["plain"] is not None and payloads["plain"]["slowpoke"] is None
    assert payloads["fast again"] == payloads["fast"]


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_workers_in_an_environment_start_without_the_collectors_secrets(
        built: Built, start_method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_TEST_PASSWORD", "hunter2")
    with WorkerPool(start_method, LIGHT_PRELOAD, python=built.fast.python) as pool:
        outcome = pool.run(slowpoke_probe, "COLLECTOR_TEST_PASSWORD", timeout_s=60)
    assert outcome.payload is not None, outcome.failure
    assert outcome.payload["slowpoke"] == "1.0.0"
    assert outcome.payload["secret_seen"] is False


def test_a_pool_whose_interpreter_does_not_run_fails_its_benchmark_cleanly(
        tmp_path: Path) -> None:
    with WorkerPool("forkserver", LIGHT_PRELOAD, python=str(tmp_path / "nope")) as pool:
        outcome = pool.run(slowpoke_probe, None, timeout_s=30)
    assert outcome.payload is None and outcome.failure is not None
    assert outcome.failure.kind.value == "environment_unavailable"
    assert str(tmp_path / "nope") in outcome.failure.message


@pytest.fixture(scope="module")
def pools(built: Built) -> Iterator[tuple[WorkerPool, WorkerPool]]:
    with WorkerPool(python=built.fast.python) as fast, \
            WorkerPool(python=built.slow.python) as slow:
        yield fast, slow


def test_the_toy_benchmark_is_slower_in_the_slow_environment_and_records_versions(
        built: Built, pools: tuple[WorkerPool, WorkerPool], host_env: Environment,
        tmp_path: Path) -> None:
    spec = toy_spec(toy_model(tmp_path / "toy"))
    results = {}
    for env, pool in ((built.fast, pools[0]), (built.slow, pools[1])):
        result = run_benchmark(pool, spec, host_env, packages=record_names(env.pins))
        assert result.status == "ok", result.failure
        assert result.environment.packages["slowpoke"] == env.versions["slowpoke"]
        assert result.environment.packages["torch"] == env.versions["torch"]
        results[env.versions["slowpoke"]] = result
    ratio = (results["1.4.0"].metrics[metrics.CHART_LATENCY]
             / results["1.0.0"].metrics[metrics.CHART_LATENCY])
    assert ratio > 2, ratio  # 8 ms against 2 ms of sleep, plus a little real work


def test_without_packages_the_environment_records_none(
        pools: tuple[WorkerPool, WorkerPool], host_env: Environment, tmp_path: Path) -> None:
    result = run_benchmark(pools[0], toy_spec(toy_model(tmp_path / "toy")), host_env)
    assert result.status == "ok", result.failure
    assert result.environment.packages == {}
