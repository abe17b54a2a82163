"""The worker → parent boundary: a worker runs model code and is untrusted. Whatever it sends
(a pickle, garbage, a wrong shape, too much, half a message) is that benchmark's recorded
failure, the parent never runs code of the worker's choosing or waits past the timeout, and
the next benchmark runs; workers do not see the collector's secrets."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.adapters.measure import WorkerPool
from collector.adapters.store import Stores
from collector.domain.model import FailureKind
from collector.usecases.cycle import run_once
from tests.helpers import benchmark_yaml
from tests.integration import faults

ROOT = Path(__file__).resolve().parents[2]


def _frame(data: bytes, size: int | None = None) -> bytes:
    return struct.pack("!I", len(data) if size is None else size) + data


def _message(kind: Any, body: Any) -> bytes:
    return _frame(json.dumps({"kind": kind, "body": body}).encode())


def _assert_protocol_failure(outcome: Any, *words: str) -> None:
    failure = outcome.failure
    assert outcome.payload is None and failure is not None
    assert failure.kind is FailureKind.CRASH
    assert failure.message.startswith("worker broke the result protocol: "), failure.message
    for word in words:
        assert word in failure.message, failure.message


def _still_works(pool: WorkerPool) -> None:
    outcome = pool.run(faults.ok, "next", timeout_s=60)
    assert outcome.payload is not None and outcome.payload["echo"] == "next"


def test_a_malicious_pickle_runs_no_code_in_the_parent(pool: WorkerPool, tmp_path: Path) -> None:
    created = tmp_path / "created-by-the-worker's-pickle"
    outcome = pool.run(faults.sends_malicious_pickle, {"path": str(created)}, timeout_s=60)
    assert not created.exists()
    _assert_protocol_failure(outcome, "not JSON", "pickle")
    _still_works(pool)


@pytest.mark.parametrize(("data", "words"), [
    pytest.param(_frame(b"\xff\xfe not utf-8"), ("not JSON",), id="not-utf8"),
    pytest.param(_frame(b"{nope"), ("not JSON",), id="not-json"),
    pytest.param(_frame(b"[" * 100_000), ("not JSON",), id="nested-too-deep"),
    pytest.param(_frame(b'["result", {}]'), ("exactly 'kind' and 'body'",), id="a-pair"),
    pytest.param(_frame(b"42"), ("exactly 'kind' and 'body'",), id="not-an-object"),
    pytest.param(_message("bogus", {}), ("unknown kind 'bogus'",), id="unknown-kind"),
    pytest.param(_message("result", [1, 2]), ("body is not an object",), id="body-a-list"),
    pytest.param(_message("progress", {"phase": "x", "rel_ci": "wide"}),
                 ("malformed progress", "rel_ci"), id="bad-progress"),
    pytest.param(_message("error", {"kind": "meltdown", "type": "X", "message": "m"}),
                 ("malformed error", "kind"), id="unknown-failure-kind"),
    pytest.param(_message("error", {"kind": "aborted", "type": "X", "message": "m"}),
                 ("'aborted', which only the parent decides",), id="parent-only-kind"),
    pytest.param(_message("error", {"kind": "exception"}), ("malformed error",),
                 id="error-missing-fields"),
    pytest.param(_frame(b'{"kind": "res', size=100), ("exited after sending only",),
                 id="half-a-message-then-exit"),
])
def test_a_malformed_message_is_a_failure_and_the_next_benchmark_runs(
        pool: WorkerPool, data: bytes, words: tuple[str, ...]) -> None:
    outcome = pool.run(faults.sends_raw, {"data": data}, timeout_s=60)
    _assert_protocol_failure(outcome, *words)
    _still_works(pool)


def test_a_worker_stalled_mid_message_fails_within_its_timeout(pool: WorkerPool) -> None:
    started = time.monotonic()
    outcome = pool.run(faults.sends_raw, {"data": _frame(b'{"kind": "res', size=1000),
                                          "sleep_s": 30}, timeout_s=1)
    elapsed = time.monotonic() - started
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.TIMEOUT
    assert "it had sent 13 of the 1000 bytes of a message and stalled" in outcome.failure.message
    assert elapsed < 1 + 3, elapsed  # the timeout, plus killing and reaping the worker
    _still_works(pool)


def test_an_oversize_message_is_a_failure() -> None:
    with WorkerPool(max_message_bytes=2**20) as small:
        outcome = small.run(faults.sends_result, {"samples": [0.5] * 2**20}, timeout_s=60)
        _assert_protocol_failure(outcome, "over the limit of 1048576 bytes")
        _still_works(small)


def test_an_oversize_header_is_refused_before_its_bytes_are_read(pool: WorkerPool) -> None:
    started = time.monotonic()
    outcome = pool.run(faults.sends_raw, {"data": _frame(b"", size=2**32 - 1), "sleep_s": 30},
                       timeout_s=20)
    _assert_protocol_failure(outcome, f"a message of {2**32 - 1} bytes, over the limit")
    assert time.monotonic() - started < 10  # at once, not at the timeout


def test_a_malformed_result_fails_its_benchmark_and_the_suite_goes_on(
        tmp_path: Path, pool: WorkerPool) -> None:
    document = {"version": 1, "suites": {"s": {"benchmarks": [
        benchmark_yaml("bert", name="bad"), benchmark_yaml("vit", name="good")]}}}
    path = tmp_path / "config.yml"
    with path.open("w") as handle:
        YAML().dump(document, handle)
    stores = Stores.open(tmp_path / "local.db", None)
    try:
        outcome = run_once(load_config(path), stores=stores, pool=pool,
                           target=faults.per_benchmark, confirm=False)
    finally:
        stores.close()
    [run] = outcome.runs
    bad, good = run.results
    assert (bad.spec.name, bad.status, good.spec.name, good.status) == (
        "bad", "failed", "good", "ok")
    assert bad.failure is not None and bad.failure.kind is FailureKind.CRASH
    assert "the worker sent a malformed result: resolved_task: Field required" in (
        bad.failure.message)
    assert good.metrics == {"latency_p50_seconds": 0.01}
    assert good.environment.torch_threads == 1


# ---------------------------------------------------------------------------------------------
# Secrets

SECRETS = {
    "PGPASSWORD": "pg-secret",
    "COLLECTOR_DATABASE_URL": "postgresql://collector:url-secret@db:5432/collector",
    "COLLECTOR_READER_PASSWORD": "reader-secret",
    "COLLECTOR_GRAFANA_DB_PASSWORD": "grafana-secret",
    "RESULTS_DB": "postgresql://u:custom-url-secret@db/x",  # a custom database_url_env
    "RESULTS_DB_PLAIN": "postgresql://custom-user-secret@db/x",  # no password: ~/.pgpass
    "GITHUB_TOKEN": "gh-secret",
}
ORDINARY = {"COLLECTOR_ORDINARY_SETTING": "kept", "HF_TOKEN": "hf_kept",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
_SCRIPT = """
import json, os, sys
from collector.adapters.measure import WorkerPool
from tests.integration import faults
mode = sys.argv[1]
with WorkerPool("spawn" if mode == "spawn" else "forkserver",
                preload=("collector.adapters.measure.forkserver_init",)) as pool:
    out = pool.run(faults.reads_environment, None, timeout_s=600,
                   under_valgrind=mode == "valgrind")
