"""vLLM's serving benchmark results into points and runs (collector/adapters/imports/vllm.py),
read from tests/fixtures/imports/vllm-bench-serve/ (written as vLLM's source writes them: see
the README there) and from variants of them."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.imports import FORMATS, read_points
from collector.adapters.imports.common import UNKNOWN_HOST, build_runs, read_source
from collector.domain import stats
from collector.domain.errors import InputError
from collector.domain.workload import Origin

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
HERE = FIXTURES / "vllm-bench-serve"
OLD = HERE / "benchmark_serving-0049e29c-poisson.json"
CONCURRENT = HERE / "serve-009e6d4a-concurrency8.json"
APPENDED = HERE / "serve-009e6d4a-poisson-detailed-append.json"
FILES = (OLD, CONCURRENT, APPENDED)
FORMAT = "vllm-bench-serve"
ENDPOINT = "http://unknown.invalid"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ok(record: dict[str, Any], key: str) -> list[Any]:
    return [v for v, error in zip(record[key], record["errors"], strict=True) if not error]


def _write(path: Path, record: dict[str, Any]) -> Path:
    path.write_text(json.dumps(record))
    return path


def test_the_08_era_file_is_one_poisson_point_in_seconds_with_its_samples() -> None:
    [record] = _records(OLD)
    [point] = read_points(OLD)  # recognised by its content
    assert point.origin is Origin.VLLM_BENCH_SERVE and point.where == str(OLD)
    assert point.host == UNKNOWN_HOST
    model = "meta-llama/Llama-3.1-8B-Instruct"
    assert point.spec == {
        "name": "meta-llama_Llama-3.1-8B-Instruct", "model": {"source": "hub", "id": model},
        "serving": {"endpoint": {"url": ENDPOINT, "model_name": model}, "api": "completions",
                    "profile": {"kind": "poisson", "rate": 4.0}, "requests": 50,
                    "warmup_requests": 0, "input_tokens": {"mean": 256},
                    # 64 asked; three answers ended early and one request failed: the median
                    "output_tokens": {"mean": 64}}}
    ended = datetime(2025, 4, 3, 14, 15, 22, tzinfo=timezone.utc)
    assert point.time == ended - timedelta(seconds=record["duration"])
    assert point.duration_s == record["duration"]
    assert point.environment == {"server": "version 0.8.4"}
    m = point.metrics
    assert m["time_to_first_token_p50_seconds"] == record["median_ttft_ms"] / 1e3
    assert m["time_to_first_token_p99_seconds"] == record["p99_ttft_ms"] / 1e3
    assert m["time_to_first_token_mean_seconds"] == record["mean_ttft_ms"] / 1e3
    assert m["time_per_output_token_p99_seconds"] == record["p99_tpot_ms"] / 1e3
    assert m["inter_token_latency_mean_seconds"] == record["mean_itl_ms"] / 1e3
    assert m["request_throughput_per_second"] == record["request_throughput"]
    assert m["output_throughput_tokens_per_second"] == record["output_throughput"]
    assert m["goodput_requests_per_second"] == record["request_goodput:"]  # its stray colon
    good = round(record["request_goodput:"] * record["duration"])
    assert m["goodput_ratio"] == good / 50 and 0 < good < 49
    assert m["request_error_ratio"] == 1 / 50  # one traceback in `errors`
    # The samples are the successful requests' own values, in seconds.
    ttfts = _ok(record, "ttfts")
    gaps = [g for gaps in _ok(record, "itls") for g in gaps]
    assert point.samples["time_to_first_token_seconds"] == ttfts and len(ttfts) == 49
    assert point.samples["inter_token_latency_seconds"] == gaps
    # vLLM's percentiles are numpy's linear ones over the same values as the samples ...
    assert m["time_to_first_token_p99_seconds"] == pytest.approx(
        stats.percentile(sorted(ttfts), 99))
    assert m["inter_token_latency_p99_seconds"] == pytest.approx(
        stats.percentile(sorted(gaps), 99))
    # ... and those it did not write (p90: --metric-percentiles was 99) come from them.
    assert m["time_to_first_token_p90_seconds"] == stats.percentile(sorted(ttfts), 90)
    # No `latencies` in this era: a request's TPOT is the sum of its gaps / (tokens - 1).
    lens = _ok(record, "output_lens")
    assert point.samples["time_per_output_token_seconds"] == pytest.approx(
        [sum(g) / (n - 1) for g, n in zip(_ok(record, "itls"), lens, strict=True)])
    assert "request_latency_p50_seconds" not in m  # e2el not asked, no latencies written


def test_a_closed_loop_run_without_details_keeps_its_latencies() -> None:
    [record] = _records(CONCURRENT)
    [point] = read_points(CONCURRENT, FORMAT)
    serving = point.spec["serving"]
    assert serving["profile"] == {"kind": "concurrent", "concurrency": 8}  # rate "inf"
    assert serving["api"] == "chat"  # openai-chat
    assert (serving["input_tokens"], serving["output_tokens"]) == ({"mean": 128}, {"mean": 32})
    assert point.environment == {}  # no version written
    latencies = record["latencies"]
    assert point.samples == {"request_latency_seconds": latencies}  # the only list left
    for q in (50, 90, 99):  # e2el was not asked: computed from the latencies
        assert point.metrics[f"request_latency_p{q}_seconds"] == stats.percentile(
            sorted(latencies), q)
    assert point.metrics["request_error_ratio"] == 0.0
    assert "goodput_requests_per_second" not in point.metrics  # no --goodput: null
    assert "time_to_first_token_p90_seconds" not in point.metrics  # nothing to compute it


def test_appended_runs_are_points_of_their_own_named_by_line() -> None:
    slow, fast = _records(APPENDED)
    points = read_points(APPENDED)
    assert [p.where for p in points] == [f"{APPENDED}:1", f"{APPENDED}:2"]
    assert [p.spec["serving"]["profile"] for p in points] == [
        {"kind": "poisson", "rate": 2.0}, {"kind": "poisson", "rate": 8.0}]
    assert [p.environment for p in points] == [{"server": "version 0.11.0"}] * 2
    second = points[1]
    # One failure and one single-token answer leave the typical lengths as asked.
    assert second.spec["serving"]["output_tokens"] == {"mean": 48}
    assert second.spec["serving"]["requests"] == 32
    m = second.metrics
    assert m["request_error_ratio"] == 1 / 32
    for q in (50, 90, 99):
        for figure, stem in (("ttft", "time_to_first_token"), ("itl", "inter_token_latency"),
                             ("tpot", "time_per_output_token"), ("e2el", "request_latency")):
            assert m[f"{stem}_p{q}_seconds"] == fast[f"p{q}_{figure}_ms"] / 1e3
    # With `latencies`, a request's TPOT is vLLM's: (latency - TTFT) / (tokens - 1), so its
    # percentiles and the samples agree; the single-token answer has none.
    tpots = [(lat - ttft) / (n - 1) for lat, ttft, n in zip(
        _ok(fast, "latencies"), _ok(fast, "ttfts"), _ok(fast, "output_lens"), strict=True)
        if n > 1]
    assert second.samples["time_per_output_token_seconds"] == tpots and len(tpots) == 30
    assert m["time_per_output_token_p50_seconds"] == pytest.approx(
        stats.percentile(sorted(tpots), 50))
    assert second.samples["request_latency_seconds"] == _ok(fast, "latencies")
    assert points[0].time == datetime(2025, 10, 22, 16, 12, 5, tzinfo=timezone.utc) - \
        timedelta(seconds=slow["duration"])


def test_a_failure_without_an_error_text_leaves_no_samples_but_its_figures(
        tmp_path: Path) -> None:
    """vLLM records `response.reason or ""`: a failed request may have an empty error."""
    _, fast = _records(APPENDED)
    fast["errors"][11] = ""
    [point] = read_points(_write(tmp_path / "r.json", fast), FORMAT)
    assert point.samples == {}  # which request failed is unknown
    assert point.metrics["request_error_ratio"] == 1 / 32  # `failed` says
    assert point.metrics["time_to_first_token_p99_seconds"] == fast["p99_ttft_ms"] / 1e3


def _ids(paths: tuple[Path, ...]) -> list[tuple[str, list[str]]]:
    points = [p for path in paths for p in read_points(path)]
    return [(run.run_id, [r.series_id for r in run.results]) for run in build_runs(points)]


def test_points_make_valid_runs_with_ids_from_content_alone(tmp_path: Path) -> None:
    points = [p for path in FILES for p in read_points(path)]
    runs = build_runs(points)
    assert len(runs) == 4  # every record its own run
    results = [r for run in runs for r in run.results]
    assert all(r.status == "ok" and r.spec.origin is Origin.VLLM_BENCH_SERVE for r in results)
    assert all(r.spec.label.endswith("from vllm-bench-serve") for r in results)
    assert all(r.environment.host == UNKNOWN_HOST for r in results)
    assert all(run.host == UNKNOWN_HOST for run in runs)
    assert len({r.series_id for r in results}) == 4  # four loads, models or lengths
    assert [r.spec.load for r in results] == [
        "poisson 4/s", "concurrent 8", "poisson 2/s", "poisson 8/s"]  # by time
    assert runs[0].started_at == points[0].time
    assert runs[0].finished_at == points[0].time + timedelta(seconds=points[0].duration_s)
    # Idempotent: the same files again, or copies elsewhere under other names, are the
    # same runs and series.
    copies = []
    for n, path in enumerate(FILES):
        copy = tmp_path / f"copy-{n}.txt"
        shutil.copy(path, copy)
        copies.append(copy)
    assert _ids(FILES) == _ids(FILES) == _ids(tuple(copies))


def test_these_files_are_vllms_and_no_fixture_is_claimed_twice() -> None:
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_dir() or path.suffix not in (".json", ".jsonl", ".csv"):
            continue
        text = read_source(path)
        claimed = [f.name for f in FORMATS if f.importer().recognises(path, text)]
        assert len(claimed) <= 1, (path, claimed)
        assert (claimed == [FORMAT]) == (path.parent == HERE), (path, claimed)


def test_vllms_pytorch_benchmark_format_file_is_not_taken_for_its_result(
        tmp_path: Path) -> None:
    """`--save-result` also writes `<name>.pytorch.json`: a list of records whose
    extra_info repeats the result's keys. It is another format."""
    [record] = _records(CONCURRENT)
    other = tmp_path / "run.pytorch.json"
    other.write_text(json.dumps([{"benchmark": {"name": "vLLM benchmark",
                                                "extra_info": record}}]))
    text = read_source(other)
    assert [f.name for f in FORMATS if f.importer().recognises(other, text)] == []


