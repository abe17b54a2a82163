"""transformers' benchmark_v2 results into points and runs
(collector/adapters/imports/benchmark_v2.py), read from tests/fixtures/imports/benchmark_v2/
(written as its runner writes them: see the README there) and from variants of them."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import logging
import statistics
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.imports import FORMATS, read_points
from collector.adapters.imports.common import build_runs, read_source
from collector.domain.errors import InputError
from collector.domain.workload import Origin

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
HERE = FIXTURES / "benchmark_v2"
JSONL = HERE / "full_results.jsonl"
JSON = HERE / "meta-llama_Llama-3.2-1B-Instruct_benchmark_20250905_093012.json"
MODEL = "meta-llama/Llama-3.2-1B-Instruct"
COMMIT_A = "9c4ff2a3b1e07d5c8f6a2e91d04b7c3a5e8f1d26"
COMMIT_B = "e41d07b8c2a95f3d6b18e0c7a4f29d53b6c81e07"
FORMAT = "benchmark_v2"


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in JSONL.read_text().splitlines()]


def _gaps(timestamps: list[list[list[float]]], new_tokens: int) -> list[float]:
    """Every gap between consecutive token times, the streamer's end mark left out."""
    gaps = []
    for call in timestamps:
        for row in call:
            times = row[:new_tokens]
            gaps += [b - a for a, b in itertools.pairwise(times)]
    return gaps


def test_full_results_are_one_point_a_line_with_spec_metrics_time_commit_and_gpu() -> None:
    rows = _rows()
    points = read_points(JSONL, FORMAT)
    assert [p.where for p in points] == [f"{JSONL}:{n}" for n in range(1, 9)]
    assert {p.origin for p in points} == {Origin.BENCHMARK_V2}
    assert [p.environment["commit"] for p in points] == [COMMIT_A] * 4 + [COMMIT_B] * 4
    first = points[0]
    assert first.time == datetime(2025, 9, 3, 10, 10, 7, 412000, tzinfo=timezone.utc)
    assert first.spec == {
        "name": "meta-llama_Llama-3.2-1B-Instruct", "model": {"source": "hub", "id": MODEL},
        "task": "text-generation", "device": "cuda", "dtype": "bfloat16",
        "attn_implementation": "flex_attention", "backend": "compile",
        "compile": {"mode": "reduce-overhead", "fullgraph": True}, "batch_size": 4,
        "sequence_length": 128, "new_tokens": 32}
    assert first.environment == {"commit": COMMIT_A, "gpu_name": "NVIDIA H100 80GB HBM3",
                                 "python_version": "3.12.3", "torch_version": "2.8.0+cu128"}
    measured = rows[0]["measurements"]
    e2e, ttft, itl = (measured[k] for k in ("e2e_latency", "time_to_first_token",
                                            "inter_token_latency"))
    metrics = first.metrics
    assert metrics["latency_p50_seconds"] == pytest.approx(statistics.median(e2e))
    assert metrics["latency_mean_seconds"] == pytest.approx(statistics.fmean(e2e))
    assert metrics["latency_min_seconds"] == min(e2e)
    assert metrics["throughput_samples_per_second"] == pytest.approx(4 / statistics.median(e2e))
    assert metrics["time_to_first_token_p50_seconds"] == pytest.approx(statistics.median(ttft))
    assert metrics["prefill_tokens_per_second"] == pytest.approx(
        4 * 128 / statistics.median(ttft))
    assert metrics["inter_token_latency_mean_seconds"] == pytest.approx(statistics.fmean(itl))
    assert metrics["decode_tokens_per_second"] == pytest.approx(
        statistics.median(4 / value for value in itl))
    gaps = _gaps(measured["timestamps"], 32)
    assert len(gaps) == 10 * 31  # one stream of times a call under generate()
    assert metrics["inter_token_latency_p50_seconds"] == pytest.approx(statistics.median(gaps))
    assert first.samples == {"latency_seconds": e2e, "time_to_first_token_seconds": ttft,
                             "inter_token_latency_seconds": pytest.approx(gaps)}
    assert first.duration_s == pytest.approx(sum(e2e))
    # Continuous batching: a batch of requests, one stream of times per request.
    batched = points[3]
    assert batched.spec["batching"] == {"requests": 4, "input_tokens": {"mean": 128},
                                        "output_tokens": {"mean": 32}}
    assert (batched.spec["backend"], batched.spec["attn_implementation"]) == (
        "eager", "flash_attention_2")
    assert len(batched.samples["inter_token_latency_seconds"]) == 10 * 4 * 31


