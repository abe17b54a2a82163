"""The transformers benchmark module's default.yml, run offline end to end: converted to
tiny synthetic models of the same architectures on the CPU (its iteration counts, lengths,
dtype and batch sizes untouched), then run by `run-once`; and a module-format file run by
`run-once` as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_collector, save_tiny_model
from tests.unit.test_legacy_config import DEFAULT_YML, EXPECTED


@pytest.mark.slow
def test_the_modules_example_runs_offline_on_synthetic_equivalents(tmp_path: Path) -> None:
    converted = tmp_path / "native.yml"
    proc = run_collector("convert-config", str(DEFAULT_YML), "--synthetic", "--device", "cpu",
                         "-o", str(converted))
    assert proc.returncode == 0, proc.stderr
    results = tmp_path / "results.json"
    proc = run_collector("run-once", "--config", str(converted), "--local-store",
                         str(tmp_path / "store.db"), "--output", str(results), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    [run] = json.loads(results.read_text())["runs"]
    assert run["suite"] == "transformers-benchmark" and run["status"] == "ok"
    got = [(r["spec"]["model"]["architecture"], r["resolved_task"], r["spec"]["sequence_length"],
            r["measurement"]["iterations"]) for r in run["results"]]
    assert [(task.value, length, count) for _, task, length, _, count in EXPECTED] == [
        g[1:] for g in got]
    assert [g[0] for g in got] == ["BertModel", "DistilBertModel", "BertModel", "RobertaModel",
                                   "GPT2LMHeadModel", "OPTForCausalLM", "CLIPModel"]
    for result in run["results"]:
        assert result["status"] == "ok", result["failure"]
        assert result["spec"]["dtype"] == "float16" and result["spec"]["device"] == "cpu"
        assert result["measurement"]["warmup_iterations"] == 10
        assert result["measurement"]["stop_reason"] in ("max_iterations", "converged")
        assert len(result["samples"]["latency_seconds"]) == result["measurement"]["iterations"]
        assert result["metrics"]["latency_p50_seconds"] > 0
    generation = [r for r in run["results"] if r["resolved_task"] == "text-generation"]
    assert [r["spec"]["new_tokens"] for r in generation] == [100, 100]
    assert all(r["metrics"]["time_to_first_token_p50_seconds"] > 0 for r in generation)


def test_run_once_reads_the_modules_format_as_it_is(tmp_path: Path) -> None:
    """A local model (saved with save_pretrained) named by path, on the CPU: run-once says
    it translated the file, runs it, and keeps the module's iteration count."""
    model = save_tiny_model(tmp_path / "tiny-bert", "BertModel", "BertConfig",
                            num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                            intermediate_size=64, vocab_size=512)
    old = tmp_path / "default.yml"
    old.write_text(f"benchmarks:\n  - model_name_or_path: {model}\n    sequence_length: 16\n"
                   "    num_iterations: 7\n    device: cpu\nglobal_settings:\n"
                   "  warmup_iterations: 2\n")
    results = tmp_path / "results.json"
    proc = run_collector("run-once", "--config", str(old), "--local-store",
                         str(tmp_path / "store.db"), "--output", str(results), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "read as the transformers benchmark module's format" in " ".join(proc.stderr.split())
    [result] = json.loads(results.read_text())["runs"][0]["results"]
    assert result["status"] == "ok" and result["resolved_task"] == "feature-extraction"
    assert (result["measurement"]["iterations"], result["measurement"]["warmup_iterations"]) == (
        7, 2)
    # a bad file: run-once names the old line and field, exit 2, before anything runs
    old.write_text(old.read_text().replace("device: cpu", "device: tpu"))
    proc = run_collector("run-once", "--config", str(old), "--local-store",
                         str(tmp_path / "store.db"))
    assert proc.returncode == 2
    assert f"{old}:5: benchmarks[0].device: expected cuda, cuda:N, cpu or auto" in proc.stderr
    assert "Traceback" not in proc.stderr
