"""pytest fixtures for real Prometheus, Pushgateway and Alertmanager servers; enable with
`pytest_plugins = ["tests.fixtures_prom"]` in tests/conftest.py (or `-p tests.fixtures_prom`).

- `pushgateway` (function): a fresh, started `PushgatewayServer`, removed after the test.
- `prometheus_factory` (function): `(scrape_jobs, rule_files=(), *, extra_config=None)` ->
  a started `PrometheusServer`; every server it made is closed after the test.
- `alertmanager_factory` (function): `(config_path=None, webhook_url=...)` -> a started
  `AlertmanagerServer`; likewise closed after the test.
- `promtool`, `amtool` (session): the paths of those binaries.

Without the binaries the tests that use them are skipped, except under CI (the `CI`
environment variable is non-empty), where they fail: CI must never skip service tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.prom_servers import (
    DEFAULT_WEBHOOK_URL,
    AlertmanagerServer,
    PrometheusServer,
    PushgatewayServer,
    ScrapeJob,
    amtool_path,
    prometheus_available,
    promtool_path,
)


class PrometheusFactory(Protocol):
    def __call__(self, scrape_jobs: Sequence[ScrapeJob] = (),
                 rule_files: Sequence[str | Path] = (), *,
                 extra_config: Mapping[str, Any] | None = None) -> PrometheusServer: ...


class AlertmanagerFactory(Protocol):
    def __call__(self, config_path: Path | None = None,
                 webhook_url: str = DEFAULT_WEBHOOK_URL) -> AlertmanagerServer: ...


def _require_binaries() -> None:
    reason = prometheus_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Prometheus tests: {reason}")
        pytest.skip(reason)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[PushgatewayServer]:
    _require_binaries()
    with PushgatewayServer(tmp_path) as server:
        yield server


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    _require_binaries()
    servers: list[PrometheusServer] = []

    def start(scrape_jobs: Sequence[ScrapeJob] = (), rule_files: Sequence[str | Path] = (), *,
              extra_config: Mapping[str, Any] | None = None) -> PrometheusServer:
        server = PrometheusServer(tmp_path, scrape_jobs, rule_files, extra_config)
        servers.append(server)  # closed at teardown even when start() fails
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[AlertmanagerFactory]:
    _require_binaries()
    servers: list[AlertmanagerServer] = []

    def start(config_path: Path | None = None,
              webhook_url: str = DEFAULT_WEBHOOK_URL) -> AlertmanagerServer:
        server = AlertmanagerServer(tmp_path, config_path, webhook_url)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def promtool() -> str:
    _require_binaries()
    return promtool_path()


@pytest.fixture(scope="session")
def amtool() -> str:
    _require_binaries()
    return amtool_path()
