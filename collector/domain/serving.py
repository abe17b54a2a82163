"""Benchmarks of LLM inference under load: what a continuous-batching run and a serving run
are (their settings, part of a benchmark's identity), and the service-level objectives
goodput is judged against.

- `Batching`: N requests submitted at once to transformers' continuous batching (paged
  attention) in the isolated worker, with input and output lengths fixed or drawn from a
  seeded distribution.
- `Serving`: a load generator driving an OpenAI-compatible server, either one the collector
  starts (`server`, e.g. `transformers serve`) or an external `endpoint`, under a load
  `profile`, bounded by a request count or a duration, with per-request SLOs.

Pure data: no I/O. The worker side (collector/adapters/measure/batching.py, serving/) runs
them; the per-request figures and goodput are computed by collector.domain.load_stats.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A server command's placeholders, filled in by the worker (each one optional).
COMMAND_PLACEHOLDERS = ("python", "model", "host", "port", "device", "dtype")
# The default server: transformers' own, with continuous batching, in the worker's
# interpreter (so a package environment's transformers serves in an A/B).
DEFAULT_SERVER_COMMAND = ("{python}", "-m", "transformers.cli.transformers", "serve",
                          "{model}", "--host", "{host}", "--port", "{port}",
                          "--device", "{device}", "--dtype", "{dtype}",
                          "--continuous-batching", "--log-level", "info")
# Environment variable names credentials may be read from (never the value in the config).
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Lengths(_Frozen):
    """Token lengths: `mean` tokens, fixed or drawn per request from a seeded distribution
    (uniform on mean +- spread x mean; normal with sd spread x mean, clipped to >= 1)."""

    mean: Annotated[int, Field(ge=1, le=1_000_000)]
    distribution: Literal["fixed", "uniform", "normal"] = "fixed"
    spread: Annotated[float, Field(ge=0, le=1)] = 0.0

    @model_validator(mode="after")
    def _spread_needs_distribution(self) -> Lengths:
        if self.distribution == "fixed" and self.spread != 0:
            raise ValueError("spread needs distribution uniform or normal (fixed lengths "
                             "have none)")
        return self


class Batching(_Frozen):
    """A continuous-batching run in the worker: `requests` prompts submitted at once to
    `generate_batch` (paged attention), timed as one batch per iteration. `page_size`,
    `num_blocks` and `max_batch_tokens` are transformers' ContinuousBatchingConfig (None:
    its defaults); all of it is identity."""

    requests: Annotated[int, Field(ge=1, le=10_000)] = 16
    input_tokens: Lengths = Lengths(mean=64)
    output_tokens: Lengths = Lengths(mean=16)
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    page_size: Annotated[int, Field(ge=1, le=65_536)] | None = None
    num_blocks: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    max_batch_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class ProfileKind(str, Enum):
    """How requests are sent (guidellm's and vLLM's vocabulary)."""

    SYNCHRONOUS = "synchronous"  # one request at a time, the next when it ends
    CONCURRENT = "concurrent"  # `concurrency` requests in flight at all times (closed loop)
    CONSTANT = "constant"  # open loop: `rate` requests per second, evenly spaced
    POISSON = "poisson"  # open loop: `rate` per second, exponential gaps (seeded)
    # Find the maximum throughput (as many in flight as `concurrency`), then Poisson runs
    # at `points` rates evenly spaced from max/points up to the max.
    SWEEP = "sweep"


class LoadProfile(_Frozen):
    kind: ProfileKind
    rate: Annotated[float, Field(gt=0, le=100_000)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None
    points: Annotated[int, Field(ge=2, le=20)] = 4

    @model_validator(mode="after")
    def _parameters(self) -> LoadProfile:
        needs_rate = self.kind in (ProfileKind.CONSTANT, ProfileKind.POISSON)
        if needs_rate and self.rate is None:
            raise ValueError(f"profile {self.kind.value} needs a rate (requests per second)")
        if not needs_rate and self.rate is not None:
            raise ValueError(f"profile {self.kind.value} takes no rate (only constant and "
                             "poisson do)")
        if self.kind is ProfileKind.CONCURRENT and self.concurrency is None:
            raise ValueError("profile concurrent needs a concurrency (requests in flight)")
        if self.kind in (ProfileKind.SYNCHRONOUS, ProfileKind.CONSTANT,
                         ProfileKind.POISSON) and self.concurrency is not None:
            raise ValueError(f"profile {self.kind.value} takes no concurrency (only "
                             "concurrent and sweep do)")
        return self

    @property
    def text(self) -> str:
        """The profile as people read it: `poisson 4/s`, `concurrent 8`, `sweep x4`."""
        if self.rate is not None:
            return f"{self.kind.value} {self.rate:g}/s"
        if self.kind is ProfileKind.CONCURRENT:
            return f"concurrent {self.concurrency}"
        if self.kind is ProfileKind.SWEEP:
            return f"sweep x{self.points}"
        return str(self.kind.value)


class SLOs(_Frozen):
    """Per-request service-level objectives (None: not judged). A request is good when it
    succeeded and meets every one; goodput is good requests per second. A rate meets the
    SLOs when at least `attainment` of its requests are good (0.99: the p99 of each figure
    is within its limit, MLPerf Server's rule)."""

    ttft_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    tpot_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    itl_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None  # every gap, per request
    e2e_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    attainment: Annotated[float, Field(gt=0, le=1)] = 0.99

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.itl_ms,
                                          self.e2e_ms))