def test_points_make_valid_runs_whose_ids_are_the_records_own() -> None:
    runs = build_runs(read_points(JSONL, FORMAT))
    again = build_runs(read_points(JSONL, FORMAT))
    assert len(runs) == 8 and all(len(run.results) == 1 for run in runs)
    assert [(r.run_id, r.results[0].series_id) for r in runs] == [
        (r.run_id, r.results[0].series_id) for r in again]
    labels = [run.results[0].spec.label for run in runs]
    assert labels[0] == ("meta-llama_Llama-3.2-1B-Instruct bfloat16 compile "
                         "attn=flex_attention cuda bs=4 seq=128 new=32 from benchmark_v2")
    assert labels[3].endswith("attn=flash_attention_2 cuda bs=1 seq=128 new=32 [cb 4 req] "
                              "from benchmark_v2")
    # Each config is one series across both commits; each record its own run.
    series = [run.results[0].series_id for run in runs]
    assert series[:4] == series[4:] and len(set(series)) == 4
    assert len({run.run_id for run in runs}) == 8
    assert {run.results[0].environment.commit for run in runs} == {COMMIT_A, COMMIT_B}
    # The compiled eager config got slower at the second commit, as the history says.
    slow = [run.results[0].metrics["latency_p50_seconds"] for run in runs
            if "compile attn=eager" in run.results[0].spec.label]
    assert slow[1] / slow[0] == pytest.approx(1.18, abs=0.03)


def test_the_runners_summarized_file_skips_its_failed_record(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="collector.imports"):
        points = read_points(JSON, FORMAT)
    assert len(points) == 3
    [warning] = caplog.records
    assert "recorded this benchmark as failed: skipped" in warning.getMessage()
    lines = JSON.read_text().splitlines()
    document = json.loads(JSON.read_text())
    for point, key in zip(points, list(document)[:3], strict=True):
        line = int(point.where.rsplit(":", 1)[1])
        assert point.where == f"{JSON}:{line}" and key in lines[line - 1]
    assert [p.time.date().isoformat() for p in points] == ["2025-09-05"] * 3
    # Summarized: no token times, so no inter-token percentiles, only the runner's mean.
    for point in points:
        assert "inter_token_latency_p50_seconds" not in point.metrics
        assert "inter_token_latency_mean_seconds" in point.metrics
        assert set(point.samples) == {"latency_seconds", "time_to_first_token_seconds"}
    # The same configs as the full results: the same series.
    full = {r.results[0].series_id for r in build_runs(read_points(JSONL, FORMAT))}
    assert {r.results[0].series_id for r in build_runs(points)} <= full


def test_a_record_is_one_run_in_the_runners_file_and_in_the_hubs_lines(tmp_path: Path) -> None:
    document = json.loads(JSON.read_text())
    lines = [json.dumps({"benchmark_config_hash": key, **record})
             for key, record in document.items()]
    pushed = tmp_path / "benchmark_run_20250905_093012.jsonl"
    pushed.write_text("\n".join(lines) + "\n")
    saved = [(r.run_id, r.results[0].series_id) for r in build_runs(read_points(JSON, FORMAT))]
    assert saved == [(r.run_id, r.results[0].series_id)
                     for r in build_runs(read_points(pushed, FORMAT))]


def _older(row: dict[str, Any]) -> None:
    """A record of an older runner: sdpa_backend, compile_mode and a naive UTC time;
    dtype and device written out."""
    config = row["config"]
    del config["compile_kwargs"]
    config.update(attn_implementation="sdpa", sdpa_backend="efficient_attention",
                  compile_mode="max-autotune", compile_options={}, dtype="torch.float16",
                  device="cuda")
    row["metadata"]["timestamp"] = "2025-07-01T08:00:00.500000"


