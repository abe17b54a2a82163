from __future__ import annotations

from collections.abc import Iterator

import pytest

from collector.environment import capture_host
from collector.model import Environment
from collector.runner import WorkerPool


@pytest.fixture(scope="session")
def pool() -> Iterator[WorkerPool]:
    """One forkserver for the whole session: torch is imported once, every benchmark still
    runs in its own fresh worker process."""
    with WorkerPool() as worker_pool:
        yield worker_pool


@pytest.fixture(scope="session")
def host_env() -> Environment:
    return capture_host("test-host")
