"""guidellm's benchmark reports into points and runs (collector/adapters/imports/guidellm.py),
read from tests/fixtures/imports/guidellm/ (reports guidellm 0.3.1, 0.5.4 and 0.8.1 wrote:
see the README there) and from variants of them."""

from __future__ import annotations

import copy
import functools
import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.imports import FORMATS, read_points
from collector.adapters.imports.common import UNKNOWN_HOST, build_runs, read_source
from collector.domain import stats
from collector.domain.errors import InputError
from collector.domain.serving import SWEEP_SAMPLES
from collector.domain.workload import Origin

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
HERE = FIXTURES / "guidellm"
V0 = HERE / "guidellm-0.3.1-poisson.json"
V1 = HERE / "guidellm-0.5.4-concurrent.json"
V2 = HERE / "guidellm-0.8.1-sweep-slo.json"
FILES = (V0, V1, V2)
FORMAT = "guidellm"


@functools.cache
def _report(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _fresh(path: Path) -> dict[str, Any]:
    return copy.deepcopy(_report(path))


def _write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report))
    return path


def _successful(benchmark: dict[str, Any], key: str, per_second: float = 1.0) -> list[float]:
    return [r[key] / per_second for r in benchmark["requests"]["successful"]
            if r[key] is not None]


def _check_against_records(point: Any, benchmark: dict[str, Any]) -> None:
    """Our figures from the benchmark's records (every successful request is there)."""
    ttft = _successful(benchmark, "time_to_first_token_ms", 1000)
    tpot = _successful(benchmark, "inter_token_latency_ms", 1000)
    latency = _successful(benchmark, "request_latency")
    assert point.samples == {"time_to_first_token_seconds": ttft,
                             "time_per_output_token_seconds": tpot,
                             "request_latency_seconds": latency}
    for stem, values in (("time_to_first_token", ttft), ("time_per_output_token", tpot),
                         ("request_latency", latency)):
        for q in (50, 90, 99):
            assert point.metrics[f"{stem}_p{q}_seconds"] == stats.percentile(sorted(values), q)
    assert point.metrics["time_to_first_token_mean_seconds"] == stats.mean(ttft)
    records = benchmark["requests"]["successful"]
    duration = benchmark["duration"]
    assert point.metrics["request_throughput_per_second"] == pytest.approx(
        len(records) / duration)  # guidellm's mean requests/s is ours
    assert point.metrics["output_throughput_tokens_per_second"] == pytest.approx(
        sum(r["output_tokens"] for r in records) / duration)
    # guidellm's token-weighted mean ITL is the mean of every gap between two tokens.
    spans = sum(r["inter_token_latency_ms"] * (r["output_tokens"] - 1) for r in records)
    assert point.metrics["inter_token_latency_mean_seconds"] == pytest.approx(
        spans / sum(r["output_tokens"] - 1 for r in records) / 1000)
    assert point.duration_s == duration
    assert point.time == datetime.fromtimestamp(benchmark["start_time"], tz=timezone.utc)


def test_a_03_report_is_a_point_a_rate_against_transformers_serve() -> None:
    report = _report(V0)
    points = read_points(V0)  # recognised by its content
    assert [p.where for p in points] == [f"{V0}:benchmarks[0]", f"{V0}:benchmarks[1]"]
    assert {p.origin for p in points} == {Origin.GUIDELLM}
    assert len({p.group for p in points}) == 1  # the report's run
    assert points[0].spec == {
        "name": "llama-tiny", "model": {"source": "hub", "id": "llama-tiny"},
        "serving": {"endpoint": {"url": "http://127.0.0.1:18777", "model_name": "llama-tiny"},
                    "api": "completions", "profile": {"kind": "poisson", "rate": 2.0},
                    "warmup_requests": 0, "input_tokens": {"mean": 32},
                    "output_tokens": {"mean": 16}, "seed": 42, "requests": 12}}
    assert points[1].spec["serving"]["profile"] == {"kind": "poisson", "rate": 4.0}
    assert [p.environment for p in points] == [{}, {}]  # 0.3 writes no version
    for point, benchmark in zip(points, report["benchmarks"], strict=True):
        _check_against_records(point, benchmark)
        assert point.metrics["request_error_ratio"] == 0.0
        assert "goodput_requests_per_second" not in point.metrics


def test_a_version_1_report_maps_concurrency_errors_and_its_seed() -> None:
    report = _report(V1)
    points = read_points(V1)
    assert [p.spec["serving"]["profile"] for p in points] == [
        {"kind": "concurrent", "concurrency": 1}, {"kind": "concurrent", "concurrency": 4}]
    serving = points[0].spec["serving"]
    assert (serving["api"], serving["seed"], serving["requests"]) == ("completions", 11, 16)
    assert serving["endpoint"] == {"url": "http://127.0.0.1:39973", "model_name": "llama-tiny"}
    assert [p.environment for p in points] == [{"packages": {"guidellm": "0.5.4"}}] * 2
    for point, benchmark in zip(points, report["benchmarks"], strict=True):
        _check_against_records(point, benchmark)
        assert point.metrics["request_error_ratio"] == 1 / 16  # one HTTP 500 in each