def _variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    [record] = _records(CONCURRENT)
    change(record)
    return record


@pytest.mark.parametrize(("change", "profile"), [
    (lambda r: r.update(max_concurrency=None), {"kind": "concurrent", "concurrency": 64}),
    (lambda r: r.update(request_rate=16.0), {"kind": "poisson", "rate": 16.0}),  # cap dropped
    (lambda r: r.update(request_rate=16, burstiness=None), {"kind": "poisson", "rate": 16.0}),
])
def test_vllms_load_maps_onto_a_profile(tmp_path: Path, change: Callable[[dict[str, Any]], None],
                                        profile: dict[str, Any]) -> None:
    [point] = read_points(_write(tmp_path / "r.json", _variant(change)), FORMAT)
    assert point.spec["serving"]["profile"] == profile
    build_runs([point])


def test_the_04_era_keys_are_read_too(tmp_path: Path) -> None:
    """request_inthroughput, total_input/total_output and --version (default N/A)."""
    def older(record: dict[str, Any]) -> None:
        for old, new in (("request_throughput", "request_inthroughput"),
                         ("total_input_tokens", "total_input"),
                         ("total_output_tokens", "total_output")):
            record[new] = record.pop(old)
        for key in ("failed", "latencies", "endpoint_type", "label", "burstiness",
                    "max_concurrency"):
            record.pop(key)
        record.update(version="N/A", request_rate=2.0)
    [record] = _records(CONCURRENT)
    [point] = read_points(_write(tmp_path / "old.json", _variant(older)))
    assert point.metrics["request_throughput_per_second"] == record["request_throughput"]
    assert point.spec["serving"]["input_tokens"] == {"mean": 128}
    assert point.spec["serving"]["requests"] == 64  # num_prompts: failures unknown
    assert point.environment == {}  # N/A is no version
    assert "request_error_ratio" not in point.metrics
    versioned = _variant(lambda r: r.update(version="0.4.1"))
    assert read_points(_write(tmp_path / "v.json", versioned))[0].environment == {
        "server": "version 0.4.1"}


