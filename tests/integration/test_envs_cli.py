"""`collector envs list|prune` on a real cache: one environment built with pip from the toy
index (no network), listed, kept by a generous prune, removed by a tight one."""

from __future__ import annotations

import json
from pathlib import Path

from collector.adapters.envs import EnvironmentCache
from collector.domain.packages import parse_pins
from tests.helpers import run_collector as collector
from tests.toy_packages import build_toy_index, pip_args

ROOT = Path(__file__).parents[2]


def test_list_and_prune_a_built_environment(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "envs", pip_args=pip_args(build_toy_index(
        tmp_path / "index")))
    built = cache.ensure(parse_pins(["slowpoke==1.0.0"]))
    where = ("--env-cache", str(tmp_path / "envs"))

    listed = collector("envs", "list", *where, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["key"] == built.key and entry["pins"] == ["slowpoke==1.0.0"]
    assert entry["size_bytes"] > 0 and entry["versions"]["slowpoke"] == "1.0.0"
    table = collector("envs", "list", *where)
    assert "slowpoke==1.0.0" in table.stdout and "1 environments in" in table.stdout

    kept = collector("envs", "prune", *where, "--max-age-days", "30", "--max-size-gib", "100",
                     "--format", "json")
    assert kept.returncode == 0 and json.loads(kept.stdout) == []
    assert built.path.is_dir()
    removed = collector("envs", "prune", *where, "--max-size-gib", "0", "--format", "json")
    assert removed.returncode == 0, removed.stderr
    assert [e["key"] for e in json.loads(removed.stdout)] == [built.key]
    assert not built.path.exists() and cache.entries() == []


def test_prune_needs_a_bound_and_refuses_a_negative_one(tmp_path: Path) -> None:
    where = ("--env-cache", str(tmp_path / "envs"))
    for args, said in ((("envs", "prune", *where), "--max-age-days and/or --max-size-gib"),
                       (("envs", "prune", *where, "--max-age-days", "-1"),
                        "expected a number of 0 or more, got '-1'")):
        proc = collector(*args)
        assert proc.returncode == 2 and said in proc.stderr
        assert "Traceback" not in proc.stderr
