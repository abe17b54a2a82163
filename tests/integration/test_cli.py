"""The real `collector` command in a subprocess: output, files and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.helpers import FAST_MEASUREMENT, benchmark_yaml
from tests.helpers import run_collector as collector

ROOT = Path(__file__).parents[2]


def write_config(path: Path, benchmarks: list[dict[str, Any]], **suite: Any) -> Path:
    yaml = YAML()
    with path.open("w") as handle:
        yaml.dump({"version": 1, "suites": {"t": {"benchmarks": benchmarks, **suite}}}, handle)
    return path


def test_run_once_prints_a_table_and_writes_versioned_json(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert"), benchmark_yaml("vit")])
    out = tmp_path / "results.json"
    proc = collector("run-once", "--config", str(config), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "bert float32 eager cpu bs=1 seq=8" in proc.stdout
    assert "text-classification" in proc.stdout and "image-classification" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["format"] == "collector-results"
    assert doc["format_version"] == 1
    (run,) = doc["runs"]
    assert run["status"] == "ok"
    assert [r["spec"]["name"] for r in run["results"]] == ["bert", "vit"]
    assert all(r["metrics"]["latency_p50_seconds"] > 0 for r in run["results"])
    assert "Traceback" not in proc.stderr


def test_format_json_prints_the_document(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--format", "json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    result = doc["runs"][0]["results"][0]
    assert result["status"] == "ok"
    assert len(result["samples"]["latency_seconds"]) == result["measurement"]["iterations"]
    assert result["environment"]["torch_threads"] >= 1


def test_failures_are_recorded_and_the_rest_still_run(tmp_path: Path) -> None:
    bad_model = benchmark_yaml("bert", name="bad-config")
    bad_model["model"] = {**bad_model["model"], "config": {"hidden_size": 30,
                                                           "num_attention_heads": 4}}
    benchmarks = [
        bad_model,
        benchmark_yaml("bert", name="missing-local", model={"source": "local",
                                                             "path": str(tmp_path / "none")},
                       task="text-classification"),
        benchmark_yaml("bert", name="offline-hub", model={"source": "hub",
                                                           "id": "bert-base-uncased"}),
        benchmark_yaml("bert", name="too-slow", timeout_s=0.05, batch_size=2),
        benchmark_yaml("bert", name="good"),
    ]
    config = write_config(tmp_path / "c.yml", benchmarks)
    out = tmp_path / "r.json"
    proc = collector("run-once", "--config", str(config), "--output", str(out))
    assert proc.returncode == 1, proc.stderr
    results = {r["spec"]["name"]: r for r in json.loads(out.read_text())["runs"][0]["results"]}
    assert results["good"]["status"] == "ok"
    kinds = {name: r["failure"]["kind"] for name, r in results.items() if r["failure"]}
    assert kinds == {"bad-config": "exception", "missing-local": "model_unavailable",
                     "offline-hub": "model_unavailable", "too-slow": "timeout"}
    assert "failed: t/bad-config" in proc.stderr
    assert "Traceback" not in proc.stderr  # the traceback tail is in the results file
    assert results["bad-config"]["failure"]["traceback_tail"]
    assert json.loads(out.read_text())["runs"][0]["status"] == "partial"


def test_invalid_config_exits_2_with_every_problem_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("suites:\n  s:\n    benchmarks:\n      - name: b\n        model: "
                      "{source: synthetic, architecture: Nope}\n        dtype: float64\n")
    for command in (("run-once", "--config", str(config)), ("check-config", str(config))):
        proc = collector(*command)
        assert proc.returncode == 2
        assert f"{config}:5: suites.s.benchmarks[0].model.architecture: unknown architecture" in (
            proc.stderr)
        assert f"{config}:6: suites.s.benchmarks[0].dtype:" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_check_config_accepts_the_shipped_configs() -> None:
    for path in ("configs/default.yml", "configs/examples/reference-models.yml"):
        proc = collector("check-config", path)
        assert proc.returncode == 0, proc.stderr
        assert "OK" in proc.stdout


def test_unknown_suite_exits_2_and_lists_the_suites(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--suite", "nope")
    assert proc.returncode == 2
    assert "unknown suite(s): nope; the config defines: t" in proc.stderr


def test_unwritable_output_fails_before_running(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--output",
                     str(tmp_path / "missing" / "r.json"))
    assert proc.returncode == 3
    assert "does not exist" in proc.stderr
    assert "bert" not in proc.stdout


@pytest.mark.parametrize("args", [("--help",), ("check-config", "configs/default.yml")])
def test_cli_paths_that_need_no_worker_never_import_torch(args: tuple[str, ...]) -> None:
    code = ("import sys\nfrom collector.cli import main\ntry:\n    main(list(sys.argv[1:]))\n"
            "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert "TORCH False" in proc.stdout, proc.stdout + proc.stderr


def test_spawn_isolation_from_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("bert")])
    proc = collector("run-once", "--config", str(config), "--isolation", "spawn",
                     "--format", "json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"][0]["results"][0]["status"] == "ok"


def test_outputs_are_compared_with_the_series_previous_run(tmp_path: Path) -> None:
    """Through real workers: a generation benchmark's fingerprint is its new token ids; a
    result with no eager float32 sibling in the run (here: every reference itself) is
    compared with its own series' previous stored run, which on a fixed seed and fixed
    inputs computes the same outputs again."""
    config = write_config(tmp_path / "c.yml", [benchmark_yaml("gpt2"),
                                               benchmark_yaml("bert")])
    store = tmp_path / "db.sqlite"
    docs = []
    for _ in range(2):
        proc = collector("run-once", "--config", str(config), "--format", "json",
                         "--no-progress", "--no-confirm", "--local-store", str(store))
        assert proc.returncode == 0, proc.stderr
        docs.append({r["spec"]["name"]: r for r in json.loads(proc.stdout)["runs"][0]["results"]})
    first, second = docs
    gpt2 = second["gpt2"]
    assert len(gpt2["samples"]["output_tokens"]) == 1 * 4  # batch x new_tokens
    assert all(float(t).is_integer() for t in gpt2["samples"]["output_tokens"])
    assert "output_sample" not in gpt2["samples"]
    assert len(second["bert"]["samples"]["output_sample"]) == 256
    # The first run has nothing to compare with; the second matches it exactly.
    assert not any(k.startswith("output_") for r in first.values() for k in r["metrics"])
    assert gpt2["metrics"]["output_token_agreement_ratio"] == 1.0
    assert second["bert"]["metrics"]["output_max_abs_diff"] == 0.0
    assert second["bert"]["metrics"]["output_top1_agreement_ratio"] == 1.0


def test_compare_two_results_files_gates_ci_on_a_slowdown(tmp_path: Path) -> None:
    """Two run-once outputs (B with 5 ms of injected delay per forward) compared without a
    database: slower by a confident margin, exit 5 under --fail-on-regression, Markdown for
    a PR comment and JSON for tools; a file compared with itself is refused."""
    entry = benchmark_yaml("bert", measurement={**FAST_MEASUREMENT, "repetitions": 3})
    slow = {**entry, "model": {**entry["model"], "delay_ms": 5}}
    files = []
    for name, bench in (("a", entry), ("b", slow)):
        out = tmp_path / f"{name}.json"
        proc = collector("run-once", "--config", str(write_config(tmp_path / f"{name}.yml",
                                                                  [bench])),
                         "--output", str(out), "--no-progress", "--no-confirm",
                         "--local-store", str(tmp_path / "db.sqlite"))
        assert proc.returncode == 0, proc.stderr
        files.append(str(out))
    # The second run-once read its result against the first run of the same series.
    assert "Against the previous runs: 1 series not judged yet, 1 previous run(s) of the 20" \
        in proc.stdout
    gate = collector("compare", *files, "--format", "markdown", "--fail-on-regression", "0.5")
    assert gate.returncode == 5, gate.stdout + gate.stderr
    assert "| p50 latency (ms) |" in gate.stdout and "**slower**" in gate.stdout
    assert gate.stdout.startswith("**collector compare**: A = ")
    doc = json.loads(collector("compare", *files, "--format", "json").stdout)
    assert doc["format"] == "collector-comparison" and doc["format_version"] == 1
    [latency] = [r for r in doc["rows"] if r["metric"] == "latency_p50_seconds"]
    assert latency["verdict"] == "worse" and latency["method"] == "repetitions"
    assert latency["ci95"][0] > 1.5 and (latency["n_a"], latency["n_b"]) == (3, 3)
    # Above the gate's threshold it passes; a run against itself is refused (it says
    # nothing, and would pass any gate).
    assert collector("compare", *files, "--fail-on-regression", "100").returncode == 0
    itself = collector("compare", files[0], files[0], "--fail-on-regression")
    assert itself.returncode == 2 and "is on both sides" in itself.stderr, itself.stderr
    # One side laid out by two dimensions, the best of each column marked.
    laid = collector("compare", "--pivot", "benchmark:batch_size", files[0], "--format", "markdown")
    assert laid.returncode == 0, laid.stderr
    assert laid.stdout.startswith("**latency_p50_seconds**: \\* = best of its column")
    assert "| | 1 |" in laid.stdout and laid.stdout.count(" ms \\* |") == 1
    wrong = collector("compare", "--pivot", "benchmark:colour", files[0])
    assert wrong.returncode == 2 and "--pivot" in wrong.stderr


def test_compare_names_the_bad_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "collector-results",\n "runs": [}')
    other = tmp_path / "other.json"
    other.write_text('{"format": "something-else"}')
    for path, message in ((broken, f"{broken}:2: not JSON"),
                          (other, f"{other}: not a collector results document"),
                          (tmp_path / "none.json", "file not found")):
        proc = collector("compare", str(path), str(path))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