class Server(_Frozen):
    """A server the collector starts for the benchmark, in its own process group on a
    loopback port it chooses, waited for with `ready_path` until `ready_timeout_s`, and
    stopped and reaped afterwards. `command` is an argument list (no shell) with the
    placeholders {python} {model} {host} {port} {device} {dtype}."""

    command: Annotated[tuple[Annotated[str, Field(min_length=1, max_length=4096)], ...],
                       Field(min_length=1, max_length=256)] = DEFAULT_SERVER_COMMAND
    ready_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.\-]*$")] = "/health"
    ready_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 180.0

    @model_validator(mode="after")
    def _placeholders(self) -> Server:
        for arg in self.command:
            for name in re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", arg):
                if name not in COMMAND_PLACEHOLDERS:
                    shown = ", ".join("{" + p + "}" for p in COMMAND_PLACEHOLDERS)
                    raise ValueError(f"unknown placeholder {{{name}}} in command {arg!r}; "
                                     f"known: {shown}")
        if not any("{port}" in arg for arg in self.command):
            raise ValueError("the command must take the port the collector chooses: put "
                             "{port} in it")
        return self


class Endpoint(_Frozen):
    """An external OpenAI-compatible server (vLLM, TGI, SGLang, a team's own). Its key, if
    it needs one, comes from the environment variable `api_key_env` or the file
    `api_key_file` (read bounded), never from the config; it is never printed."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s/?#@]+(:[0-9]+)?(/[^\s?#]*)?$",
                              max_length=2048)]
    model_name: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    api_key_env: Annotated[str, Field(pattern=ENV_NAME, max_length=256)] | None = None
    api_key_file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Endpoint:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")
        return self


class Serving(_Frozen):
    """A serving benchmark: a load generator against `server` (started by the collector)
    or `endpoint` (external), exactly one of them."""

    server: Server | None = None
    endpoint: Endpoint | None = None
    api: Literal["completions", "chat"] = "completions"
    profile: LoadProfile = LoadProfile(kind=ProfileKind.SYNCHRONOUS)
    # Bounds of one measured run (of each point of a sweep): whichever comes first.
    requests: Annotated[int, Field(ge=1, le=1_000_000)] | None = 32
    duration_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    # Requests sent and discarded first (the server's first calls are cold).
    warmup_requests: Annotated[int, Field(ge=0, le=100_000)] = 2
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    input_tokens: Lengths = Lengths(mean=64)
    output_tokens: Lengths = Lengths(mean=16)
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    # A JSON Lines file of {"prompt": ..., "output_tokens": n} to send instead of synthetic
    # prompts (read bounded; cycled in order).
    prompts_file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    slos: SLOs = SLOs()
    # Saturation: an open-loop run stops early when the requests waiting to be answered
    # exceed this many (the server no longer keeps up: queueing grows without bound).
    max_backlog: Annotated[int, Field(ge=1, le=100_000)] = 256

    @model_validator(mode="after")
    def _one_target(self) -> Serving:
        if (self.server is None) == (self.endpoint is None):
            raise ValueError("give exactly one of server (the collector starts it) or "
                             "endpoint (an external URL)")
        if self.requests is None and self.duration_s is None:
            raise ValueError("give requests or duration_s (or both): a run needs a bound")
        return self

    def identity(self) -> dict[str, object]:
        """What defines the workload: everything but credentials and patience (the key's
        source, readiness and timeouts are not what is measured)."""
        ident = self.model_dump(mode="json", exclude={"endpoint", "server"})
        if self.server is not None:
            ident["server"] = list(self.server.command)
        if self.endpoint is not None:
            ident["endpoint"] = {"url": self.endpoint.url,
                                 "model_name": self.endpoint.model_name}
        ident.pop("request_timeout_s")
        return ident


# A sweep's latency-throughput curve, kept in its result as raw samples (aligned lists:
# index i is point i, in the order the rates were run), by what each list holds. The
# Serving dashboard draws the latest sweep's points from them.
SWEEP_SAMPLES = {
    "offered rate": "sweep_rate_per_second",
    "throughput": "sweep_request_throughput_per_second",
    "goodput": "sweep_goodput_requests_per_second",
    "p99 TTFT": "sweep_ttft_p99_seconds",
    "p50 TPOT": "sweep_tpot_p50_seconds",
    "p99 request latency": "sweep_request_latency_p99_seconds",
}
