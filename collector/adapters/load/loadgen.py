"""The load generator: one load profile against an OpenAI-compatible server, and a sweep.

`run_load` runs one profile of a `Serving` (warm-up requests first, sent one at a time and
discarded; then the measured run, bounded by `requests` and/or `duration_s`, whichever comes
first):

- synchronous: one request at a time (a closed loop of one);
- concurrent: `concurrency` requests in flight at all times (closed loop);
- constant: open loop, `rate` per second, evenly spaced;
- poisson: open loop, `rate` per second, exponential gaps from `random.Random` seeded by the
  benchmark's seed (`schedule`), so a seed gives the same due times every run.

Open loop: each request has an absolute due time (run start + its offset; no sleep is
relative to the previous send, so nothing drifts), is sent when it is due, whatever is in
flight, and records `scheduled_s` (due) and `sent_s`. Saturation: when `max_backlog`
requests are in flight at a due time, the server no longer keeps up; the run stops sending,
cancels what is in flight (their latencies would only measure the queue; each is recorded
as a timeout: offered, never served, never good), and says so (`saturated`, `stop_detail`,
`sent`, `cancelled`).

Client-bound: an open-loop run whose sends fell behind (the sends' rate below
RATE_SHORTFALL of the schedule's, or their p99 lag over SEND_LAG_LIMIT_S) while the client
itself was the bottleneck (the process's CPU time over the wall time above CPU_BOUND_RATIO
of one core, or the event loop's p99 lag over LOOP_LAG_LIMIT_S) did not offer the load it
claims: `run_load` raises ClientBound with the figures (check_client=False returns them in
`LoadRun.check` instead). A run that falls behind without the client being busy is kept
(and its check says so): the lag is then the network's or the machine's, not ours.

`sweep`: a closed-loop throughput run (`concurrency` in flight, 32 by default) gives the
maximum request throughput; then Poisson runs at `points` rates evenly spaced from
max/points to max; the highest rate whose run meets the SLOs (load_stats.summarise), did not
saturate and completed at least KEEP_UP of the rate offered is `slo_max_rate` (0 when none
did).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from collector.domain.load_stats import RequestRecord, RunSummary, summarise
from collector.domain.serving import LoadProfile, ProfileKind, Serving
from collector.domain.stats import percentile

from .client import Target, open_session, send
from .prompts import Prompt, cycled, read_prompts_file, synthetic

DEFAULT_SWEEP_CONCURRENCY = 32
# A sweep point's rate counts as sustained when the server completed at least this share of
# it (a run's duration includes its last requests' latency: a short run at a sustainable
# rate completes 0.95-0.97 of it, measured).
KEEP_UP = 0.9
# Poisson gaps are drawn in blocks of this many (unless the run's request count is known),
# each block rescaled to the nominal rate (`schedule`).
POISSON_BLOCK = 64
RATE_SHORTFALL = 0.98  # sends below 98% of the schedule's rate: the load was not offered
# p99 of (sent - due). benchmarks/loadgen_accuracy.py measures a p50 of about 1 ms (epoll
# waits in whole milliseconds) and a p99 of 1.5-5 ms at 1-200 req/s on two shared cores,
# with outliers to tens of ms when a neighbour takes the cores; a p99 over 10 ms is a
# schedule not kept (whether that is the client's fault is what the CPU figures decide).
SEND_LAG_LIMIT_S = 0.010
CPU_BOUND_RATIO = 0.9  # process CPU / wall: one core busy
LOOP_TICK_S = 0.01
# p99 of the event loop's lateness waking a LOOP_TICK_S sleep: 1-4 ms when the machine is
# quiet, up to about 35 ms measured with a busy neighbour on two shared cores while our own
# CPU stayed under 25% of a core; a loop later than this is one our own work keeps busy.
LOOP_LAG_LIMIT_S = 0.050
_MIN_DURATION_S = 1e-9


@dataclass(frozen=True)
class ClientCheck:
    """Whether the load generator offered the load it claims, and whether it was busy."""

    achieved_ratio: float | None  # open loop: the sends' rate / the schedule's rate
    send_lag_p50_s: float | None  # open loop: sent - due
    send_lag_p99_s: float | None
    cpu_s: float  # this process's CPU time during the measured run
    wall_s: float  # the measured run's wall time (first due to the last request's end)
    loop_lag_p99_s: float | None  # how late the event loop woke for a LOOP_TICK_S sleep

    @property
    def cpu_ratio(self) -> float:
        """CPU time / wall time (1 = one core busy)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def fell_behind(self) -> bool:
        return ((self.achieved_ratio is not None and self.achieved_ratio < RATE_SHORTFALL)
                or (self.send_lag_p99_s is not None
                    and self.send_lag_p99_s > SEND_LAG_LIMIT_S))

    @property
    def busy(self) -> bool:
        return self.cpu_ratio > CPU_BOUND_RATIO or (
            self.loop_lag_p99_s is not None and self.loop_lag_p99_s > LOOP_LAG_LIMIT_S)

    @property
    def client_bound(self) -> bool:
        return self.fell_behind and self.busy

    @property
    def text(self) -> str:
        parts = []
        if self.achieved_ratio is not None:
            parts.append(f"sent at {self.achieved_ratio:.1%} of the scheduled rate")
        if self.send_lag_p99_s is not None:
            parts.append(f"send lag p50 {self.send_lag_p50_s or 0.0:.2e} s, "
                         f"p99 {self.send_lag_p99_s:.2e} s")
        parts.append(f"client CPU {self.cpu_ratio:.0%} of one core")
        if self.loop_lag_p99_s is not None:
            parts.append(f"event-loop lag p99 {self.loop_lag_p99_s:.2e} s")
        return "; ".join(parts)


