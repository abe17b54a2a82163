"""The configuration's sections besides the benchmarks (storage, serve, detection,
environment, report, cost), and the loaded configuration itself (Config, Suite)."""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from collector.adapters.config.bounds import (
    DAY_S,
    INTERVAL,
    YEAR_S,
    Seconds,
    identifier_problem,
)
from collector.analysis.cost import Pricing, Rates
from collector.domain.catalogue import BUSY_CPU_FRACTION, METRICS
from collector.domain.model import (
    BenchmarkSpec,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)



class Schedule(Strict):
    """When `collector serve` runs a suite: a cron expression or a fixed interval. Both
    are checked with APScheduler's own parsers, as `collector serve` builds them
    (collector.usecases.service.trigger_for), so what this accepts serve can run."""

    cron: str | None = None
    interval_s: Annotated[StrictFloat, Field(ge=1, le=YEAR_S)] | None = None
    timezone: str = "UTC"
    jitter_s: Annotated[StrictFloat, Field(ge=0, le=YEAR_S)] = 0.0

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5:
            raise ValueError("cron must have 5 fields (minute hour day month weekday)")
        from apscheduler.triggers.cron import CronTrigger

        try:
            trigger = CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression: {exc}") from None
        if _next_fire(trigger) is None:  # e.g. `0 0 30 2 *`
            raise ValueError("the cron expression never fires")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("set exactly one of cron and interval_s")
        if self.cron is not None and self.jitter_s:
            raise ValueError("jitter_s applies to interval_s only; a cron schedule runs on "
                             "its times")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        if self.interval_s is not None:
            from apscheduler.triggers.interval import IntervalTrigger

            try:
                _next_fire(IntervalTrigger(seconds=self.interval_s, timezone=self.timezone,
                                           jitter=self.jitter_s or None))
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"invalid interval: {exc}") from None
        return self


def _next_fire(trigger: Any) -> Any:
    from datetime import datetime, timezone

    return trigger.get_next_fire_time(None, datetime.now(timezone.utc))


class ServeSettings(Strict):
    """`collector serve`: where /metrics listens and how the service behaves."""

    host: str = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 9464
    run_at_start: StrictBool = False
    grace_s: Seconds = 60.0
    # APScheduler takes whole seconds (0.5 would be truncated to 0, which it refuses).
    misfire_grace_s: Annotated[StrictInt, Field(ge=1, le=YEAR_S)] = 3600
    outbox_retry_s: Annotated[StrictFloat, Field(ge=1, le=DAY_S)] = 300.0


class TimescaleSettings(Strict):
    """Policies applied to the measurements hypertable (TimescaleDB only)."""

    compress_after: Annotated[str, Field(pattern=INTERVAL)] | None = "7 days"
    retain_for: Annotated[str, Field(pattern=INTERVAL)] | None = None


class StorageSettings(Strict):
    """Where results are kept. The database URL is a secret: it comes from an environment
    variable (named here) or a file, never from the config itself."""

    local_path: str | None = None
    database_url_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = (
        "COLLECTOR_DATABASE_URL")
    database_url_file: str | None = None
    schema_policy: Literal["migrate", "refuse"] = Field("migrate", alias="schema")
    timescaledb: TimescaleSettings = TimescaleSettings()
    # Bounds on every PostgreSQL call, so a server that stops answering cannot freeze us.
    connect_timeout_s: Annotated[StrictInt, Field(ge=1, le=300)] = 10
    statement_timeout_s: Annotated[StrictInt, Field(ge=1, le=86_400)] = 60
    # Delivered outbox documents (each with its raw samples) are pruned this many days
    # after delivery; null keeps them forever.
    outbox_retention_days: Annotated[StrictInt, Field(ge=0, le=36_500)] | None = 14
    database_url: Any = None
    password: Any = None

    @field_validator("database_url", "password")
    @classmethod
    def _no_secrets(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("secrets never go in the config; put the URL in the environment "
                             "variable named by database_url_env (default "
                             "COLLECTOR_DATABASE_URL) or in database_url_file")
        return value


class ConfirmationSettings(Strict):
    """Confirmation runs: when the after-run scan flags a suspected change, or the latest
    run is a worse outlier, `points` more points of that benchmark (each with the
    benchmark's own repetitions) run at once, so a real change pages in the same cycle
    and a noise burst is dismissed. At most `max_series` series per cycle. Six points:
    the detector pages on four runs after the one that flags a change, which its third
    run at the new level does."""

    enabled: StrictBool = True
    points: Annotated[StrictInt, Field(ge=1, le=20)] = 6
    max_series: Annotated[StrictInt, Field(ge=0, le=100)] = 2


_CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s]*@", re.I)