def test_a_version_2_sweep_is_a_point_a_benchmark_and_one_for_the_sweep() -> None:
    report = _report(V2)
    *benchmarks, sweep = read_points(V2)
    assert [p.spec["serving"]["profile"] for p in benchmarks] == [
        {"kind": "synchronous"}, {"kind": "concurrent", "concurrency": 512},  # throughput
        {"kind": "constant", "rate": report["benchmarks"][2]["config"]["strategy"]["rate"]},
        {"kind": "constant", "rate": report["benchmarks"][3]["config"]["strategy"]["rate"]}]
    serving = benchmarks[0].spec["serving"]
    assert serving["api"] == "chat"  # /v1/chat/completions
    assert serving["slos"] == {"ttft_ms": 40.0, "tpot_ms": 8.0}
    assert serving["seed"] == 42
    for point, benchmark in zip(benchmarks, report["benchmarks"], strict=True):
        _check_against_records(point, benchmark)
        metrics = benchmark["metrics"]
        assert point.metrics["goodput_requests_per_second"] == (
            metrics["request_goodput"]["successful"]["mean"])
        assert point.metrics["goodput_ratio"] == metrics["slo_attainment"]
        totals = metrics["request_totals"]
        assert point.metrics["request_error_ratio"] == totals["errored"] / totals["total"]
    # The sweep: the collector's own load, its maximum and its curve.
    assert sweep.where == f"{V2}:benchmarks[0-3] (sweep)"
    assert sweep.spec["serving"]["profile"] == {"kind": "sweep", "points": 2,
                                                "concurrency": 512}
    assert sweep.metrics["max_request_throughput_per_second"] == (
        benchmarks[1].metrics["request_throughput_per_second"])
    assert sweep.metrics["request_error_ratio"] == 5 / 64
    rates = benchmarks[2:]
    assert sweep.samples[SWEEP_SAMPLES["offered rate"]] == [
        p.spec["serving"]["profile"]["rate"] for p in rates]
    for name, metric in (("throughput", "request_throughput_per_second"),
                         ("goodput", "goodput_requests_per_second"),
                         ("p99 TTFT", "time_to_first_token_p99_seconds"),
                         ("p50 TPOT", "time_per_output_token_p50_seconds"),
                         ("p99 request latency", "request_latency_p99_seconds")):
        assert sweep.samples[SWEEP_SAMPLES[name]] == [p.metrics[metric] for p in rates]
    assert sweep.time == benchmarks[0].time and sweep.group == benchmarks[0].group


def _ids(paths: tuple[Path, ...]) -> list[tuple[str, list[str]]]:
    points = [p for path in paths for p in read_points(path)]
    return [(run.run_id, [r.series_id for r in run.results]) for run in build_runs(points)]


def test_points_make_valid_runs_with_ids_from_content_alone(tmp_path: Path) -> None:
    runs = build_runs([p for path in FILES for p in read_points(path)])
    assert [len(run.results) for run in runs] == [2, 2, 5]  # a report is a run
    results = [r for run in runs for r in run.results]
    assert all(r.status == "ok" and r.spec.origin is Origin.GUIDELLM for r in results)
    assert all(r.spec.label.endswith("from guidellm") for r in results)
    assert all(r.environment.host == UNKNOWN_HOST for r in results)
    assert len({r.series_id for r in results}) == 9
    assert [r.spec.load for r in runs[2].results] == [
        "synchronous", "concurrent 512", "constant 42.7964/s", "constant 76.3934/s",
        "sweep x2"]
    assert runs[1].results[0].environment.packages == {"guidellm": "0.5.4"}
    copies = []
    for n, path in enumerate(FILES):
        copies.append(tmp_path / f"report-{n}.txt")
        shutil.copy(path, copies[-1])
    assert _ids(FILES) == _ids(FILES) == _ids(tuple(copies))


def test_these_files_are_guidellms_and_no_fixture_is_claimed_twice() -> None:
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_dir() or path.suffix not in (".json", ".jsonl", ".csv"):
            continue
        text = read_source(path)
        claimed = [f.name for f in FORMATS if f.importer().recognises(path, text)]
        assert len(claimed) <= 1, (path, claimed)
        assert (claimed == [FORMAT]) == (path.parent == HERE), (path, claimed)


def test_a_sample_of_the_records_falls_back_on_guidellms_summaries(tmp_path: Path) -> None:
    report = _fresh(V1)
    benchmark = report["benchmarks"][1]
    benchmark["requests"]["successful"] = benchmark["requests"]["successful"][:5]
    [_, point] = read_points(_write(tmp_path / "sampled.json", report))
    summary = benchmark["metrics"]["time_to_first_token_ms"]["successful"]
    assert point.metrics["time_to_first_token_p90_seconds"] == (
        summary["percentiles"]["p90"] / 1000)
    assert point.metrics["time_to_first_token_mean_seconds"] == summary["mean"] / 1000
    assert point.metrics["request_latency_p50_seconds"] == (
        benchmark["metrics"]["request_latency"]["successful"]["percentiles"]["p50"])
    assert "time_per_output_token_p50_seconds" not in point.metrics  # weighted: not ours
    assert len(point.samples["time_to_first_token_seconds"]) == 5