@dataclass(frozen=True)
class LoadRun:
    """One measured run of one profile: its records (warm-up left out) and summary."""

    profile: str  # as people read it: "poisson 4/s", "concurrent 8"
    records: tuple[RequestRecord, ...]
    summary: RunSummary
    target_rate: float | None
    concurrency: int | None
    sent: int
    warmup: int
    duration_s: float  # first send to last end
    stop_reason: str  # "requests", "duration" or "saturated"
    stop_detail: str
    cancelled: int  # in flight when a saturated run stopped: recorded as timeouts
    check: ClientCheck

    @property
    def saturated(self) -> bool:
        return self.stop_reason == "saturated"


@dataclass(frozen=True)
class SweepResult:
    throughput: LoadRun  # the closed-loop run that found the maximum
    max_throughput: float  # completed requests per second in it
    points: tuple[LoadRun, ...]  # the Poisson runs, lowest rate first
    slo_max_rate: float  # highest rate whose run met the SLOs without saturating; 0: none


class ClientBound(Exception):
    """The load generator could not offer the load: it was the bottleneck itself."""

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.check = run.check
        super().__init__(f"the load generator could not keep up with {run.profile}: "
                         f"{run.check.text}")


def schedule(kind: ProfileKind, rate: float, seed: int, *,
             block: int = POISSON_BLOCK) -> Iterator[float]:
    """Due times (seconds from the run's start) of an open-loop profile: constant i / rate;
    poisson 0, then cumulative exponential gaps, seeded, in blocks of `block` gaps rescaled
    to sum to exactly block / rate: Poisson arrivals conditioned on their count (given n
    arrivals in a window, a Poisson process places them as sorted uniforms, whose gaps are
    exactly these). Unconditioned, the rate a run of n requests offers is off its nominal
    one by about 1/sqrt(n) by chance (24 requests at 4/s offered 5.8/s with one seed), and
    every figure per second with it; conditioned, the bursts stay and the rate is the one
    the profile names. A run bounded by its request count passes that count as `block`."""
    if rate <= 0:
        raise ValueError("a rate must be positive")
    if kind is ProfileKind.CONSTANT:
        index = 0
        while True:
            yield index / rate
            index += 1
    elif kind is ProfileKind.POISSON:
        rng = random.Random(f"schedule:{seed}")  # noqa: S311 - a seeded schedule, not crypto
        due = 0.0
        while True:
            gaps = [rng.expovariate(rate) for _ in range(max(block, 1))]
            scale = len(gaps) / rate / math.fsum(gaps)
            for gap in gaps:
                yield due
                due += gap * scale
    else:
        raise ValueError(f"profile {kind.value} has no schedule (closed loop)")


def prompts_for(serving: Serving) -> Iterator[Prompt]:
    """The prompts a run sends: the prompts file's, cycled, or synthetic ones."""
    if serving.prompts_file is not None:
        return cycled(read_prompts_file(serving.prompts_file,
                                        default_output_tokens=serving.output_tokens.mean))
    return synthetic(serving.input_tokens, serving.output_tokens, serving.seed)


