"""`collector ab`, `collector bisect` and `collector rerun` end to end, with no network: real
pip installs slowpoke (tests/toy_packages.py: 1.2.0 is the first slow version) from a local
--find-links directory into real environments, and the toy model's workers run in them.
The index also holds a broken wheel, 1.0.5, that pip cannot install. Environments are shared
by the module (one cache directory); measurement is tiny and rounds are two."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.envs import EnvironmentCache, base_versions
from collector.adapters.host import capture_host
from collector.adapters.store import SQLiteStore
from collector.cli import main
from collector.domain import catalogue as metrics
from collector.domain.model import BenchmarkResult, MeasurementInfo, RunResult
from collector.domain.packages import parse_pins
from collector.usecases.select import select_spec
from tests import toy_packages
from tests.toy_packages import build_toy_index, toy_model, toy_spec, toy_spec_dict

BROKEN = "1.0.5"


@dataclass(frozen=True)
class Toy:
    root: Path
    index: Path
    config: Path
    cache: Path
    model: Path

    def options(self) -> list[str]:
        return ["-c", str(self.config), "--find-links", str(self.index), "--no-index",
                "--env-cache", str(self.cache), "--rounds", "2"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    root = tmp_path_factory.mktemp("toy")
    index = build_toy_index(root / "index")
    (index / f"{toy_packages.TOY_PACKAGE}-{BROKEN}-py3-none-any.whl").write_bytes(
        b"not a zip file")
    model = toy_model(root / "model")
    entry = toy_spec_dict(model)
    entry.pop("suite")
    config = root / "config.yml"
    with config.open("w") as handle:
        YAML().dump({"version": 1, "suites": {"toy": {"benchmarks": [entry]}}}, handle)
    cache = root / "envs"
    builder = EnvironmentCache(cache, pip_args=toy_packages.pip_args(index))
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.4.0"):  # what the tests measure
        builder.ensure(parse_pins([f"slowpoke=={version}"]))
    return Toy(root, index, config, cache, model)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ab_finds_the_slower_version(toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ab", "slowpoke", *toy.options(), "--a", "slowpoke==1.0.0",
                         "--b", "slowpoke==1.4.0", "--format", "json", "--fail-on-regression")
    assert code == 5, err  # B judged worse, --fail-on-regression
    document = json.loads(out)
    assert document["format"] == "collector-comparison"
    ab = document["ab"]
    assert ab["rounds"] == 2 and ab["order"] == ["ab", "ba"]
    assert ab["cache_hits"] == [True, True]  # built by the fixture: found in the cache
    assert ab["versions_a"]["slowpoke"] == "1.0.0" and ab["versions_b"]["slowpoke"] == "1.4.0"
    summary = ab["summary"]
    assert summary["metric"] == metrics.CHART_LATENCY
    assert summary["verdict"] == "worse" and summary["ratio"] > 2  # 8 ms sleeps vs 2 ms
    assert summary["low"] > 1.5
    assert summary["text"].startswith("A/B: slowpoke==1.4.0 is ")
    assert summary["text"].endswith("(slower)")
    [row] = [r for r in document["rows"] if r["metric"] == metrics.CHART_LATENCY]
    assert (row["method"], row["n_a"], row["n_b"]) == ("welch", 2, 2)
    assert "round 1: A " in err and "round 2: A " in err


def test_ab_as_markdown_below_the_fail_threshold(toy: Toy,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # 4x slower is worse, but not by the 1000 % asked for: exit 0
    code, out, err = run(capsys, "ab", "slow*", *toy.options(), "--a", "slowpoke==1.0.0",
                         "--b", "slowpoke==1.2.0", "--format", "markdown",
                         "--fail-on-regression", "10")
    assert code == 0, err
    assert out.startswith("**collector compare**: A = slowpoke==1.0.0, B = slowpoke==1.2.0: ")
    assert "A/B: slowpoke==1.2.0 is " in out and "(slower)" in out
    assert "environments: A cached, B cached" in out


def test_ab_with_a_version_that_cannot_be_installed(toy: Toy,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "ab", "slowpoke", *toy.options(), "--a", "slowpoke==1.0.0",
                          "--b", f"slowpoke=={BROKEN}")
    assert code == 1
    assert "A/B failed: side B: could not build the environment slowpoke==1.0.5" in err
    assert "Traceback" not in err


def test_ab_command_line_errors(toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "ab", "nothing*", *toy.options(), "--a", "slowpoke==1.0.0")
    assert code == 2 and "no benchmark matches nothing*" in err
    code, _out, err = run(capsys, "ab", "slowpoke", *toy.options(), "--a", "slowpoke>=1.0")
    assert code == 2 and "not an exact pin" in err
    code, _out, err = run(capsys, "ab", "slowpoke", *toy.options())
    assert code == 2 and "pin at least one side" in err


def test_bisect_names_the_first_slow_version(toy: Toy,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "bisect", "slowpoke", *toy.options(), "--package",
                         "slowpoke", "--good", "1.0.0", "--bad", "1.4.0", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["outcome"] == "bisected"
    [result] = document["results"]
    assert result["versions"] == ["1.0.0", BROKEN, "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    assert result["first_bad"] == toy_packages.FIRST_SLOW
    assert result["candidates"] == [toy_packages.FIRST_SLOW]
    assert [(s["version"], s["verdict"]) for s in result["steps"]] == [
        ("1.4.0", "worse"), ("1.1.0", "same"), ("1.2.0", "worse")]
    assert result["effect"]["summary"]["ratio"] > 2
    assert "[confirm] 1.4.0: worse: A/B: slowpoke==1.4.0 is" in err
    assert "[step] 1.1.0: same" in err


def test_bisect_skips_a_version_that_fails_to_install(
        toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "bisect", "slowpoke", *toy.options(), "--package",
                         "slowpoke", "--good", "1.0.0", "--bad", "1.2.0")
    assert code == 0, err
    assert out.startswith("first bad slowpoke version is 1.2.0 (A/B: slowpoke==1.2.0 is ")
    assert f"[step] {BROKEN}: failed (side B: could not build the environment" in err
    assert "[step] 1.1.0: same" in err


def test_bisect_without_an_effect_between_the_ends(
        toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "bisect", "slowpoke", *toy.options(), "--package",
                         "slowpoke", "--good", "1.0.0", "--bad", "1.1.0")
    assert code == 6, err
    assert out.strip() == ("no effect between the ends: slowpoke 1.1.0 is not worse than "
                           "1.0.0")
    code, _out, err = run(capsys, "bisect", "slowpoke", *toy.options(), "--package",
                          "slowpoke", "--good", "1.0.0", "--bad", "9.0.0")
    assert code == 2 and "slowpoke 9.0.0 is not on the index" in err


def _stored_run(toy: Toy, store_path: Path, slowpoke: str, latency: float) -> str:
    """A stored run of the toy benchmark measured with `slowpoke` at `latency`, as run-once
    in that environment would have stored it."""
    spec = toy_spec(toy.model)
    host = capture_host("stored-host")
    env = host.model_copy(update={"packages": {"slowpoke": slowpoke, **base_versions(
        ("torch", "transformers"))}})
    began = datetime.now(timezone.utc) - timedelta(hours=1)
    samples = [latency * (1 + 0.01 * (i % 5 - 2)) for i in range(30)]
    result = BenchmarkResult(
        spec=spec, series_id=spec.series_id(host.host), status="ok", started_at=began,
        finished_at=began + timedelta(seconds=1), environment=env,
        metrics={metrics.CHART_LATENCY: latency}, samples={"latency_seconds": samples},
        measurement=MeasurementInfo(iterations=30, warmup_iterations=2, duration_s=0.5,
                                    target_rel_ci=0.01, achieved_rel_ci=0.01,
                                    converged=True, stop_reason="converged"))
    run_id = uuid.uuid4().hex
    store = SQLiteStore(store_path)
    try:
        store.record_run(RunResult(run_id=run_id, suite="toy", host=host.host,
                                   started_at=began, finished_at=began + timedelta(seconds=1),
                                   collector_version="0.1.0", results=(result,)))
    finally:
        store.close()
    return run_id


def test_rerun_of_a_stored_point_in_its_recorded_environment(
        toy: Toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "local.db"
    run_id = _stored_run(toy, store, "1.0.0", 0.0022)
    common = ["--local-store", str(store), "--find-links", str(toy.index), "--no-index",
              "--env-cache", str(toy.cache)]
    code, out, err = run(capsys, "rerun", run_id[:10], "--same-environment", *common,
                         "--format", "json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    assert document["rerun"]["run_id"] == run_id
    assert document["rerun"]["pins"] == ["slowpoke==1.0.0"]  # torch, transformers: ours
    [row] = [r for r in document["rows"] if r["metric"] == metrics.CHART_LATENCY]
    assert row["a"] == pytest.approx(0.0022)
    assert 0.7 < row["ratio"] < 1.6  # 2 ms sleeps then and now
    # This interpreter has no slowpoke: the toy model cannot run here.
    code, _out, err = run(capsys, "rerun", run_id, *common)
    assert code == 1
    assert "1 rerun(s) failed" in err and "slowpoke" in err


def test_rerun_of_an_unknown_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "rerun", "abc123", "--local-store", str(tmp_path / "x.db"))
    assert code == 2 and "no stored run has an id starting with 'abc123'" in err


def test_one_benchmark_of_a_matrix_is_picked_with_where(
        toy: Toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = {**toy_spec_dict(toy.model), "matrix": {"sequence_length": [8, 16]}}
    entry.pop("suite")
    entry.pop("sequence_length")
    config = tmp_path / "matrix.yml"
    with config.open("w") as handle:
        YAML().dump({"version": 1, "suites": {"toy": {"benchmarks": [entry]}}}, handle)
    spec = select_spec(str(config), "slow*", ["sequence_length=16"])
    assert (spec.name, spec.sequence_length) == ("slowpoke", 16)
    code, _out, err = run(capsys, "ab", "slowpoke", "-c", str(config), "--a",
                          "slowpoke==1.0.0")
    assert code == 2
    assert "slowpoke matches 2 benchmarks (toy/slowpoke float32 eager cpu bs=1 seq=8" in err
    assert "--where FIELD=VALUE" in err