def _write_rows(path: Path, change: Callable[[dict[str, Any]], None], index: int = 0) -> Path:
    rows = _rows()
    change(rows[index])
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_an_older_runners_config_maps_too(tmp_path: Path) -> None:
    [point, *_] = read_points(_write_rows(tmp_path / "old.jsonl", _older), FORMAT)
    assert point.time == datetime(2025, 7, 1, 8, 0, 0, 500000, tzinfo=timezone.utc)
    assert {k: point.spec[k] for k in ("attn_implementation", "sdpa_backend", "backend",
                                       "compile", "dtype")} == {
        "attn_implementation": "sdpa", "sdpa_backend": "efficient", "backend": "compile",
        "compile": {"mode": "max-autotune"}, "dtype": "float16"}
    [run, *_] = build_runs([point])
    assert run.results[0].spec.label.startswith(
        "meta-llama_Llama-3.2-1B-Instruct float16 compile attn=sdpa/efficient cuda")

    def paged(row: dict[str, Any]) -> None:
        row["config"]["attn_implementation"] = "paged|sdpa"
        row["config"]["kernelize"] = True

    batched = read_points(_write_rows(tmp_path / "paged.jsonl", paged, 3), FORMAT)[3]
    assert batched.spec["attn_implementation"] == "sdpa" and batched.spec["kernels"] is True
    assert "batching" in batched.spec


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(row: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            row = row[key]
        row[last] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(row: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            row = row[key]
        del row[last]
    return change


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"x": value}
    return value


def _back_in_time(row: dict[str, Any]) -> None:
    stamps = row["measurements"]["timestamps"][2][0]
    stamps[5] = stamps[3]


@pytest.mark.parametrize(("change", "message"), [
    (_set("measurements.e2e_latency", [0.2, 0.21, 0.2, "0.2"]),
     r"measurements\.e2e_latency\[3\]: expected a finite number, got '0\.2'"),
    (_set("measurements.e2e_latency", [0.2, -0.2]),
     r"measurements\.e2e_latency\[1\]: a negative time \(-0\.2\)"),
    (_set("measurements.e2e_latency", []),
     r"measurements\.e2e_latency: expected a non-empty list of seconds"),
    (_drop("measurements.e2e_latency"), r"measurements\.e2e_latency: missing"),
    (_set("measurements.time_to_first_token", {"p50": 0.1}),
     r"measurements\.time_to_first_token: expected a non-empty list of seconds"),
    (_back_in_time, r"measurements\.timestamps\[2\]\[0\]\[5\]: token times go back"),
    (_drop("metadata.timestamp"), r"metadata\.timestamp: missing"),
    (_set("metadata.timestamp", "yesterday"),
     r"metadata\.timestamp: expected an ISO 8601 time or a Unix timestamp, got 'yesterday'"),
    (_drop("metadata.model_id"), r"metadata\.model_id: missing"),
    (_drop("config.num_tokens_to_generate"), r"config\.num_tokens_to_generate: missing"),
    (_set("config.batch_size", 2.5),
     r"config\.batch_size: expected a positive integer, got 2\.5"),
    (_set("config.attn_implementation", "paged_attention"),
     r"config\.attn_implementation: 'paged_attention' has no counterpart"),
    (_set("config.compile_kwargs", {"backend": "cudagraphs", "mode": "default"}),
     r"config\.compile_kwargs\.backend: 'cudagraphs': the collector compiles with inductor"),
    (_set("config.device", "xpu"), r"config\.device: 'xpu': only cpu and cuda are imported"),
    (_set("metadata.hardware_info.gpu_name", 7),
     r"metadata\.hardware_info\.gpu_name: expected a string, got 7"),
    (_set("measurements", [1, 2]), r"measurements: expected an object, got \[1, 2\]"),
    (_set("extra", _nested(80)), r"nested more than 64 levels deep"),
])
def test_a_malformed_record_is_one_line_naming_the_file_line_and_field(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    path = _write_rows(tmp_path / "results.jsonl", change, index=1)
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    assert str(caught.value).startswith(f"{path}:2:") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("spoil", "where", "message"), [
    (lambda text: text[: len(text) - 300], "8", r"invalid JSON: "),
    (lambda text: text.replace('"e2e_latency": [', '"e2e_latency": [NaN, ', 1), "1",
     r"invalid JSON: NaN is not a number JSON allows"),
])
def test_broken_lines_name_their_line(tmp_path: Path, spoil: Callable[[str], str], where: str,
                                      message: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(spoil(JSONL.read_text()))
    with pytest.raises(InputError, match=rf"^{path}:{where}: {message}"):
        read_points(path, FORMAT)


@pytest.mark.parametrize(("document", "message"), [
    (JSON.read_text()[: len(JSON.read_text()) // 2], r":\d+: invalid JSON: "),
    ("{}", r": no benchmark_v2 record in it$"),
    (json.dumps({"abc": [1]}), r":1: record 'abc': expected an object"),
])
def test_a_broken_runners_file_names_the_file(tmp_path: Path, document: str,
                                              message: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(document)
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_these_files_are_benchmark_v2s_and_no_other_fixture_is() -> None:
    formats = [f for f in FORMATS
               if importlib.util.find_spec(f"collector.adapters.imports.{f.module}")]
    [mine] = [f for f in formats if f.name == FORMAT]
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        text = read_source(path)
        claimed = [f.name for f in formats if f.importer().recognises(path, text)]
        if path in (JSONL, JSON):
            assert claimed == [FORMAT], path
            assert {p.origin for p in read_points(path)} == {Origin.BENCHMARK_V2}
        else:
            assert not mine.importer().recognises(path, text), path


def test_recognition_ignores_the_files_name(tmp_path: Path) -> None:
    renamed = tmp_path / "whatever.txt"
    renamed.write_text(JSONL.read_text())
    rows = copy.deepcopy(_rows())
    assert len(read_points(renamed, FORMAT)) == len(rows)
    [fmt] = [f for f in FORMATS if f.name == FORMAT]
    assert fmt.importer().recognises(renamed, renamed.read_text())