class _LoopMonitor:
    """How late the event loop wakes for a short sleep: a busy loop wakes late."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_TICK_S)
            self.lags.append(max(0.0, loop.time() - before - LOOP_TICK_S))

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def p99(self) -> float | None:
        return percentile(sorted(self.lags), 99) if self.lags else None


@dataclass
class _Outcome:
    records: list[RequestRecord]
    sent: int
    reason: str
    detail: str
    cancelled: int = 0


async def _closed_loop(session: aiohttp.ClientSession, *, target: Target, serving: Serving,
                       prompts: Iterator[Prompt], concurrency: int,
                       run_start: float) -> _Outcome:
    records: list[RequestRecord] = []
    claimed = 0
    reason = "requests"

    async def worker() -> None:
        nonlocal claimed, reason
        while True:
            if serving.requests is not None and claimed >= serving.requests:
                return
            if (serving.duration_s is not None
                    and time.perf_counter() - run_start >= serving.duration_s):
                reason = "duration"
                return
            claimed += 1
            records.append(await send(session, target, next(prompts), run_start=run_start,
                                      timeout_s=serving.request_timeout_s))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    detail = (f"{claimed} requests sent" if reason == "requests"
              else f"duration {serving.duration_s:g} s reached after {claimed} requests")
    return _Outcome(records, claimed, reason, detail)


async def _open_loop(session: aiohttp.ClientSession, *, target: Target, serving: Serving,
                     prompts: Iterator[Prompt], profile: LoadProfile,
                     run_start: float) -> _Outcome:
    assert profile.rate is not None
    records: list[RequestRecord] = []
    in_flight: set[asyncio.Task[RequestRecord]] = set()
    started: dict[asyncio.Task[RequestRecord], tuple[float, float, Prompt]] = {}

    def finished(task: asyncio.Task[RequestRecord]) -> None:
        in_flight.discard(task)
        if not task.cancelled() and task.exception() is None:
            records.append(task.result())

    sent = 0
    reason, detail = "requests", ""
    for due in schedule(profile.kind, profile.rate, serving.seed,
                        block=serving.requests or POISSON_BLOCK):
        if serving.requests is not None and sent >= serving.requests:
            reason, detail = "requests", f"{sent} requests sent"
            break
        if serving.duration_s is not None and due >= serving.duration_s:
            reason, detail = "duration", (f"duration {serving.duration_s:g} s reached "
                                          f"after {sent} requests")
            break
        prompt = next(prompts)  # made before the wait, not on the due time
        delay = run_start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= serving.max_backlog:
            reason = "saturated"
            detail = (f"{len(in_flight)} requests in flight reached max_backlog "
                      f"{serving.max_backlog} at {due:.3f} s, after {sent} sent: the server "
                      "no longer keeps up with the rate")
            break
        task = asyncio.create_task(send(session, target, prompt, run_start=run_start,
                                        timeout_s=serving.request_timeout_s,
                                        scheduled_s=due))
        in_flight.add(task)
        started[task] = (due, time.perf_counter() - run_start, prompt)
        task.add_done_callback(finished)
        sent += 1
    cancelled = 0
    if reason == "saturated":
        # What was in flight was offered and never served: each is a timed-out request
        # (counted in request_timeout_ratio, never good, never in a latency figure).
        cancelled = len(in_flight)
        end = time.perf_counter() - run_start
        for task in list(in_flight):
            task.cancel()
            due_s, sent_s, prompt = started[task]
            records.append(RequestRecord(
                sent_s=sent_s, end_s=max(end, sent_s), outcome="timeout",
                input_tokens=prompt.input_tokens, scheduled_s=due_s,
                error="cancelled unanswered when the run saturated"))
    pending = list(in_flight)
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:  # a bug of ours in send(), not a server's doing: raise it
        if isinstance(result, BaseException) and not isinstance(result,
                                                                asyncio.CancelledError):
            raise result
    return _Outcome(records, sent, reason, detail, cancelled)


def _check(records: list[RequestRecord], summary: RunSummary, cpu_s: float, wall_s: float,
           monitor: _LoopMonitor) -> ClientCheck:
    """How the client kept its schedule: the sends' rate against the schedule's (the
    summary's achieved_rate_ratio) and how late they went."""
    lags = sorted(r.sent_s - r.scheduled_s for r in records if r.scheduled_s is not None)
    lag50 = percentile(lags, 50) if lags else None
    lag99 = percentile(lags, 99) if lags else None
    ratio = summary.metrics.get("achieved_rate_ratio")
    return ClientCheck(ratio, lag50, lag99, cpu_s, wall_s, monitor.p99())


async def run_load_async(target: Target, serving: Serving, *,
                         profile: LoadProfile | None = None,
                         prompts: Iterator[Prompt] | None = None,
                         check_client: bool = True) -> LoadRun:
    """`run_load` inside a running event loop."""
    profile = profile or serving.profile
    if profile.kind is ProfileKind.SWEEP:
        raise ValueError("a sweep is several runs: call sweep()")
    prompts = prompts if prompts is not None else prompts_for(serving)
    async with open_session() as session:
        warm_start = time.perf_counter()
        for _ in range(serving.warmup_requests):
            await send(session, target, next(prompts), run_start=warm_start,
                       timeout_s=serving.request_timeout_s)
        monitor = _LoopMonitor()
        monitor.start()
        cpu_start = time.process_time()
        run_start = time.perf_counter()
        if profile.kind in (ProfileKind.CONSTANT, ProfileKind.POISSON):
            outcome = await _open_loop(session, target=target, serving=serving,
                                       prompts=prompts, profile=profile, run_start=run_start)
        else:
            concurrency = profile.concurrency or 1
            outcome = await _closed_loop(session, target=target, serving=serving,
                                         prompts=prompts, concurrency=concurrency,
                                         run_start=run_start)
        wall_s = time.perf_counter() - run_start
        cpu_s = time.process_time() - cpu_start
        await monitor.stop()
    records = sorted(outcome.records, key=lambda r: r.sent_s)
    duration = (max(r.end_s for r in records) - min(r.sent_s for r in records)
                if records else 0.0)
    summary = summarise(records, duration_s=max(duration, _MIN_DURATION_S),
                        slos=serving.slos)
    run = LoadRun(profile=profile.text, records=tuple(records), summary=summary,
                  target_rate=profile.rate,
                  concurrency=profile.concurrency if profile.kind is not
                  ProfileKind.SYNCHRONOUS else 1,
                  sent=outcome.sent, warmup=serving.warmup_requests, duration_s=duration,
                  stop_reason=outcome.reason, stop_detail=outcome.detail,
                  cancelled=outcome.cancelled, check=_check(records, summary, cpu_s, wall_s,
                                               monitor))
    if check_client and run.check.client_bound:
        raise ClientBound(run)
    return run


def run_load(target: Target, serving: Serving, *, profile: LoadProfile | None = None,
             prompts: Iterator[Prompt] | None = None, check_client: bool = True) -> LoadRun:
    """Run `profile` (default: the serving's own) against `target` and return its records
    and summary. Raises ClientBound when the client could not offer the load (unless
    `check_client` is False), ConfigError for a bad prompts file."""
    return asyncio.run(run_load_async(target, serving, profile=profile, prompts=prompts,
                                      check_client=check_client))


def sweep(target: Target, serving: Serving, *, check_client: bool = True) -> SweepResult:
    """The maximum throughput, then Poisson runs at `points` rates up to it (see the
    module's text). Every run gets the same prompts (a fresh stream from the seed)."""
    points = serving.profile.points
    concurrency = serving.profile.concurrency or DEFAULT_SWEEP_CONCURRENCY
    throughput = run_load(target, serving, check_client=check_client,
                          profile=LoadProfile(kind=ProfileKind.CONCURRENT,
                                              concurrency=concurrency))
    max_rate = throughput.summary.metrics["request_throughput_per_second"]
    if max_rate <= 0:
        return SweepResult(throughput, 0.0, (), 0.0)
    runs = []
    for k in range(1, points + 1):
        rate = min(100_000.0, max_rate * k / points)
        runs.append(run_load(target, serving, check_client=check_client,
                             profile=LoadProfile(kind=ProfileKind.POISSON, rate=rate)))
    good = [r.target_rate for r in runs if r.target_rate is not None and kept_up(r)]
    return SweepResult(throughput, max_rate, tuple(runs), max(good, default=0.0))


def kept_up(run: LoadRun) -> bool:
    """Whether a run's rate is one the server sustains within the SLOs: the requests met
    them, the run did not saturate, and the server completed at least KEEP_UP of the rate
    offered (a short run at a rate beyond the server's can meet the SLOs before its queue
    grows: 32 requests offered at 92/s to a server that completes 65/s did, here)."""
    assert run.target_rate is not None
    throughput = run.summary.metrics["request_throughput_per_second"]
    return (run.summary.meets_slos and not run.saturated
            and throughput >= KEEP_UP * run.target_rate)