print(json.dumps({"payload": out.payload, "failure": out.failure and out.failure.message,
                  "parent_still_has": sorted(n for n in %r if n in os.environ)}))
""" % (sorted(SECRETS),)  # noqa: UP031 - a literal list spliced into a script


def _worker_sees(mode: str) -> dict[str, Any]:
    """A fresh collector process (so its forkserver starts now, with the secrets set)."""
    env = {**os.environ, **SECRETS, **ORDINARY}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert answer["failure"] is None, answer["failure"]
    assert answer["parent_still_has"] == sorted(SECRETS)  # only workers lose them
    for secret in SECRETS.values():
        assert secret not in done.stdout
    return answer["payload"]  # type: ignore[no-any-return]  # JSON of reads_environment


@pytest.mark.parametrize("mode", ["forkserver", "spawn"])
def test_workers_do_not_see_the_collectors_secrets(mode: str) -> None:
    seen = _worker_sees(mode)
    places = ["environ", "proc_self"] + (["proc_parent"] if mode == "forkserver" else [])
    for place in places:
        assert set(SECRETS).isdisjoint(seen[place]), (place, seen[place])
        assert set(ORDINARY) <= set(seen[place]), (place, seen[place])


def test_valgrind_workers_do_not_see_the_collectors_secrets() -> None:
    missing = [tool for tool in ("valgrind", "cc") if shutil.which(tool) is None]
    if missing:  # as in test_instructions.py: skipped only outside CI
        reason = f"instructions mode needs {' and '.join(missing)} (apt-get install valgrind gcc)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the valgrind tests: {reason}")
        pytest.skip(reason)
    seen = _worker_sees("valgrind")
    for place in ("environ", "proc_self", "proc_parent"):  # the parent: valgrind's server
        assert set(SECRETS).isdisjoint(seen[place]), (place, seen[place])
        assert set(ORDINARY) <= set(seen[place]), (place, seen[place])