def _spoil_itl(record: dict[str, Any]) -> None:
    record.update(itls=[[0.01]] * 63 + ["x"], ttfts=[0.01] * 64, errors=[""] * 64)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(duration="fast"), r"duration: expected a finite number, got 'fast'"),
    (lambda r: r.pop("model_id"), r"missing model_id"),
    (lambda r: r.pop("request_rate"), r"missing request_rate"),
    (lambda r: r.update(completed=0), r"no request completed"),
    (lambda r: r.update(date="yesterday"), r"date: expected vLLM's %Y%m%d-%H%M%S"),
    (lambda r: r.update(burstiness=0.5, request_rate=4), r"burstiness 0.5: gamma-distributed"),
    (lambda r: r.update(ramp_up_strategy="linear"), r"ramp_up_strategy 'linear'"),
    (lambda r: r.update(request_rate=-1), r"request_rate: expected a positive rate"),
    (lambda r: r.update(max_concurrency=2.5), r"max_concurrency: expected a positive count"),
    (lambda r: r["latencies"].pop(), r"per-request lists hold 63 requests, completed and "
                                     r"failed 64"),
    (lambda r: r.update(ttfts=[0.01] * 3), r"per-request lists differ in length"),
    (lambda r: r["latencies"].__setitem__(5, None), r"latencies\[5\]: expected a finite"),
    (_spoil_itl, r"itls\[63\]: expected a list of gaps, got str"),
    (lambda r: r.update(p99_ttft_ms=[1]), r"p99_ttft_ms: expected a finite number"),
    (lambda r: r.update(model_id=7), r"model_id: expected text, got 7"),
])
def test_a_malformed_record_is_one_line_naming_the_file_and_key(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    path = _write(tmp_path / "result.json", _variant(change))
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("spoil", "where", "message"), [
    (lambda text: text[: len(text) // 2], ":1", r"invalid JSON: "),
    (lambda text: text.replace('"burstiness": 1.0', '"burstiness": Infinity'), ":1",
     r"invalid JSON: Infinity is not a number JSON allows"),
    (lambda text: text.replace('"rtfx": 0.0', '"rtfx": NaN'), ":1",
     r"invalid JSON: NaN is not a number JSON allows"),
    (lambda text: text.replace('"label": null', '"label": ' + "[" * 80 + "]" * 80), ":1",
     r"nested more than 64 levels deep"),
    (lambda text: "[" + text + "]", "", r"expected a JSON object"),
])
def test_a_broken_file_is_one_line_naming_it(tmp_path: Path, spoil: Callable[[str], str],
                                             where: str, message: str) -> None:
    path = tmp_path / "result.json"
    path.write_text(spoil(CONCURRENT.read_text()))
    with pytest.raises(InputError, match=message) as caught:
        read_points(path, FORMAT)
    assert str(caught.value).startswith(f"{path}{where}: ") and "\n" not in str(caught.value)


def test_a_broken_appended_run_names_its_line(tmp_path: Path) -> None:
    first, second = APPENDED.read_text().splitlines()
    path = tmp_path / "appended.json"
    path.write_text(first + "\n" + second[: len(second) - 40] + "\n")
    with pytest.raises(InputError, match=rf"^{path}:2: invalid JSON: ") as caught:
        read_points(path, FORMAT)
    assert "\n" not in str(caught.value)
    record = json.loads(second)
    record["duration"] = math.pi * -1
    path.write_text(first + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InputError, match=rf"^{path}:2: duration: expected a positive number"):
        read_points(path, FORMAT)