def test_a_benchmark_without_a_success_is_left_out_and_a_report_of_none_refused(
        tmp_path: Path) -> None:
    report = _fresh(V1)
    for benchmark in report["benchmarks"]:
        requests, totals = benchmark["requests"], benchmark["metrics"]["request_totals"]
        requests["errored"] += requests["successful"]
        requests["successful"] = []
        totals["errored"], totals["successful"] = totals["total"], 0
        break
    points = read_points(_write(tmp_path / "one.json", report))
    assert [p.where.rsplit(":", 1)[1] for p in points] == ["benchmarks[1]"]
    second = report["benchmarks"][1]
    second["requests"]["successful"] = []
    second["metrics"]["request_totals"].update(successful=0, errored=16)
    path = _write(tmp_path / "none.json", report)
    with pytest.raises(InputError, match=rf"^{path}: no benchmark with a successful request"):
        read_points(path)


def test_bounds_and_lengths_come_from_what_the_run_was_asked(tmp_path: Path) -> None:
    report = _fresh(V1)
    report["args"].update(max_requests=None, data=["my-org/prompts"])  # a dataset
    benchmark = report["benchmarks"][0]
    benchmark["config"]["constraints"] = {"max_seconds": {
        "type_": "max_duration", "max_duration": [3.0, 6.0], "current_index": 0}}
    for record in benchmark["requests"]["successful"]:
        record["prompt_tokens"] = 40
    [point, _] = read_points(_write(tmp_path / "report.json", report))
    serving = point.spec["serving"]
    assert (serving["requests"], serving["duration_s"]) == (None, 3.0)
    assert serving["input_tokens"] == {"mean": 40}  # the requests' median: no synthetic data
    assert serving["output_tokens"] == {"mean": 16}
    build_runs([point])
    report = _fresh(V2)
    report["config"]["spec"]["data"][0]["prompt_tokens_stdev"] = 8
    [point, *_] = read_points(_write(tmp_path / "stdev.json", report))
    assert point.spec["serving"]["input_tokens"] == {"mean": 32, "distribution": "normal",
                                                     "spread": 0.25}


def _set(path: str, value: Any, index: int = 1) -> Callable[[dict[str, Any]], None]:
    """Sets (or, for value `...`, deletes) a key of benchmark `index`."""
    def change(report: dict[str, Any]) -> None:
        node = report["benchmarks"][index]
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return change


@pytest.mark.parametrize(("change", "message"), [
    (_set("metrics.requests_per_second.successful.mean", "fast"),
     r"benchmarks\[1\]: metrics\.requests_per_second\.successful\.mean: expected a finite "
     r"number, got 'fast'"),
    (_set("config.run_id", ...), r"benchmarks\[1\]: config\.run_id: missing"),
    (_set("metrics.output_token_count", ...), r"metrics\.output_token_count: missing"),
    (_set("config.strategy.type_", "trace"),
     r"benchmarks\[1\]: config\.strategy\.type_: guidellm's 'trace' strategy has no load"),
    (_set("config.strategy.streams", ...), r"config\.strategy\.streams: missing"),
    (_set("duration", 0), r"benchmarks\[1\]: duration: expected a positive number"),
    (_set("metrics.request_totals.total", 3), r"metrics\.request_totals\.total: 3, fewer"),
    (_set("requests.successful", "many"), r"requests\.successful: expected a list"),
    (_set("config.backend.target", "not a url"),
     r"benchmarks\[1\]: endpoint\.url: String should match pattern"),
    (lambda r: r.update(benchmarks={}), r"benchmarks: expected a list, got dict"),
    (lambda r: r["metadata"].update(version=9), r"guidellm's report schema 9 is not one"),
])
def test_a_malformed_report_is_one_line_naming_the_file_and_record(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    report = _fresh(V1)
    change(report)
    path = _write(tmp_path / "report.json", report)
    with pytest.raises(InputError, match=message) as caught:
        build_runs(read_points(path, FORMAT))
    assert str(caught.value).startswith(f"{path}") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda text: text[: len(text) // 2], r":\d+: invalid JSON: "),  # indented: its line
    (lambda text: text.replace('"duration": ', '"duration": NaN, "x": ', 1),
     r":1: invalid JSON: NaN is not a number JSON allows"),
    (lambda text: text.replace('"extras": ', '"extras": ' + "[" * 70 + "]" * 70 + ', "y": ',
                               1), r":\d+: nested more than 64 levels deep"),
    (lambda text: text.replace('"duration": ', '"duration": Infinity, "x": ', 1),
     r":1: invalid JSON: Infinity is not a number JSON allows"),
])
def test_a_broken_file_is_one_line_naming_it(tmp_path: Path, spoil: Callable[[str], str],
                                             message: str) -> None:
    path = tmp_path / "report.json"
    path.write_text(spoil(V0.read_text()))
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    assert str(caught.value).startswith(f"{path}:") and "\n" not in str(caught.value)