class AbSettings(Strict):
    """The automatic A/B of a confirmed regression whose attribution names package versions
    (`transformers_version 5.23.0 -> 5.24.0`, `packages.tokenizers ...`): the old and the
    new versions, each in a cached environment (collector.adapters.envs), measured side by side,
    interleaved, for `rounds` rounds; the regression record carries the result. Off by
    default; at most `max_per_cycle` per cycle, each stopped after `budget_s`. Models whose
    stored size (the result's model_size_bytes) is above `max_model_size_mib` are not A/B'd
    (null: no bound). `pip_args` go to every environment build (e.g. `--no-index
    --find-links /wheels`); an index that needs credentials is given to pip through the
    environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL), never here."""

    enabled: StrictBool = False
    rounds: Annotated[StrictInt, Field(ge=2, le=50)] = 3
    budget_s: Annotated[StrictFloat, Field(gt=0, le=DAY_S)] = 600.0
    max_per_cycle: Annotated[StrictInt, Field(ge=0, le=20)] = 1
    max_model_size_mib: Annotated[StrictFloat, Field(gt=0, le=1 << 30)] | None = 2048.0
    env_cache: Annotated[str, Field(min_length=1)] | None = None
    pip_args: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=64)

    @field_validator("pip_args")
    @classmethod
    def _no_credentials(cls, value: list[str]) -> list[str]:
        for arg in value:
            if _CREDENTIALS_IN_URL.search(arg):
                raise ValueError("an index URL with credentials is a secret: never in the "
                                 "config; set PIP_INDEX_URL (or PIP_EXTRA_INDEX_URL) in the "
                                 "collector's environment, which pip reads itself")
        return value


class DetectionSettings(Strict):
    """Regression detection after every run (collector.regress). `min_effect` maps metric
    names (or `default`) to the smallest relative change worth reporting."""

    enabled: StrictBool = True
    confirmation: ConfirmationSettings = ConfirmationSettings()
    ab: AbSettings = AbSettings()
    history_runs: Annotated[StrictInt, Field(ge=20, le=5000)] = 250
    contaminated_cpu_fraction: Annotated[StrictFloat, Field(gt=0, le=1)] = BUSY_CPU_FRACTION
    min_effect: dict[str, Annotated[StrictFloat, Field(ge=0, lt=10)]] = Field(default_factory=dict)

    @field_validator("min_effect")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(METRICS) - {"default"})
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; expected metric names "
                             "(docs/metrics.md) or `default`")
        return value


_PACKAGE_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$"  # PEP 508 names


class EnvironmentSettings(Strict):
    """What every result records of its environment beyond the fixed fields (versions of
    transformers, torch, CUDA, ...): the installed versions of `record_packages`, so a step
    in one of them shows in a regression's environment diff (`packages.NAME`)."""

    record_packages: Annotated[list[Annotated[str, Field(pattern=_PACKAGE_NAME)]],
                               Field(max_length=100)] = Field(default_factory=list)

    @field_validator("record_packages")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key in seen:
                raise ValueError(f"package {name!r} is listed twice")
            seen.add(key)
        return value


class ReportSettings(Strict):
    """`collector report`'s thresholds: a value past one is a finding on its own."""

    high_latency_ms: Annotated[StrictFloat, Field(gt=0, le=DAY_S * 1e3)] = 100.0
    high_memory_mib: Annotated[StrictFloat, Field(gt=0, le=1 << 30)] = 4096.0
    low_throughput: Annotated[StrictFloat, Field(gt=0, le=1e12)] = 10.0


