"""The load generator against our fault server (its own process, a loopback port the
kernel chose): each fault ends as its outcome with its cause, failures stay out of the
latency figures, open-loop rates and schedules, saturation, sweeps, and the key."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from collector.adapters.load.client import Target, open_session, send
from collector.adapters.load.loadgen import (
    ClientBound,
    LoadRun,
    run_load,
    schedule,
    sweep,
)
from collector.adapters.load.prompts import Prompt
from collector.domain.serving import (
    Endpoint,
    Lengths,
    LoadProfile,
    ProfileKind,
    Serving,
    SLOs,
)
from tests.openai_fault_server import FaultServer


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as started:
        yield started


@pytest.fixture
def fault(server: FaultServer) -> FaultServer:
    server.reset()
    return server


def serving(url: str, **settings: Any) -> Serving:
    base: dict[str, Any] = {"requests": 4, "warmup_requests": 0, "request_timeout_s": 5.0,
                            "input_tokens": Lengths(mean=6), "output_tokens": Lengths(mean=5)}
    return Serving(endpoint=Endpoint(url=url), **{**base, **settings})


def run(url: str, *, api: str = "completions", key: str | None = None,
        check_client: bool = False, **settings: Any) -> LoadRun:
    return run_load(Target(url, "fault", api, api_key=key),  # type: ignore[arg-type] # str api
                    serving(url, **settings), check_client=check_client)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_healthy_stream_records_every_token(fault: FaultServer, api: str) -> None:
    fault.set(tokens=12, token_delay_s=0.002)
    result = run(fault.base_url, api=api, requests=3, warmup_requests=2)
    assert [r.outcome for r in result.records] == ["ok"] * 3
    for record in result.records:
        assert record.output_tokens == 5  # max_tokens honoured, from usage
        assert len(record.token_s) == 5  # the chat role chunk is no token
        assert record.input_tokens == 6
        assert record.sent_s <= record.token_s[0] <= record.token_s[-1] <= record.end_s
        assert record.client_overhead_s > 0
    assert fault.stats()["requests"] >= 5  # the two warm-up requests were sent too
    assert result.sent == 3
    assert result.stop_reason == "requests"
    assert result.summary.metrics["request_error_ratio"] == 0


def test_without_usage_the_chunks_are_counted(fault: FaultServer) -> None:
    fault.set(usage=False, tokens=3)
    (record,) = run(fault.base_url, requests=1).records
    assert record.outcome == "ok"
    assert record.output_tokens == 3
    assert record.input_tokens == 6  # the planned count


FAULTS: list[tuple[dict[str, Any], str, str]] = [
    ({"error_status": 503}, "error", "HTTP 503: "),
    ({"error_status": 429}, "error", "HTTP 429: "),
    ({"stall_after": 2}, "timeout", "took longer than 0.4 s (2 token(s) received)"),
    ({"ttft_s": 2.0}, "timeout", "took longer than 0.4 s (0 token(s) received)"),
    ({"tokens": 40, "token_delay_s": 0.05}, "timeout", "took longer than 0.4 s"),
    ({"die_after": 2}, "error", "the stream broke after 2 token(s)"),
    ({"garbage": "json"}, "error", "malformed JSON in the stream"),
    ({"garbage": "sse"}, "error", "not a server-sent event"),
    ({"garbage": "http"}, "error", "Bad status line"),
    ({"finish": False}, "error", "without a finish"),
    ({"tokens": 0}, "error", "without any token"),
]


@pytest.mark.parametrize(("knobs", "outcome", "cause"), FAULTS,
                         ids=[next(iter(k)) + "-" + str(next(iter(k.values())))
                              for k, _, _ in FAULTS])
def test_each_fault_ends_as_its_outcome(fault: FaultServer, knobs: dict[str, Any],
                                        outcome: str, cause: str) -> None:
    fault.set(**knobs)
    timeout = 0.4 if outcome == "timeout" else 5.0
    settings: dict[str, Any] = {"requests": 1, "request_timeout_s": timeout}
    if "token_delay_s" in knobs:
        settings["output_tokens"] = Lengths(mean=40)
    (record,) = run(fault.base_url, **settings).records
    assert record.outcome == outcome
    assert record.error is not None
    assert cause in record.error
    assert record.error.isprintable()
    assert len(record.error) <= 210  # bounded excerpt
    if outcome == "timeout":
        assert record.e2e_s < timeout + 0.3


def test_an_error_body_is_escaped_and_bounded(fault: FaultServer) -> None:
    fault.set(error_status=500)
    (record,) = run(fault.base_url, requests=1).records
    assert record.error is not None
    assert "\x1b" not in record.error
    assert "\n" not in record.error
    assert "injected failure" in record.error
    assert record.error.endswith("...")


def test_failed_requests_never_enter_latency_figures(fault: FaultServer) -> None:
    fault.set(error_status=503, error_every=2, tokens=4)
    result = run(fault.base_url, requests=8, profile=LoadProfile(kind=ProfileKind.CONCURRENT,
                                                                  concurrency=2))
    ok = [r for r in result.records if r.outcome == "ok"]
    assert len(ok) == 4
    metrics, samples = result.summary.metrics, result.summary.samples
    assert metrics["request_error_ratio"] == 0.5
    assert len(samples["time_to_first_token_seconds"]) == 4
    assert len(samples["request_latency_seconds"]) == 4
    assert sorted(samples["request_latency_seconds"]) == sorted(r.e2e_s for r in ok)


def test_a_refused_connection_is_an_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(f"http://127.0.0.1:{port}", requests=2)
    assert [r.outcome for r in result.records] == ["error", "error"]
    assert all("cannot connect" in (r.error or "") for r in result.records)
    assert result.summary.metrics["request_error_ratio"] == 1.0
    assert "time_to_first_token_p50_seconds" not in result.summary.metrics


def test_a_server_that_dies_mid_stream() -> None:
    with FaultServer(die_after=2, die_mode="exit", tokens=5) as dying:
        result = run(dying.base_url, requests=2)
        assert not dying.alive()
    first, second = result.records
    assert first.outcome == "error"
    assert "after 2 token(s)" in (first.error or "")
    assert second.outcome == "error"  # refused, or reset on the dead pooled connection
    assert any(cause in (second.error or "")
               for cause in ("cannot connect", "reset", "closed the connection"))


def test_the_key_is_sent_and_never_shown(fault: FaultServer) -> None:
    key = "sk-live-0123456789abcdef"
    fault.set(api_key="another-key")
    target = Target(fault.base_url, "fault", api_key=key)
    result = run(fault.base_url, key=key, requests=2)
    assert all(r.outcome == "error" and "HTTP 401" in (r.error or "")
               for r in result.records)
    assert f"Bearer {key}" in fault.stats()["authorization_seen"]
    shown = [repr(target), str(target), repr(result), repr(result.records)]
    assert not any(key in text for text in shown)
    assert target.hide(f"echoed {key} and {key!r}") == "echoed *** and '***'"
    # and a wrong key in a refused connection's message: nowhere either
    assert all(key not in (r.error or "") for r in result.records)


def test_synchronous_sends_one_at_a_time(fault: FaultServer) -> None:
    fault.set(tokens=3, token_delay_s=0.005)
    result = run(fault.base_url, requests=5)
    records = result.records
    assert all(b.sent_s >= a.end_s for a, b in itertools.pairwise(records))
    assert fault.stats()["max_in_flight"] == 1


def test_concurrent_keeps_n_in_flight(fault: FaultServer) -> None:
    fault.set(tokens=3, ttft_s=0.05)
    result = run(fault.base_url, requests=12,
                 profile=LoadProfile(kind=ProfileKind.CONCURRENT, concurrency=4))
    assert result.sent == 12
    assert all(r.outcome == "ok" for r in result.records)
    assert fault.stats()["max_in_flight"] == 4
    # 12 requests, 4 at a time, each >= 50 ms: three waves
    assert result.duration_s >= 0.15


def test_poisson_schedule_is_seeded() -> None:
    first = list(itertools.islice(schedule(ProfileKind.POISSON, 10.0, 7), 2000))
    again = list(itertools.islice(schedule(ProfileKind.POISSON, 10.0, 7), 2000))
    other = list(itertools.islice(schedule(ProfileKind.POISSON, 10.0, 8), 2000))
    assert first == again
    assert first != other
    assert first[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert all(g > 0 for g in gaps)
    # Each block of 64 gaps is rescaled to the nominal rate: 64 gaps of 0.1 s on average.
    for start in range(0, 64 * 31, 64):
        assert first[start + 64] - first[start] == pytest.approx(6.4)
    # ... while the gaps stay exponential: their coefficient of variation is about 1
    # (a constant schedule's is 0); over 1999 gaps its sd is about 3%.
    mean_gap = sum(gaps) / len(gaps)
    cv = (sum((g - mean_gap) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean_gap
    assert 0.85 < cv < 1.15
    short = list(itertools.islice(schedule(ProfileKind.POISSON, 4.0, 0, block=24), 25))
    assert short[24] == pytest.approx(6.0)  # 24 gaps at 4/s: exactly 6 s
    constant = list(itertools.islice(schedule(ProfileKind.CONSTANT, 4.0, 0), 5))
    assert constant == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("kind", [ProfileKind.CONSTANT, ProfileKind.POISSON])
def test_open_loop_sends_on_schedule(fault: FaultServer, kind: ProfileKind) -> None:
    fault.set(instant=True, tokens=4)
    result = run(fault.base_url, requests=40, seed=5,
                 profile=LoadProfile(kind=kind, rate=50.0), check_client=True)
    due = list(itertools.islice(schedule(kind, 50.0, 5, block=40), 40))
    assert [r.scheduled_s for r in result.records] == due
    check = result.check
    # Measured: sends within 0.05% of the schedule's rate and ~1 ms late (p50), tens of ms
    # at worst when a neighbour holds both cores; 5% and 50 ms leave room for that.
    assert check.achieved_ratio is not None
    assert abs(check.achieved_ratio - 1) < 0.05
    assert check.send_lag_p50_s is not None
    assert 0 <= check.send_lag_p50_s < 0.05
    assert all(r.sent_s >= (r.scheduled_s or 0) for r in result.records)
    assert result.summary.metrics["achieved_rate_ratio"] == pytest.approx(1, abs=0.05)


def test_a_duration_bounds_the_run(fault: FaultServer) -> None:
    fault.set(instant=True)
    result = run(fault.base_url, requests=None, duration_s=0.5,
                 profile=LoadProfile(kind=ProfileKind.CONSTANT, rate=20.0))
    assert result.stop_reason == "duration"
    assert result.sent == 10  # due at 0, 0.05, .. 0.45
    closed = run(fault.base_url, requests=None, duration_s=0.3)
    assert closed.stop_reason == "duration"
    assert closed.sent >= 2


def test_saturation_stops_an_open_loop_run(fault: FaultServer) -> None:
    fault.set(ttft_s=3.0)
    result = run(fault.base_url, requests=200, max_backlog=10,
                 profile=LoadProfile(kind=ProfileKind.CONSTANT, rate=100.0))
    assert result.saturated
    assert result.sent == 10
    assert result.cancelled == 10
    # Offered and never served: timeouts, never good, in no latency figure.
    assert [r.outcome for r in result.records] == ["timeout"] * 10
    assert all("saturated" in (r.error or "") for r in result.records)
    m = result.summary.metrics
    assert m["request_timeout_ratio"] == 1.0 and m["goodput_ratio"] == 0.0
    assert "request_latency_p50_seconds" not in m
    assert "max_backlog 10" in result.stop_detail
    assert "after 10 sent" in result.stop_detail


def test_a_client_that_cannot_keep_up_is_client_bound(fault: FaultServer) -> None:
    fault.set(instant=True, tokens=2)
    with pytest.raises(ClientBound) as caught:
        run(fault.base_url, requests=400, max_backlog=100_000, check_client=True,
            profile=LoadProfile(kind=ProfileKind.CONSTANT, rate=50_000.0))
    check = caught.value.check
    assert check.fell_behind
    assert check.busy
    assert check.achieved_ratio is not None
    assert check.achieved_ratio < 0.98
    assert "could not keep up with constant 50000/s" in str(caught.value)
    assert "client CPU" in str(caught.value)


def test_a_sweep_finds_the_max_and_the_rate_within_slos(fault: FaultServer) -> None:
    # Capacity 4 requests at a time, 40 ms each: at most 100 requests/s. A quarter of it
    # rarely queues (ttft ~40 ms); at the max every arrival queues behind the others.
    fault.set(slots=4, ttft_s=0.04, tokens=2)
    settings = serving(fault.base_url, requests=40, warmup_requests=1,
                       profile=LoadProfile(kind=ProfileKind.SWEEP, concurrency=8, points=4),
                       slos=SLOs(ttft_ms=90, attainment=0.9))
    result = sweep(Target(fault.base_url, "fault"), settings, check_client=False)
    assert 60 <= result.max_throughput <= 105
    rates = [p.target_rate for p in result.points]
    assert rates == pytest.approx([result.max_throughput * k / 4 for k in (1, 2, 3, 4)])
    lowest, highest = result.points[0], result.points[-1]
    assert lowest.summary.meets_slos
    assert not highest.summary.meets_slos
    assert lowest.target_rate is not None
    assert highest.target_rate is not None
    assert lowest.target_rate <= result.slo_max_rate < highest.target_rate
    assert result.throughput.concurrency == 8


def test_a_stalled_stream_times_out_on_its_own_clock(fault: FaultServer) -> None:
    fault.set(stall_after=2, tokens=5)

    async def one() -> Any:
        async with open_session() as session:
            return await send(session, Target(fault.base_url, "m"), Prompt("w3", 1, 5),
                              run_start=0.0, timeout_s=5.0, stall_timeout_s=0.2)

    record = asyncio.run(one())
    assert record.outcome == "timeout"
    assert record.error == "stalled: no byte for 0.2 s after 2 token(s)"
    assert len(record.token_s) == 2
    assert 0.2 <= record.e2e_s < 1.0


def test_send_survives_a_cancelled_caller(fault: FaultServer) -> None:
    fault.set(ttft_s=2.0)

    async def cancel_one() -> bool:
        async with open_session() as session:
            task = asyncio.create_task(send(session, Target(fault.base_url, "m"),
                                            Prompt("w3", 1, 2), run_start=0.0,
                                            timeout_s=5))
            await asyncio.sleep(0.05)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return True
            return False

    assert asyncio.run(cancel_one())
