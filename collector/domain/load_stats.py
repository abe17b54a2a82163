"""Per-request figures of a run under load, and what they add up to.

One `RequestRecord` per request, from the load generator (serving) or from transformers'
continuous-batching requests (in the worker). `summarise` turns a run's records into the
catalogue's metrics and raw samples:

- TTFT: first token - sent; ITL: the gaps between consecutive tokens; TPOT: (last token -
  first token) / (output tokens - 1); end-to-end latency: end - sent. Percentiles over the
  requests that succeeded; failed and timed-out requests are counted apart
  (request_error_ratio, request_timeout_ratio) and never enter a latency figure.
- Throughput: completed requests and their output tokens over the run's duration.
- Goodput (vLLM's and DistServe's definition): requests per second that succeeded and met
  every per-request SLO. A run *meets the SLOs* when at least `attainment` of all its
  requests (failed ones count as missed) are good.

Pure: no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from collector.domain.serving import SLOs
from collector.domain.stats import mean, percentile

Outcome = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class RequestRecord:
    """One request of a run. Times are seconds on one monotonic clock, relative to the
    run's start; `token_s` holds the arrival of each output token (or streamed chunk)."""

    sent_s: float
    end_s: float
    outcome: Outcome
    token_s: tuple[float, ...] = ()
    output_tokens: int = 0  # as the server counted them (usage), else the chunks received
    input_tokens: int = 0
    scheduled_s: float | None = None  # when an open-loop profile meant to send it
    client_overhead_s: float = 0.0  # the load generator's own work for this request
    error: str | None = None

    def __post_init__(self) -> None:
        if self.end_s < self.sent_s:
            raise ValueError("a request cannot end before it is sent")
        if self.outcome == "ok" and not self.token_s:
            raise ValueError("a successful request has at least one token")

    @property
    def ttft_s(self) -> float | None:
        return self.token_s[0] - self.sent_s if self.token_s else None

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.sent_s

    @property
    def itl_s(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.token_s)]

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first; None with one token."""
        tokens = max(self.output_tokens, len(self.token_s))
        if tokens < 2 or len(self.token_s) < 2:
            return None
        return (self.token_s[-1] - self.token_s[0]) / (tokens - 1)

    def good(self, slos: SLOs) -> bool:
        """Succeeded and met every SLO set."""
        if self.outcome != "ok":
            return False
        checks = ((slos.ttft_ms, self.ttft_s), (slos.e2e_ms, self.e2e_s),
                  (slos.tpot_ms, self.tpot_s),
                  (slos.itl_ms, max(self.itl_s) if len(self.token_s) > 1 else None))
        return all(limit is None or value is None or value * 1e3 <= limit
                   for limit, value in checks)


@dataclass(frozen=True)
class RunSummary:
    metrics: dict[str, float]
    samples: dict[str, list[float]] = field(default_factory=dict)
    meets_slos: bool = True


_PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99))


def _spread(name: str, values: Sequence[float], metrics: dict[str, float]) -> None:
    if not values:
        return
    ordered = sorted(values)
    for label, q in _PERCENTILES:
        metrics[f"{name}_{label}_seconds"] = percentile(ordered, q)


def summarise(records: Sequence[RequestRecord], *, duration_s: float,
              slos: SLOs) -> RunSummary:
    """A run's metrics (catalogue names) and raw samples from its requests. `duration_s`:
    from the first send to the last end. Records that were due at a time (`scheduled_s`:
    an open-loop profile's) also give the rate they were sent at against their schedule's."""
    if duration_s <= 0:
        raise ValueError("a run's duration must be positive")
    ok = [r for r in records if r.outcome == "ok"]
    total = len(records)
    ttft = [t for r in ok if (t := r.ttft_s) is not None]
    itl = [gap for r in ok for gap in r.itl_s]
    tpot = [t for r in ok if (t := r.tpot_s) is not None]
    e2e = [r.e2e_s for r in ok]
    metrics: dict[str, float] = {}
    _spread("time_to_first_token", ttft, metrics)
    if ttft:
        metrics["time_to_first_token_mean_seconds"] = mean(ttft)
    _spread("inter_token_latency", itl, metrics)
    if itl:
        metrics["inter_token_latency_mean_seconds"] = mean(itl)
    _spread("time_per_output_token", tpot, metrics)
    _spread("request_latency", e2e, metrics)
    good = sum(r.good(slos) for r in records)
    metrics.update({
        "request_throughput_per_second": len(ok) / duration_s,
        "output_throughput_tokens_per_second": sum(
            max(r.output_tokens, len(r.token_s)) for r in ok) / duration_s,
        "goodput_requests_per_second": good / duration_s,
        "goodput_ratio": good / total if total else 0.0,
        "request_error_ratio": sum(r.outcome == "error" for r in records) / total
        if total else 0.0,
        "request_timeout_ratio": sum(r.outcome == "timeout" for r in records) / total
        if total else 0.0,
    })
    if records:
        metrics["client_overhead_seconds"] = mean([r.client_overhead_s for r in records])
    due = [(r.scheduled_s, r.sent_s) for r in records if r.scheduled_s is not None]
    if len(due) > 1:
        # The sends' rate over the schedule's own (a Poisson schedule of n requests is off
        # its nominal rate by chance: ~1/sqrt(n)); 1 when the generator kept its schedule.
        due_span = max(d for d, _ in due) - min(d for d, _ in due)
        sent_span = max(s for _, s in due) - min(s for _, s in due)
        if due_span > 0 and sent_span > 0:
            metrics["achieved_rate_ratio"] = due_span / sent_span
    samples = {"time_to_first_token_seconds": ttft, "inter_token_latency_seconds": itl,
               "time_per_output_token_seconds": tpot, "request_latency_seconds": e2e}
    attained = good / total if total else 0.0
    return RunSummary(metrics, {k: v for k, v in samples.items() if v},
                      meets_slos=total > 0 and attained >= slos.attainment)