def _grams_per_kwh(value: float) -> float:
    if value < 1:
        raise ValueError("expected grams CO2e per kWh, at least 1 (grids emit about 10 to "
                         "1,200): kilograms per kWh times 1000 (0.4 kg/kWh is 400)")
    return value


_CURRENCY = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,15}")
# A price per hour: more than a million an hour is a slip of the keyboard.
HourlyPrice = Annotated[StrictFloat, Field(gt=0, le=1e6)]
GridCarbon = Annotated[StrictFloat, Field(le=5000), AfterValidator(_grams_per_kwh)]


class HostCost(Strict):
    """One host's rates (config `cost.hosts.NAME`): each one set here replaces the
    section's default for that host."""

    hourly_price: HourlyPrice | None = None
    grid_carbon_g_per_kwh: GridCarbon | None = None

    @model_validator(mode="after")
    def _something(self) -> HostCost:
        if self.hourly_price is None and self.grid_carbon_g_per_kwh is None:
            raise ValueError("set hourly_price, grid_carbon_g_per_kwh or both for this host")
        return self


class CostSettings(Strict):
    """Cost and carbon, derived from every result's throughput and energy
    (collector/analysis/cost.py): the price of an hour of a host, in `currency` (a label,
    never converted), and the carbon intensity of the grid it draws from. The top-level
    values are the default for any host not listed under `hosts` (by the name results
    carry: `--host`, else the machine's name); a listed host's own values replace them
    field by field. Prices are not secrets."""

    hourly_price: HourlyPrice | None = None
    grid_carbon_g_per_kwh: GridCarbon | None = None
    hosts: Annotated[dict[str, HostCost], Field(max_length=10_000)] = Field(
        default_factory=dict)
    currency: str | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not _CURRENCY.fullmatch(value):
            raise ValueError("expected a currency code such as USD or EUR: a letter, then up "
                             "to 15 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, value: dict[str, HostCost]) -> dict[str, HostCost]:
        for name in value:
            problem = identifier_problem(name)
            if problem is not None:
                raise ValueError(f"host name {name!r}: {problem}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> CostSettings:
        if (self.hourly_price is None and self.grid_carbon_g_per_kwh is None
                and not self.hosts):
            raise ValueError("set hourly_price or grid_carbon_g_per_kwh (the default of "
                             "every host) or hosts (per host), or leave the section out")
        priced = self.hourly_price is not None or any(
            h.hourly_price is not None for h in self.hosts.values())
        if priced and self.currency is None:
            raise ValueError("a price needs its currency: set cost.currency (e.g. USD, EUR), "
                             "the label of every cost")
        return self

    def pricing(self) -> Pricing:
        """The rates as collector.analysis.cost takes them."""
        return Pricing(currency=self.currency, hourly_price=self.hourly_price,
                       grid_carbon_g_per_kwh=self.grid_carbon_g_per_kwh,
                       hosts={name: Rates(h.hourly_price, h.grid_carbon_g_per_kwh)
                              for name, h in self.hosts.items()})


@dataclass(frozen=True)
class Suite:
    name: str
    description: str | None
    benchmarks: tuple[BenchmarkSpec, ...]
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Config:
    path: str
    suites: tuple[Suite, ...]
    notes: tuple[str, ...] = ()
    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings)
    serve: ServeSettings = dataclasses.field(default_factory=ServeSettings)
    detection: DetectionSettings = dataclasses.field(default_factory=DetectionSettings)
    environment: EnvironmentSettings = dataclasses.field(default_factory=EnvironmentSettings)
    report: ReportSettings = dataclasses.field(default_factory=ReportSettings)
    cost: CostSettings | None = None  # None: no cost section, no cost metrics

    @property
    def pricing(self) -> Pricing | None:
        """The cost section's rates (collector.analysis.cost), None without one."""
        return self.cost.pricing() if self.cost is not None else None

    def suite(self, name: str) -> Suite | None:
        return next((s for s in self.suites if s.name == name), None)

    @property
    def benchmark_count(self) -> int:
        return sum(len(s.benchmarks) for s in self.suites)


