"""Serving benchmarks end to end through the real worker isolation: a real `transformers
serve` of a tiny synthetic model (a tokenizer built offline beside it), and our own
fault-injecting server (tests/openai_fault_server.py) started the same way, by its command,
for everything that goes wrong. Each failure is a recorded failure with its cause, and the
benchmark after it still runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from collector.adapters.measure import WorkerPool, run_benchmark
from collector.analysis.reading import read
from collector.domain.catalogue import headline
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Environment, FailureKind
from collector.present.table import headline_text
from tests.helpers import TINY_MODELS
from tests.openai_fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMERS_SERVE = ["{python}", "-m", "transformers.cli.transformers", "serve", "{model}",
                      "--host", "{host}", "--port", "{port}", "--device", "{device}",
                      "--dtype", "{dtype}", "--continuous-batching", "--cb-block-size", "16",
                      "--cb-num-blocks", "128"]
FAULT_SERVER = ["{python}", str(ROOT / "tests" / "openai_fault_server.py"), "--port", "{port}"]


def spec(name: str, serving: dict[str, Any], **fields: Any) -> BenchmarkSpec:
    settings = {"requests": 8, "warmup_requests": 1, "input_tokens": {"mean": 8},
                "output_tokens": {"mean": 4}, "request_timeout_s": 20, **serving}
    return BenchmarkSpec(suite="serving", name=name, model=TINY_MODELS["llama"],
                         timeout_s=180, serving=settings, **fields)


def fault_server(**knobs: Any) -> dict[str, Any]:
    return {"command": [*FAULT_SERVER, "--knobs", json.dumps(knobs)], "ready_timeout_s": 30}


def run(pool: WorkerPool, host_env: Environment, benchmark: BenchmarkSpec) -> BenchmarkResult:
    return run_benchmark(pool, benchmark, host_env)


def test_transformers_serve_under_poisson_load(pool: WorkerPool,
                                                host_env: Environment) -> None:
    result = run(pool, host_env, spec("llama-serve", {
        "server": {"command": TRANSFORMERS_SERVE},
        "profile": {"kind": "poisson", "rate": 8}, "requests": 12,
        "slos": {"ttft_ms": 60_000, "tpot_ms": 60_000}}))
    assert result.status == "ok", result.failure
    m = result.metrics
    for figure in ("time_to_first_token", "inter_token_latency", "time_per_output_token",
                   "request_latency"):
        assert 0 < m[f"{figure}_p50_seconds"] <= m[f"{figure}_p90_seconds"] <= m[
            f"{figure}_p99_seconds"], figure
    assert m["request_error_ratio"] == 0 and m["request_timeout_ratio"] == 0
    # The synthetic model's tokenizer makes each word one token and no answer ends early.
    assert m["output_throughput_tokens_per_second"] == pytest.approx(
        4 * m["request_throughput_per_second"])
    # Generous SLOs: every request met them, so goodput is the throughput.
    assert m["goodput_ratio"] == 1.0
    assert m["goodput_requests_per_second"] == m["request_throughput_per_second"]
    assert 0.9 < m["achieved_rate_ratio"] < 1.1
    assert m["load_time_seconds"] > 0  # the server's start until ready
    assert len(result.samples["request_latency_seconds"]) == 12
    assert result.measurement is not None and result.measurement.iterations == 12
    versions = result.environment.transformers_version
    assert result.environment.server == f"transformers serve {versions}"
    # The server's CPU is the measurement's own, not a neighbour's: the load generator's
    # alone is tens of milliseconds here (about 1.5 ms of CPU a request, 12 requests);
    # the server's generation is most of a second of CPU (0.8 s measured on a busy host).
    assert result.noise is not None and result.noise.self_cpu_s > 0.2


def test_a_chat_sweep_finds_the_maximum_and_keeps_its_curve(
        pool: WorkerPool, host_env: Environment) -> None:
    # Two requests at a time, 100 ms to the first token: the closed-loop maximum is about
    # 2 / 0.14 s = 14/s; at a quarter of it queueing is rare, at the maximum it is not.
    result = run(pool, host_env, spec("sweep", {
        "server": fault_server(ttft_s=0.1, token_delay_s=0.01, tokens=4, slots=2),
        "api": "chat", "profile": {"kind": "sweep", "concurrency": 8, "points": 2},
        "requests": 16, "slos": {"ttft_ms": 400}}))
    assert result.status == "ok", result.failure
    m = result.metrics
    assert 8 < m["max_request_throughput_per_second"] < 16
    assert m["slo_max_rate_per_second"] in result.samples["sweep_rate_per_second"]
    curve = result.samples
    assert len(curve["sweep_rate_per_second"]) == 2
    assert curve["sweep_rate_per_second"][0] < curve["sweep_rate_per_second"][1]
    assert curve["sweep_ttft_p99_seconds"][0] < curve["sweep_ttft_p99_seconds"][1]
    # A sweep has no latency of its own: it is read by its maximum, with no interval claimed.
    assert headline(m) == "max_request_throughput_per_second"
    reading = read(result, headline(m))
    assert reading.rel_ci is None and reading.quality in ("clean", "disturbed")
    assert headline_text(result).endswith(" req/s max")


@pytest.mark.parametrize(("knobs", "kind", "says"), [
    ({"garbage": "json"}, FailureKind.REQUESTS_FAILED,
     "no request succeeded (8 sent: 8 errors, 0 timeouts); first: malformed JSON"),
    ({"error_status": 500}, FailureKind.REQUESTS_FAILED, "HTTP 500"),
    ({"die_after": 2, "die_mode": "exit"}, FailureKind.SERVER_UNAVAILABLE,
     "the server exited during the run"),
    ({"never_ready": True}, FailureKind.SERVER_UNAVAILABLE, "was not ready after 3 s"),
])
def test_a_failing_server_is_a_recorded_failure_with_its_cause(
        pool: WorkerPool, host_env: Environment,
        knobs: dict[str, Any], kind: FailureKind, says: str) -> None:
    server = fault_server(**knobs)
    if knobs.get("never_ready"):
        server["ready_timeout_s"] = 3
    result = run(pool, host_env, spec("faulty", {"server": server}))
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind is kind
    assert says in result.failure.message


def test_a_server_that_cannot_start_keeps_its_log(pool: WorkerPool,
                                                  host_env: Environment) -> None:
    command = ["{python}", "-c", "import sys; print('no such model: ' + sys.argv[1]); "
               "sys.exit(3)", "{port}"]
    result = run(pool, host_env, spec("no-start", {"server": {"command": command}}))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SERVER_UNAVAILABLE
    assert "exited with exit code 3 before it was ready" in result.failure.message
    assert result.failure.traceback_tail is not None
    assert "no such model: " in result.failure.traceback_tail


def test_a_stalled_stream_is_a_timeout_not_a_latency(
        pool: WorkerPool, host_env: Environment) -> None:
    # Every third request stalls after one token; the rest answer. The stalled ones are
    # counted as timeouts, and no latency figure includes them.
    with FaultServer(tokens=4, token_delay_s=0.005) as server:
        server.set(stall_after=1)
        stalled = spec("stall", {"endpoint": {"url": server.base_url, "model_name": "m"},
                                 "request_timeout_s": 1, "requests": 3, "warmup_requests": 0})
        result = run(pool, host_env, stalled)
    assert result.failure is not None and result.failure.kind is FailureKind.REQUESTS_FAILED
    assert "3 timeouts" in result.failure.message


def test_an_endpoint_key_comes_from_the_environment_and_is_never_kept(
        pool: WorkerPool, host_env: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-serving-" + "7" * 24
    monkeypatch.setenv("SERVING_TEST_KEY", key)
    with FaultServer(tokens=3, api_key=key) as server:
        good = spec("keyed", {"endpoint": {"url": server.base_url, "model_name": "m",
                                           "api_key_env": "SERVING_TEST_KEY"}})
        ok = run(pool, host_env, good)
        monkeypatch.setenv("SERVING_TEST_KEY", "wrong-" + key)
        refused = run(pool, host_env, good)
    assert ok.status == "ok", ok.failure
    assert ok.metrics["request_error_ratio"] == 0
    # An endpoint's versions are its own: the collector's torch is not the server's.
    assert ok.environment.transformers_version is None
    assert refused.failure is not None and "HTTP 401" in refused.failure.message
    for result in (ok, refused):
        text = result.model_dump_json()
        assert key not in text and "7" * 24 not in text


def test_an_injected_slowdown_moves_the_figures_it_should(
        pool: WorkerPool, host_env: Environment) -> None:
    # The fault server's delay knob between tokens: TPOT and ITL move by it, TTFT does not.
    with FaultServer(tokens=6, ttft_s=0.02, token_delay_s=0.01) as server:
        endpoint = {"endpoint": {"url": server.base_url, "model_name": "m"},
                    "profile": {"kind": "concurrent", "concurrency": 2}, "requests": 12}
        before = run(pool, host_env, spec("knob", endpoint))
        server.set(token_delay_s=0.04)
        after = run(pool, host_env, spec("knob", endpoint))
    assert before.series_id == after.series_id
    tpot = (after.metrics["time_per_output_token_p50_seconds"]
            / before.metrics["time_per_output_token_p50_seconds"])
    assert 2.5 < tpot < 4.5  # 40 ms against 10 ms a token, plus what both share
    ttft = (after.metrics["time_to_first_token_p50_seconds"]
            / before.metrics["time_to_first_token_p50_seconds"])
    assert 0.5 < ttft < 1.6
    assert math.isclose(after.metrics["goodput_ratio"], 1.0)
