"""`collector serve` and SIGHUP (issue 23, point 6): a hangup stops serve the way SIGTERM
does (no new runs, the running benchmark's grace, the run stored as aborted, exit 0), never
an abrupt death; under nohup it stays ignored. Real `collector serve` processes on port 0."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FAST_MEASUREMENT
from tests.integration.test_serve import bench, write

ROOT = Path(__file__).parents[2]


def _hangup_as_a_terminal_sends_it() -> None:
    """In the child: SIGHUP at its default, whatever this suite was started under (nohup
    makes it ignored, and serve keeps an ignored hangup ignored, on purpose): what a serve
    started from a terminal gets. The nohup test puts nohup back in front."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


class Served:
    """A `collector serve` subprocess on port 0 (the port read from its log), in a session
    of its own so that a hangup can go to its whole process group, as a terminal's does."""

    def __init__(self, config: Path, *extra: str, prefix: tuple[str, ...] = ()) -> None:
        self.store = config.with_suffix(".db")
        self.log = config.with_suffix(".log")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "collector", "serve", "--config", str(config),
             "--port", "0", "--local-store", str(self.store), *extra], cwd=ROOT,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_hangup_as_a_terminal_sends_it)  # noqa: PLW1509 - one signal() call, no lock
        self.url = ""
        deadline = time.monotonic() + 60
        while not self.url:
            assert time.monotonic() < deadline, f"serve did not come up:\n{self.text()}"
            assert self.proc.poll() is None, self.text()
            found = re.search(r"serving /metrics on (http://\S+)", self.text())
            self.url = found.group(1) if found else ""
            time.sleep(0.2)

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.text()}"
            assert self.proc.poll() is None, self.text()
            time.sleep(0.2)

    def healthz(self) -> int:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            return int(response.status)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.store) as conn:
            return conn.execute(query).fetchall()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.mark.timeout(300)
def test_sighup_mid_run_stops_like_sigterm(tmp_path: Path) -> None:
    """Before: exit 129 at once, no "stopping" line, the run left open until the next
    start. Now: the hangup (to the whole process group, forkserver included, as a closed
    terminal sends it) stops serve gracefully and the run is stored as aborted."""
    slow = bench("slow", measurement={**FAST_MEASUREMENT, "min_duration_s": 60,
                                      "max_duration_s": 60})
    config = write(tmp_path / "c.yml", {"long": {"schedule": {"interval_s": 3600},
                                                 "benchmarks": [slow, bench("never-run", "clip")]}},
                   grace_s=1)
    serve = Served(config, "--run-at-start")
    try:
        serve.wait_log("suite long: starting")
        time.sleep(3)  # the slow benchmark's worker is running
        started = time.monotonic()
        os.killpg(serve.proc.pid, signal.SIGHUP)
        code = serve.proc.wait(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        serve.kill()
    log = serve.text()
    assert code == 0, log
    assert "stopping on SIGHUP: no new runs" in log, log
    assert re.search(r" INFO stopped$", log, re.MULTILINE), log
    assert elapsed < 15, log  # grace 1 s, then the worker is killed (as for SIGTERM)
    assert serve.rows("SELECT suite, status FROM runs") == [("long", "aborted")]
    results = serve.rows("SELECT r.status, f.kind FROM results r "
                         "LEFT JOIN failures f USING (run_id, series_id)")
    assert results == [("failed", "aborted")]  # never-run was not started


@pytest.mark.timeout(120)
def test_sighup_is_ignored_under_nohup(tmp_path: Path) -> None:
    nohup = shutil.which("nohup")
    assert nohup is not None, "coreutils' nohup is part of every machine the suite runs on"
    config = write(tmp_path / "c.yml", {"s": {"schedule": {"interval_s": 3600},
                                              "benchmarks": [bench("bert")]}})
    serve = Served(config, prefix=(nohup,))
    try:
        os.killpg(serve.proc.pid, signal.SIGHUP)
        time.sleep(1.5)  # a handled signal is logged within milliseconds
        assert serve.proc.poll() is None, serve.text()
        assert serve.healthz() == 200
        assert "stopping" not in serve.text()
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=60) == 0, serve.text()
        assert "stopping on SIGTERM: no new runs" in serve.text()
    finally:
        serve.kill()
