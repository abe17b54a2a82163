"""Cost and carbon, derived: what a result's throughput costs at its host's price per hour,
and what its measured energy emits at its grid's carbon intensity (the config's `cost`
section, docs/configuration.md).

Core module (pure, no I/O). The figures are derived in the parent from a result's final
metrics (after its repetitions are combined: collector.analysis.combine), with the rates in
force when it was made, and stored like measured ones:

- `cost_per_million_output_tokens` = hourly price / 3600 / output tokens per second x 1e6,
  the tokens per second being `output_throughput_tokens_per_second` under load (completed
  requests' output tokens over the run), else `generated_tokens_per_second` (generation: new
  tokens over the whole batch per second of generate() calls, prefill included);
- `cost_per_thousand_requests` = hourly price / 3600 / `request_throughput_per_second` x 1e3
  (under load, at the benchmark's load);
- `co2e_grams_per_million_output_tokens` = `energy_per_token_joules` x 1e6 / 3.6e6 (kWh) x
  the grid's grams CO2e per kWh.

A figure whose inputs are missing (no price for that host, no currency to name it in, no
token or request rate, no energy counter) is not derived at all: never a zero, never NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.domain.model import BenchmarkResult, BenchmarkSpec, RunResult

SECONDS_PER_HOUR = 3600.0
JOULES_PER_KWH = 3.6e6
TOKENS_PER_FIGURE = 1e6  # costs and emissions per million output tokens
REQUESTS_PER_FIGURE = 1e3  # cost per thousand requests

COST_PER_TOKENS = "cost_per_million_output_tokens"
COST_PER_REQUESTS = "cost_per_thousand_requests"
CARBON_PER_TOKENS = "co2e_grams_per_million_output_tokens"
# Output tokens per second, first present wins: under load (continuous batching, serving),
# else generation's generate() calls. A result has one or the other.
TOKEN_RATES = ("output_throughput_tokens_per_second", "generated_tokens_per_second")
REQUEST_RATE = "request_throughput_per_second"
ENERGY = "energy_per_token_joules"

# An endpoint on this machine: the collector's host serves it.
_LOOPBACK = re.compile(r"^(localhost|127(\.[0-9]{1,3}){3}|\[::1\]|\[0*:(0*:)*0*1\])$", re.I)
_URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(\[[^\]]*\]|[^/:?#]*)", re.I)


@dataclass(frozen=True)
class Rates:
    """One host's rates; None where not given. `hourly_price`: what an hour of the host
    costs, in the pricing's currency; `grid_carbon_g_per_kwh`: grams CO2e per kWh of the
    electricity it draws."""

    hourly_price: float | None = None
    grid_carbon_g_per_kwh: float | None = None


@dataclass(frozen=True)
class Pricing:
    """The rates of a team's hosts (config `cost`): a default for any host not listed
    (`hourly_price`, `grid_carbon_g_per_kwh`), and per host (`hosts`, by the name results
    carry: the `--host` given, else the machine's name), each field of a listed host
    falling back to the default. `currency` labels the prices (never converted)."""

    currency: str | None = None
    hourly_price: float | None = None
    grid_carbon_g_per_kwh: float | None = None
    hosts: Mapping[str, Rates] = field(default_factory=dict)

    def rates(self, host: str) -> Rates:
        """The rates that apply to `host`."""
        listed = self.hosts.get(host)
        if listed is None:
            return Rates(self.hourly_price, self.grid_carbon_g_per_kwh)
        return Rates(
            listed.hourly_price if listed.hourly_price is not None else self.hourly_price,
            listed.grid_carbon_g_per_kwh if listed.grid_carbon_g_per_kwh is not None
            else self.grid_carbon_g_per_kwh)


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _rate(metrics: Mapping[str, float], names: tuple[str, ...]) -> float | None:
    """The first of `names` the metrics have, when it is a positive number."""
    for name in names:
        if name in metrics:
            value = metrics[name]
            return value if _usable(value) else None
    return None


def derive_costs(metrics: Mapping[str, float], pricing: Pricing | None,
                 host: str) -> dict[str, float]:
    """The cost and carbon metrics of a result with these `metrics`, made on `host` under
    `pricing`: only those whose every input is there (a price and its currency, or a grid
    intensity, for that host; a token or request rate, or the energy per token)."""
    if pricing is None:
        return {}
    rates = pricing.rates(host)
    derived: dict[str, float] = {}
    price = rates.hourly_price
    if _usable(price) and pricing.currency:
        assert price is not None
        per_second = price / SECONDS_PER_HOUR
        tokens = _rate(metrics, TOKEN_RATES)
        if tokens is not None:
            derived[COST_PER_TOKENS] = per_second / tokens * TOKENS_PER_FIGURE
        requests = _rate(metrics, (REQUEST_RATE,))
        if requests is not None:
            derived[COST_PER_REQUESTS] = per_second / requests * REQUESTS_PER_FIGURE
    carbon = rates.grid_carbon_g_per_kwh
    joules = _rate(metrics, (ENERGY,))
    if _usable(carbon) and joules is not None:
        assert carbon is not None
        derived[CARBON_PER_TOKENS] = joules * TOKENS_PER_FIGURE / JOULES_PER_KWH * carbon
    return derived


def priced_host(spec: BenchmarkSpec, host: str, pricing: Pricing) -> str | None:
    """The host whose rates a result of `spec`, run by the collector on `host`, is priced
    at: `host` itself, except for a serving benchmark against an external endpoint, whose
    server is the machine its URL names: priced only where that name is listed in
    `pricing.hosts` (the default rates are the collector's hosts', not an unknown
    server's), or `host` when the URL is a loopback address."""
    endpoint = spec.serving.endpoint if spec.serving is not None else None
    if endpoint is None:
        return host
    found = _URL_HOST.match(endpoint.url)
    name = found.group(1) if found else ""
    if _LOOPBACK.match(name):
        return host
    return name if name in pricing.hosts else None


def priced(result: BenchmarkResult, pricing: Pricing | None, host: str) -> BenchmarkResult:
    """`result` with its cost and carbon metrics (derive_costs) and, in its environment,
    the rates they were derived with (`cost_currency` and `hourly_price` for costs,
    `grid_carbon_g_per_kwh` for emissions); as it is when nothing can be derived."""
    if pricing is None or result.status != "ok":
        return result
    where = priced_host(result.spec, host, pricing)
    if where is None:
        return result
    derived = derive_costs(result.metrics, pricing, where)
    if not derived:
        return result
    rates = pricing.rates(where)
    recorded: dict[str, object] = {}
    if COST_PER_TOKENS in derived or COST_PER_REQUESTS in derived:
        recorded |= {"cost_currency": pricing.currency, "hourly_price": rates.hourly_price}
    if CARBON_PER_TOKENS in derived:
        recorded["grid_carbon_g_per_kwh"] = rates.grid_carbon_g_per_kwh
    return result.model_copy(update={
        "metrics": {**result.metrics, **derived},
        "environment": result.environment.model_copy(update=recorded)})


def with_costs(run: RunResult, pricing: Pricing | None) -> RunResult:
    """`run` with each result priced (`priced`) at the run's host."""
    if pricing is None:
        return run
    return run.model_copy(update={"results": tuple(priced(r, pricing, run.host)
                                                   for r in run.results)})
