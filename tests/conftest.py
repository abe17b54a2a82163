from __future__ import annotations

from collections.abc import Iterator

import pytest

from collector.adapters.host import capture_host
from collector.adapters.measure import WorkerPool
from collector.domain.model import Environment

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_prom"]


@pytest.fixture(autouse=True)
def _isolated_storage(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every collector it starts) gets its own local store and package
    environment cache; no test ever sees a database URL it did not set itself."""
    monkeypatch.setenv("COLLECTOR_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    # Package environments (collector/adapters/envs.py) never go to ~/.cache/collector/envs.
    monkeypatch.setenv("COLLECTOR_ENV_CACHE", str(tmp_path_factory.mktemp("envs")))
    monkeypatch.delenv("COLLECTOR_DATABASE_URL", raising=False)


@pytest.fixture(scope="session")
def pool() -> Iterator[WorkerPool]:
    """One forkserver for the whole session: torch is imported once, every benchmark still
    runs in its own fresh worker process."""
    with WorkerPool() as worker_pool:
        yield worker_pool


@pytest.fixture(scope="session")
def host_env() -> Environment:
    return capture_host("test-host")
