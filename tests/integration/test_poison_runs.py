"""A run PostgreSQL can never store (an identifier too long for its index) must not block the
outbox: every identifier is bounded where it comes in (the config, `--host`: exit 2, the
field named), and a run that reaches PostgreSQL all the same (written by an older
collector, or through the Python API) is quarantined while the rest are delivered.
Real PostgreSQL (its btree index rows hold at most 2,704 bytes)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.adapters.config.bounds import MAX_MODEL_REF_CHARS, MAX_NAME_CHARS
from collector.adapters.store import Stores
from collector.adapters.store.outbox import RetryPolicy, forward_pending
from collector.domain.errors import ConfigError
from collector.domain.model import HubSource, RunResult
from tests.helpers import TINY_MODELS, benchmark_yaml, make_run
from tests.helpers import run_collector as collector

FAST_RETRY = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1)


def noise(length: int, seed: int = 0) -> str:
    """Letters and digits that do not compress: PostgreSQL compresses a long index value
    first, and only what stays over 2,704 bytes fails (6,000 x's would go through)."""
    rng = random.Random(seed)
    return rng.choice(string.ascii_letters) + "".join(
        rng.choice(string.ascii_letters + string.digits) for _ in range(length - 1))


def remote_run_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r.hex for (r,) in conn.execute("SELECT run_id FROM runs")}


def with_hub_model(run: RunResult, model_id: str) -> RunResult:
    """The run with its first result's model a Hub id (series id recomputed, so the
    document still validates when the outbox reads it back)."""
    first, *rest = run.results
    spec = first.spec.model_copy(update={"model": HubSource(source="hub", id=model_id)})
    result = first.model_copy(update={"spec": spec, "series_id": spec.series_id(run.host)})
    return run.model_copy(update={"results": (result, *rest)})


POISON: dict[str, Callable[[], RunResult]] = {
    "host": lambda: make_run(host=noise(5_000)),
    "suite": lambda: make_run(suite=noise(6_000)),
    "hub id": lambda: with_hub_model(make_run(), noise(6_000)),
}


@pytest.mark.parametrize("field", list(POISON))
def test_a_run_postgres_cannot_index_is_quarantined_and_the_rest_delivered(
        pg_url: str, tmp_path: Path, field: str) -> None:
    stores = Stores.open(tmp_path / "local.db", pg_url, retry=FAST_RETRY)
    before, poison, after = make_run(), POISON[field](), make_run()
    for run in (before, poison, after):
        stores.local.record_run(run)
    waits: list[float] = []
    report = forward_pending(stores.local, stores.remote, policy=FAST_RETRY,
                             sleep=waits.append)
    assert waits == []  # permanent for that run: never retried
    assert report.ok, report  # nothing left waiting behind it
    assert (report.delivered, report.pending, report.newly_quarantined) == (2, 0, 1), report
    assert remote_run_ids(pg_url) == {before.run_id, after.run_id}
    [held] = stores.local.quarantined()
    assert held.run_id == poison.run_id
    assert "refused the data" in held.reason and "unreachable" not in held.reason
    # The next run goes straight through, and the next sync trips over nothing.
    later = make_run()
    stores.local.record_run(later)
    again = stores.sync()
    assert again is not None and again.ok and again.delivered == 1, again
    stores.close()


def test_db_sync_delivers_around_a_poison_run_and_detection_is_not_deferred(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path: a poison run in the outbox (an older collector's), then `db sync`
    and a real `run-once`: the rest is delivered, and detection runs."""
    from tests.integration.test_cli import write_config

    db = tmp_path / "local.db"
    stores = Stores.open(db, pg_url)
    poison, good = make_run(host=noise(5_000, seed=1)), make_run()
    stores.local.record_run(poison)
    stores.local.record_run(good)
    stores.close()
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", pg_url)
    synced = collector("db", "sync", "--local-store", str(db))
    assert "delivered 1, already present 0, pending 0, quarantined 1" in synced.stdout, (
        synced.stdout + synced.stderr)
    assert "still pending" not in synced.stderr and "Traceback" not in synced.stderr
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--local-store", str(db),
                     "--no-confirm", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "forwarded 1 run(s)" in proc.stderr
    assert "deferred" not in proc.stderr and "wait in the outbox" not in proc.stderr
    assert remote_run_ids(pg_url) >= {good.run_id}


# -- the edges: config and command line ------------------------------------------------------


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    with path.open("w") as handle:
        YAML().dump(document, handle)
    return path


def config_with(where: str, value: str) -> dict[str, Any]:
    """A one-benchmark config with `value` in the field `where`."""
    bench = benchmark_yaml("bert")
    suite_name = "s"
    if where == "suite":
        suite_name = value
    elif where == "benchmark":
        bench["name"] = value
    elif where in ("id", "revision"):
        bench["model"] = {"source": "hub", "id": "org/model", where: value}
    elif where == "path":
        bench["model"] = {"source": "local", "path": value}
    elif where == "architecture":
        bench["model"] = {**TINY_MODELS["bert"], "architecture": value}
    return {"version": 1, "suites": {suite_name: {"benchmarks": [bench]}}}


LONG = {"suite": MAX_NAME_CHARS + 1, "benchmark": MAX_NAME_CHARS + 1,
        "architecture": MAX_NAME_CHARS + 1, "id": 6_000, "revision": MAX_MODEL_REF_CHARS + 1,
        "path": MAX_MODEL_REF_CHARS + 1}
FIELD = {"suite": "suites", "benchmark": "name", "architecture": "model.architecture",
         "id": "model.id", "revision": "model.revision", "path": "model.path"}


@pytest.mark.parametrize("where", list(LONG))
def test_config_refuses_each_over_long_identifier_naming_the_field(
        tmp_path: Path, where: str) -> None:
    path = write_yaml(tmp_path / "c.yml", config_with(where, noise(LONG[where])))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert f"{path}:" in text and FIELD[where] in text, text
    assert "at most" in text and "characters" in text, text


# (A 200-character architecture is no transformers class: refused as unknown, not bounded.)
@pytest.mark.parametrize("where", [w for w in LONG if w != "architecture"])
def test_config_accepts_identifiers_at_the_bound(tmp_path: Path, where: str) -> None:
    limit = MAX_NAME_CHARS if where in ("suite", "benchmark") else MAX_MODEL_REF_CHARS
    config = load_config(write_yaml(tmp_path / "c.yml", config_with(where, noise(limit))))
    assert config.suites


@pytest.mark.parametrize(("where", "expected"), [
    ("id", "model.id: at most 500 characters (got 6,000"),
    ("suite", "at most 200 characters"),
])
def test_check_config_exits_2_with_file_line_and_field(tmp_path: Path, where: str,
                                                       expected: str) -> None:
    path = write_yaml(tmp_path / "c.yml", config_with(where, noise(6_000)))
    proc = collector("check-config", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:" in proc.stderr and expected in proc.stderr, proc.stderr


@pytest.mark.parametrize("host", [noise(5_000), "bench\nforged log line", ""])
def test_run_once_refuses_a_bad_host_before_measuring(tmp_path: Path, host: str) -> None:
    proc = collector("run-once", "--host", host, "--local-store", str(tmp_path / "l.db"),
                     timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--host" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr) < 2_000  # the value is not echoed back whole
    assert not (tmp_path / "l.db").exists()  # refused before anything was opened


def test_run_once_accepts_a_host_at_the_bound() -> None:
    from collector.cli import parser

    args = parser().parse_args(["run-once", "--host", noise(MAX_NAME_CHARS)])
    assert len(args.host) == MAX_NAME_CHARS
