"""The catalogue of metrics: everything about a metric in one row.

A metric's name (unit in the name), unit, better direction and help; how the regression
detector judges it (its `Profile`); the Prometheus family it is exported in, with the label
value that tells it apart there; how the terminal table shows it; and the Grafana trend
panel it is drawn in, with its legend. The exporter, the detector, the scan, the table, the
dashboards generator and the stores all read this module, so adding a metric is one row
here plus the tracker in the worker that measures it; no other module spells a metric's
name (tests/unit/test_catalogue.py checks that).

The collector's own families (activity, detected changes, the service's state) are rows
here too (`STATE_FAMILIES`). The labels every series carries are the series vocabulary's
(collector/domain/series.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

# Other processes' share of the machine's CPU while a result was measured (the noise probe)
# from which it is disturbed: its times are another machine's. Marked on every surface, set
# aside by the detector (its configurable contaminated_cpu_fraction defaults to this). 0.5
# is another process on a whole core of two.
BUSY_CPU_FRACTION = 0.25


class Direction(str, Enum):
    LOWER_IS_BETTER = "lower_is_better"
    HIGHER_IS_BETTER = "higher_is_better"
    NEUTRAL = "neutral"


class Profile(str, Enum):
    """How the detector judges a metric (collector/detect/detector.py maps each profile to
    its settings) and whether a busy host can move it."""

    STEADY = "steady"  # the timed steady state: noisy, a busy host moves it
    COLD = "cold"  # one-off work (load, first call, compile, export): a larger minimum effect
    MEMORY = "memory"  # near-deterministic: thresholds decide
    INSTRUCTIONS = "instructions"  # counted under valgrind: repeatable to 0.01%
    # Output drift on fixed inputs: deterministic, so any step beyond `tolerance` is a
    # different computation ("outputs changed", collector/detect/outputs.py), never noise.
    OUTPUTS = "outputs"
    NONE = "none"  # stored and shown, never judged (spread, sizes)

    @property
    def drift_prone(self) -> bool:
        """Whether other work on the host moves it (so a disturbed run is set aside)."""
        return self in (Profile.STEADY, Profile.COLD)

    @property
    def exact(self) -> bool:
        """Deterministic on fixed inputs (memory, instruction counts, output drift): a
        comparison takes the values as they are, never through timing noise."""
        return self in (Profile.MEMORY, Profile.INSTRUCTIONS, Profile.OUTPUTS)


class Format(str, Enum):
    """How the terminal table writes a value."""

    MS = "ms"  # seconds shown as milliseconds, 2 decimals
    SECONDS = "s"  # seconds, 2 decimals
    RATE = "rate"  # thousands separators, 1 decimal
    MIB = "MiB"  # bytes shown as MiB, no decimals
    PERCENT = "%"  # a ratio shown as a percentage, 1 decimal
    MEGA = "M"  # an instruction count shown in millions, 3 decimals
    MAX_RATE = "req/s"  # a sweep's highest request rate, with its unit: it heads no column
    # Three significant digits, never an exponent (0.000123, 1.23, 12.3, 1,234): a cost or a
    # mass per million tokens spans orders of magnitude from a tiny CPU model to a large one.
    SIGNIFICANT = "sig"

    def render(self, value: float | None) -> str:
        return "-" if value is None else _RENDER[self](value)


def _significant(value: float) -> str:
    """`value` to three significant digits in fixed notation."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


_RENDER = {
    Format.MS: lambda v: f"{v * 1e3:.2f}",
    Format.SECONDS: lambda v: f"{v:.2f}",
    Format.RATE: lambda v: f"{v:,.1f}",
    Format.MIB: lambda v: f"{v / 2**20:,.0f}",
    Format.PERCENT: lambda v: f"{v * 100:.1f}",
    Format.MEGA: lambda v: f"{v / 1e6:,.3f} M instr",
    Format.MAX_RATE: lambda v: f"{v:,.1f} req/s max",
    Format.SIGNIFICANT: _significant,
}


@dataclass(frozen=True)
class Family:
    """A Prometheus family (`collector_benchmark_<name>`); metrics in one family differ by
    the value of its `label`."""

    name: str
    help: str
    label: str | None = None

    @property
    def full_name(self) -> str:
        return f"collector_benchmark_{self.name}"


@dataclass(frozen=True)
class Panel:
    """A Grafana trend panel: the metrics drawn in it share a unit."""

    title: str
    description: str
    unit: str  # Grafana's unit id


@dataclass(frozen=True)
class Column:
    """A column of the terminal table. Metrics with the same header share the column: a
    result shows the first of them it has (instruction counts stand in the p50 column in
    measurement mode instructions, where nothing is timed)."""

    header: str
    format: Format


@dataclass(frozen=True)
class MetricDef:
    name: str
    unit: str
    direction: Direction
    help: str
    profile: Profile
    family: Family | None = None  # not exported when None (in the store only)
    label_value: str | None = None  # its value of family.label
    column: Column | None = None  # not in the terminal table when None
    panel: Panel | None = None  # not in a trend panel when None
    legend: str | None = None  # its name in the panel, when the panel has several
    # Profile OUTPUTS: the smallest step (in the metric's unit) that is a change.
    tolerance: float = 0.0

    @property
    def title(self) -> str:
        """The metric in words, with the unit it is shown in: a chart's axis, a heading
        (`p50 latency (ms)`)."""
        if self.name in _TITLES:
            return _TITLES[self.name]
        words = self.name.removesuffix(f"_{self.unit}").replace("_", " ")
        shown = _SHOWN_UNITS.get(self.unit, self.unit.replace("_", " "))
        return f"{words} ({shown})" if shown else words

    @property
    def detectable(self) -> bool:
        """Whether the detector judges it: a better direction and a profile."""
        return self.direction is not Direction.NEUTRAL and self.profile is not Profile.NONE


# The unit of costs, before its denominator: the currency of the config's cost section, a
# label the collector never converts (environment.cost_currency says which).
CURRENCY = "currency"

_L = Direction.LOWER_IS_BETTER
_H = Direction.HIGHER_IS_BETTER
_N = Direction.NEUTRAL

# -- Prometheus families -------------------------------------------------------------------

LATENCY = Family("latency_seconds",
                 "Iteration latency (forward pass or generate call) by percentile.",
                 "percentile")
LATENCY_MEAN = Family("latency_mean_seconds", "Mean iteration latency.")
THROUGHPUT = Family("throughput_samples_per_second",
                    "Samples per second at the median latency.")
INPUT_TOKENS = Family("throughput_tokens_per_second",
                      "Input tokens per second at the median latency.")
TTFT = Family("time_to_first_token_seconds", "Time to the first new token, by percentile.",
              "percentile")
ITL = Family("inter_token_latency_seconds", "Time between new tokens, by percentile.",
             "percentile")
ITL_MEAN = Family("inter_token_latency_mean_seconds", "Mean time between new tokens.")
DECODE = Family("decode_tokens_per_second", "Decode rate, new tokens per second.")
PREFILL = Family("prefill_tokens_per_second", "Prompt tokens per second to the first token.")
LOAD = Family("load_time_seconds", "Model load time from disk to ready on the device.")
COMPILE = Family("compile_time_seconds", "torch.compile time on the first call.")
EXPORT = Family("export_time_seconds", "Export (or conversion) and compilation of the model "
                "for an exported-graph backend (ONNX Runtime, OpenVINO).")
MEMORY = Family("peak_memory_bytes", "Peak memory by kind.", "kind")
SIZE = Family("model_size_bytes", "Bytes of parameters and buffers.")
ENERGY = Family("energy_joules", "Energy over the timed iterations (NVML on CUDA, RAPL on "
                "CPU where exposed), per iteration or per generated token.", "per")
TOKENS_PER_JOULE = Family("tokens_per_joule", "Generated tokens per joule of the timed "
                          "iterations.")
GENERATED = Family("generated_tokens_per_second", "Generation: new tokens over the batch per "
                   "second of generate() calls, prefill included.")
# Derived from the config's cost section (collector/analysis/cost.py): the currency is the
# one that section names (a label; recorded with each result as environment.cost_currency).
COST_TOKENS = Family("cost_per_million_output_tokens", "What a million output tokens cost at "
                     "the host's hourly price (config cost, in its currency): generation "
                     "counts every sequence of the batch; under load, completed requests.")
COST_REQUESTS = Family("cost_per_thousand_requests", "Under load: what a thousand completed "
                       "requests cost at the host's hourly price (config cost, in its "
                       "currency), at the benchmark's load.")
CARBON = Family("co2e_grams_per_million_output_tokens", "Grams CO2e per million generated "
                "tokens: the measured energy per token at the grid's carbon intensity "
                "(config cost).")
NUMERICS = Family("output_drift", "How far the outputs are from the reference (the same "
                  "workload's eager float32 result in the same run, else the series' previous "
                  "run), by measure (max_abs, max_rel, top1_agreement, token_agreement).",
                  "measure")
TPOT = Family("time_per_output_token_seconds", "Under load: a request's time per output token "
              "after the first ((end - first token) / (output tokens - 1)), by percentile.",
              "percentile")
REQUEST_LATENCY = Family("request_latency_seconds", "Under load: a request's end-to-end "
                         "latency, from sending it to its last token, by percentile.",
                         "percentile")
REQUEST_RATE = Family("request_throughput_requests_per_second", "Under load: completed "
                      "requests per second.")
OUTPUT_RATE = Family("output_throughput_tokens_per_second", "Under load: output tokens of "
                     "completed requests per second.")
GOODPUT = Family("goodput_requests_per_second", "Under load: requests per second that "
                 "succeeded and met every service-level objective.")
SLO_RATE = Family("slo_max_rate_requests_per_second", "A load sweep: the highest request "
                  "rate whose requests still met the service-level objectives.")
MAX_RATE = Family("max_throughput_requests_per_second", "A load sweep: the highest request "
                  "throughput the server sustained.")
REQUEST_ERRORS = Family("request_error_ratio", "Under load: the share of requests that "
                        "failed, by outcome (error, timeout).", "outcome")
INSTRUCTIONS = Family("instructions", "CPU instructions counted under valgrind in the timed "
                      "region (measurement mode instructions), per iteration or per "
                      "generated token.", "per")

# -- The collector's own families -------------------------------------------------------
# What /metrics says besides benchmark values: the series' and suites' activity, detected
# changes, the detector's state, the service's own state. The exporter builds them from
# these rows, the dashboards generator names them from here, and a test holds the alert
# rules to them (every `collector_*` name the rules use is a row here or a benchmark family).


@dataclass(frozen=True)
class StateFamily:
    """A Prometheus family that is not a benchmark metric."""

    name: str  # the family name (a counter's samples end in _total)
    kind: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...] = ()  # after the series labels, when `series`
    series: bool = False  # labelled by the series (collector.domain.series.SERIES_LABELS)

    @property
    def sample(self) -> str:
        """The name its samples carry (what PromQL selects)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


_REGRESSION_LABELS = ("metric", "kind", "status", "regression_id")

LAST_RUN = StateFamily("collector_benchmark_last_run_timestamp_seconds", "gauge",
                       "When the series last ran (Unix time).", series=True)
LAST_SUCCESS = StateFamily("collector_benchmark_last_success_timestamp_seconds", "gauge",
                           "When the series last succeeded (Unix time).", series=True)
RESULTS = StateFamily("collector_benchmark_results", "counter",
                      "Benchmark results by status.", ("status",), series=True)
FAILURES = StateFamily("collector_benchmark_failures", "counter",
                       "Benchmark failures by kind.", ("kind",), series=True)
RUNS = StateFamily("collector_runs", "counter", "Suite runs by status.",
                   ("suite", "host", "status"))
RUN_DURATION = StateFamily("collector_run_duration_seconds", "gauge",
                           "Duration of the latest run of a suite.", ("suite", "host"))
REGRESSION_CHANGE = StateFamily(
    "collector_regression_relative_change", "gauge",
    "Active detected changes of level (after / before - 1), by series and metric. kind: "
    "regression, improvement, host_drift (nothing of ours changed), or outputs_changed "
    "(output drift stepped; the value is the step over the previous value, or over the "
    "tolerance where that was 0); status: suspected (does not page), open, acknowledged; "
    "attribution: what changed between the last good and the first bad run.",
    (*_REGRESSION_LABELS, "attribution"), series=True)
REGRESSION_AB = StateFamily(
    "collector_regression_ab_ratio", "gauge",
    "The automatic A/B of an active change whose attribution names package versions: the "
    "metric's new-versions / old-versions ratio, measured side by side (bound: estimate, "
    "low and high of its 95% interval); verdict: worse, better or same, as `collector "
    "compare` says. Labels as collector_regression_relative_change without the attribution.",
    (*_REGRESSION_LABELS, "verdict", "bound"), series=True)
DETECTION_NOISE = StateFamily(
    "collector_detection_noise_ratio", "gauge",
    "Relative noise between runs that the regression detector learnt for a series' metric "
    "(log-scale standard deviation).", ("metric",), series=True)
DETECTION_MDE = StateFamily(
    "collector_detection_min_detectable_effect_ratio", "gauge",
    "Smallest relative change the detector pages on at its false-alarm rate. within: "
    "confirmation (with this cycle's confirmation runs) or schedule (from scheduled runs "
    "alone).", ("metric", "within"), series=True)
REGRESSIONS_READABLE = StateFamily(
    "collector_regressions_readable", "gauge",
    "1 when the store that keeps regressions answered this scrape, else 0.")
BUILD_INFO = StateFamily(
    "collector_build_info", "gauge",
    "Versions of the collector and the libraries its workers use.",
    ("torch", "transformers", "version"))
OUTBOX_PENDING = StateFamily(
    "collector_outbox_pending_runs", "gauge",
    "Runs kept locally that wait to be forwarded to PostgreSQL.")
OUTBOX_QUARANTINED = StateFamily(
    "collector_outbox_quarantined_runs", "gauge",
    "Runs kept locally that PostgreSQL refuses (see `collector db status`); they wait for a "
    "fix and `collector db retry-quarantined`.")
QUALITY = StateFamily(
    "collector_benchmark_quality", "gauge",
    "The quality of a series' latest scheduled result, as a state set (1 for its quality, 0 "
    f"for the others): clean; disturbed (other processes used {BUSY_CPU_FRACTION:.0%} of the "
    "machine's CPU or more while it was measured: its times are another machine's); "
    "unconverged (its median did not settle within its target).", ("quality",), series=True)
OTHER_CPU = StateFamily(
    "collector_benchmark_other_cpu_ratio", "gauge",
    "Other processes' share of the machine's CPU while a series' latest scheduled result was "
    f"measured (the noise probe; {BUSY_CPU_FRACTION} and above is disturbed).", series=True)
REL_CI = StateFamily(
    "collector_benchmark_rel_ci_ratio", "gauge",
    "Relative half-width of the 95% interval of a series' latest scheduled median within its "
    "run (its uncertainty; compare it with the run-to-run noise the detector learnt).",
    series=True)
NEXT_RUN = StateFamily("collector_scheduler_next_run_timestamp_seconds", "gauge",
                       "When each suite runs next (Unix time).", ("suite",))
SCHEDULE_INTERVAL = StateFamily(
    "collector_suite_schedule_interval_seconds", "gauge",
    "Expected seconds between two runs of a suite (from its schedule): alert rules judge "
    "staleness by it.", ("suite",))

STATE_FAMILIES = (LAST_RUN, LAST_SUCCESS, RESULTS, FAILURES, QUALITY, OTHER_CPU, REL_CI,
                  RUNS, RUN_DURATION,
                  REGRESSION_CHANGE, REGRESSION_AB, DETECTION_NOISE, DETECTION_MDE,
                  REGRESSIONS_READABLE, BUILD_INFO, OUTBOX_PENDING, OUTBOX_QUARANTINED,
                  NEXT_RUN, SCHEDULE_INTERVAL)

# -- Grafana trend panels ------------------------------------------------------------------

P_LATENCY = Panel("Latency", "Iteration latency (a forward pass, or a whole generate() call) "
                  "by percentile.", "s")
P_THROUGHPUT = Panel("Throughput", "Samples per second at the median latency (batch size / "
                     "p50).", "suffix: samples/s")
P_TOKENS = Panel("Tokens per second (input, prefill)", "Forward tasks: input tokens per "
                 "second at the median latency. Generation: prompt tokens per second to the "
                 "first token.", "suffix: tokens/s")
P_DECODE = Panel("Decode tokens per second", "Generation: new tokens after the first, over "
                 "the batch, per second of decoding (median over calls).", "suffix: tokens/s")
P_TTFT = Panel("Time to first token", "Generation: from the generate() call to the first new "
               "token.", "s")
P_ITL = Panel("Inter-token latency", "Generation: time between consecutive new tokens.", "s")
P_COLD = Panel("Load, first call, compile and export time", "from_pretrained from local "
               "disk until ready on the device; the first (cold) call; torch.compile time "
               "where compiled; export and session creation for ONNX Runtime and OpenVINO.",
               "s")
P_RSS = Panel("Peak RSS", "Peak resident memory of the worker while measuring and up to the "
              "end of loading (kernel high-water mark).", "bytes")
P_CUDA = Panel("CUDA memory", "torch.cuda.max_memory_allocated and max_memory_reserved (CUDA "
               "only).", "bytes")
P_ENERGY = Panel("Energy", "Joules per iteration (and per generated token) over the timed "
                 "iterations: NVML's energy counter on CUDA, RAPL (powercap) on CPUs that "
                 "expose it. No line means no counter on that host, never zero energy.",
                 "joule")
P_NUMERICS = Panel("Output drift", "Against the same workload's eager float32 result in the "
                   "same run (else the series' previous run): the largest relative difference "
                   "of the outputs' fingerprint and the share of top-1 ids (generation: new "
                   "token ids) that agree (1 = all). Faster but different shows here; a step "
                   "is an \"outputs changed\" record on the Regressions panels.",
                   "percentunit")
P_INSTRUCTIONS = Panel("Instructions", "CPU instructions per iteration (and per generated "
                       "token), counted under valgrind in the timed region only (measurement "
                       "mode instructions): near-deterministic, so a step here is more work "
                       "per call (extra ops, dispatch overhead, another kernel path), never "
                       "cache, bandwidth or threading effects.", "short")
P_TPOT = Panel("Time per output token", "Under load (continuous batching, serving): a "
               "request's time per output token after the first, by percentile over requests.",
               "s")
P_E2E = Panel("Request latency", "Under load (continuous batching, serving): from a "
              "request's submission to its last token, by percentile over requests.", "s")
P_LOAD_RATE = Panel("Requests per second under load", "Completed requests per second, and "
                    "the part of them that met every SLO (goodput); a sweep's highest rate "
                    "within the SLOs and its maximum throughput.", "reqps")
P_OUTPUT_RATE = Panel("Output tokens per second under load", "Output tokens of completed "
                      "requests per second of the run (continuous batching, serving).",
                      "suffix: tokens/s")
P_ERRORS = Panel("Request errors", "Under load: the share of requests that failed (error) "
                 "or ran out of time (timeout); never folded into the latency figures.",
                 "percentunit")

# Cost and carbon, derived (collector/analysis/cost.py): a line only where the host has a
# price (or a grid intensity) in its config's cost section and the result a rate (or
# measured energy) to divide it by.
_NO_LINE = ("No line: no {} configured for that host when it ran, or {}; never a zero.")
P_COST_TOKENS = Panel("Cost per 1M output tokens", "The host's hourly price over its output "
                      "tokens per second: generate() calls as a whole (every sequence of the "
                      "batch, prefill included), or completed requests under load. In the "
                      "currency of the hosts' cost section (recorded with each result as "
                      "environment.cost_currency): one database, one currency. "
                      + _NO_LINE.format("price", "no token rate"), "short")
P_COST_REQUESTS = Panel("Cost per 1k requests", "Under load: the host's hourly price over its "
                        "completed requests per second, at the benchmark's load (an open-loop "
                        "rate below capacity pays for idle time). In the currency of the "
                        "hosts' cost section. " + _NO_LINE.format("price", "no request rate"),
                        "short")
P_CARBON = Panel("CO2e per 1M output tokens", "Grams CO2e per million generated tokens: the "
                 "measured energy per token (kWh) at the grid's carbon intensity (g/kWh, "
                 "config cost). " + _NO_LINE.format("grid carbon intensity",
                                                    "no energy counter"), "massg")

# The order of the trend panels on the dashboard.
PANELS = (P_LATENCY, P_THROUGHPUT, P_TOKENS, P_DECODE, P_TTFT, P_ITL, P_TPOT, P_E2E,
          P_LOAD_RATE, P_OUTPUT_RATE, P_ERRORS, P_COLD, P_RSS, P_CUDA,
          P_INSTRUCTIONS, P_ENERGY, P_COST_TOKENS, P_COST_REQUESTS, P_CARBON, P_NUMERICS)
# The Serving dashboard's trend panels (grafana/build_dashboards.py).
SERVING_PANELS = (P_LOAD_RATE, P_TTFT, P_TPOT, P_ITL, P_E2E, P_OUTPUT_RATE, P_ERRORS,
                  P_COST_TOKENS, P_COST_REQUESTS)

_S, _C, _M, _I, _X = (Profile.STEADY, Profile.COLD, Profile.MEMORY, Profile.INSTRUCTIONS,
                      Profile.NONE)
_O = Profile.OUTPUTS

# In the order of the terminal table's columns and of /metrics.
_DEFS = [
    MetricDef("latency_p50_seconds", "seconds", _L, "median iteration latency", _S,
              LATENCY, "50", Column("p50 ms", Format.MS), P_LATENCY, "p50"),
    MetricDef("latency_p90_seconds", "seconds", _L, "90th percentile iteration latency", _S,
              LATENCY, "90", Column("p90 ms", Format.MS), P_LATENCY, "p90"),
    MetricDef("latency_p99_seconds", "seconds", _L, "99th percentile iteration latency", _S,
              LATENCY, "99", Column("p99 ms", Format.MS), P_LATENCY, "p99"),
    MetricDef("latency_mean_seconds", "seconds", _L, "mean iteration latency", _S,
              LATENCY_MEAN),
    MetricDef("latency_min_seconds", "seconds", _L, "fastest iteration", _S),
    MetricDef("latency_stdev_seconds", "seconds", _N, "sample standard deviation of latency",
              _X),
    MetricDef("latency_cv_ratio", "ratio", _N, "coefficient of variation of latency", _X,
              column=Column("CV %", Format.PERCENT)),
    MetricDef("throughput_samples_per_second", "samples/s", _H,
              "batch size / median latency", _S, THROUGHPUT,
              column=Column("samples/s", Format.RATE), panel=P_THROUGHPUT),
    MetricDef("throughput_input_tokens_per_second", "tokens/s", _H,
              "batch size x input length / median latency", _S, INPUT_TOKENS,
              panel=P_TOKENS, legend="input"),
    MetricDef("time_to_first_token_p50_seconds", "seconds", _L,
              "median time from generate() call to the first new token", _S, TTFT, "50",
              Column("TTFT ms", Format.MS), P_TTFT, "p50"),
    MetricDef("time_to_first_token_p90_seconds", "seconds", _L,
              "90th percentile time to the first new token (under load: over requests)", _S,
              TTFT, "90", panel=P_TTFT, legend="p90"),
    MetricDef("time_to_first_token_p99_seconds", "seconds", _L,
              "99th percentile time to the first new token (under load: over requests)", _S,
              TTFT, "99", panel=P_TTFT, legend="p99"),
    MetricDef("time_to_first_token_mean_seconds", "seconds", _L,
              "mean time to the first new token", _S, panel=P_TTFT, legend="mean"),
    MetricDef("inter_token_latency_mean_seconds", "seconds", _L,
              "mean time between consecutive new tokens", _S, ITL_MEAN, panel=P_ITL,
              legend="mean"),
    MetricDef("inter_token_latency_p50_seconds", "seconds", _L,
              "median time between consecutive new tokens", _S, ITL, "50",
              panel=P_ITL, legend="p50"),
    MetricDef("inter_token_latency_p90_seconds", "seconds", _L,
              "90th percentile time between consecutive new tokens", _S, ITL, "90",
              panel=P_ITL, legend="p90"),
    MetricDef("inter_token_latency_p99_seconds", "seconds", _L,
              "99th percentile time between consecutive new tokens", _S, ITL, "99",
              panel=P_ITL, legend="p99"),
    # Under load (continuous batching in the worker, serving): over the requests of a run,
    # failed ones left out (they are counted in request_error_ratio).
    MetricDef("time_per_output_token_p50_seconds", "seconds", _L,
              "median over requests of (last token - first token) / (output tokens - 1)", _S,
              TPOT, "50", Column("TPOT ms", Format.MS), P_TPOT, "p50"),
    MetricDef("time_per_output_token_p90_seconds", "seconds", _L,
              "90th percentile over requests of the time per output token", _S, TPOT, "90",
              panel=P_TPOT, legend="p90"),
    MetricDef("time_per_output_token_p99_seconds", "seconds", _L,
              "99th percentile over requests of the time per output token", _S, TPOT, "99",
              panel=P_TPOT, legend="p99"),
    MetricDef("request_latency_p50_seconds", "seconds", _L,
              "median end-to-end request latency, submission to last token", _S,
              REQUEST_LATENCY, "50", Column("p50 ms", Format.MS), P_E2E, "p50"),
    MetricDef("request_latency_p90_seconds", "seconds", _L,
              "90th percentile end-to-end request latency", _S, REQUEST_LATENCY, "90",
              Column("p90 ms", Format.MS), P_E2E, "p90"),
    MetricDef("request_latency_p99_seconds", "seconds", _L,
              "99th percentile end-to-end request latency", _S, REQUEST_LATENCY, "99",
              Column("p99 ms", Format.MS), P_E2E, "p99"),
    MetricDef("request_throughput_per_second", "requests/s", _H,
              "completed requests / the run's duration", _S, REQUEST_RATE,
              panel=P_LOAD_RATE, legend="completed"),
    MetricDef("output_throughput_tokens_per_second", "tokens/s", _H,
              "output tokens of completed requests / the run's duration", _S, OUTPUT_RATE,
              panel=P_OUTPUT_RATE),
    MetricDef("goodput_requests_per_second", "requests/s", _H,
              "requests that succeeded and met every SLO / the run's duration", _S, GOODPUT,
              None, Column("goodput req/s", Format.RATE), P_LOAD_RATE, "goodput"),
    MetricDef("goodput_ratio", "ratio", _H,
              "share of the run's requests that succeeded and met every SLO", _X),
    MetricDef("slo_max_rate_per_second", "requests/s", _H,
              "a sweep: the highest offered rate at which at least `attainment` of the "
              "requests met every SLO (0 when none did)", _S, SLO_RATE, panel=P_LOAD_RATE,
              legend="highest rate within SLOs"),
    MetricDef("max_request_throughput_per_second", "requests/s", _H,
              "a sweep: completed requests per second with the server saturated", _S,
              MAX_RATE, None, Column("p50 ms", Format.MAX_RATE), P_LOAD_RATE,
              "max throughput"),
    MetricDef("request_error_ratio", "ratio", _L,
              "share of the run's requests that failed (HTTP error, broken or garbled "
              "stream, server gone)", _X, REQUEST_ERRORS, "error", panel=P_ERRORS,
              legend="errors"),
    MetricDef("request_timeout_ratio", "ratio", _L,
              "share of the run's requests that ran out of request_timeout_s", _X,
              REQUEST_ERRORS, "timeout", panel=P_ERRORS, legend="timeouts"),
    MetricDef("achieved_rate_ratio", "ratio", _N,
              "open-loop profiles: the rate requests were sent at / the rate of their "
              "schedule (1: the load generator kept its schedule)", _X),
    MetricDef("client_overhead_seconds", "seconds", _N,
              "the load generator's own time per request (building, sending, parsing), "
              "mean", _X),
    MetricDef("kv_cache_blocks", "blocks", _N,
              "continuous batching: KV cache blocks (pages) the cache manager allocated", _X),
    MetricDef("kv_cache_peak_usage_ratio", "ratio", _N,
              "continuous batching: the largest share of the KV cache blocks in use at once",
              _X),
    MetricDef("decode_tokens_per_second", "tokens/s", _H,
              "new tokens after the first, over the batch, per second of decoding (median)",
              _S, DECODE, column=Column("decode tok/s", Format.RATE), panel=P_DECODE),
    # Restates the median generate() latency (judged) as a rate: not judged again.
    MetricDef("generated_tokens_per_second", "tokens/s", _H,
              "generation: new tokens over the batch / median generate() latency (prefill "
              "included)", _X, GENERATED),
    MetricDef("prefill_tokens_per_second", "tokens/s", _H,
              "prompt tokens over the batch / median time to first token", _S, PREFILL,
              panel=P_TOKENS, legend="prefill"),
    MetricDef("load_time_seconds", "seconds", _L,
              "from_pretrained from disk until the model is ready on the device", _C,
              LOAD, column=Column("load s", Format.SECONDS), panel=P_COLD, legend="load"),
    MetricDef("first_call_seconds", "seconds", _L,
              "first forward/generate call (cold caches; includes compilation when compiled)",
              _C, panel=P_COLD, legend="first call"),
    MetricDef("compile_time_seconds", "seconds", _L,
              "torch.compile: first call minus the steady-state median", _C, COMPILE,
              panel=P_COLD, legend="compile"),
    MetricDef("export_time_seconds", "seconds", _L,
              "ONNX Runtime, OpenVINO: export or conversion of the loaded model plus session "
              "creation or compilation, before the first call", _C, EXPORT, panel=P_COLD,
              legend="export"),
    MetricDef("peak_rss_bytes", "bytes", _L,
              "peak resident set size of the worker while measuring (kernel high-water mark)",
              _M, MEMORY, "rss", Column("peak RSS MiB", Format.MIB), P_RSS, "measuring"),
    MetricDef("load_peak_rss_bytes", "bytes", _L,
              "peak resident set size of the worker up to the end of model loading", _M,
              MEMORY, "load_rss", panel=P_RSS, legend="loading"),
    MetricDef("model_size_bytes", "bytes", _N, "bytes of parameters and buffers", _X, SIZE),
    MetricDef("cuda_max_allocated_bytes", "bytes", _L, "torch.cuda.max_memory_allocated", _M,
              MEMORY, "cuda_allocated", panel=P_CUDA, legend="allocated"),
    MetricDef("cuda_max_reserved_bytes", "bytes", _L, "torch.cuda.max_memory_reserved", _M,
              MEMORY, "cuda_reserved", panel=P_CUDA, legend="reserved"),
    MetricDef("instructions_per_iteration", "instructions", _L,
              "CPU instructions per iteration (forward or generate call), counted under "
              "valgrind in the timed region only (measurement mode instructions)", _I,
              INSTRUCTIONS, "iteration", Column("p50 ms", Format.MEGA), P_INSTRUCTIONS,
              "per iteration"),
    MetricDef("instructions_per_token", "instructions", _L,
              "CPU instructions per generated token over the batch (generation tasks, "
              "measurement mode instructions)", _I, INSTRUCTIONS, "token",
              panel=P_INSTRUCTIONS, legend="per token"),
    MetricDef("energy_per_iteration_joules", "joules", _L,
              "energy over the timed iterations / their number "
              "(collector/adapters/measure/energy.py)", _S, ENERGY, "iteration",
              panel=P_ENERGY, legend="per iteration"),
    MetricDef("energy_per_token_joules", "joules", _L,
              "energy over the timed iterations / the tokens they generated over the batch",
              _S, ENERGY, "token", panel=P_ENERGY, legend="per token"),
    MetricDef("tokens_per_joule", "tokens/J", _H,
              "generated tokens over the batch per joule of the timed iterations", _S,
              TOKENS_PER_JOULE),
    # Cost and carbon (collector/analysis/cost.py): derived in the parent from the rates of
    # the config's cost section in force when the result was made, never measured. Not
    # judged (profile none): they restate throughput and energy, which the detector judges
    # already (a change would be flagged twice), and a step in them may be a new price, a
    # change of the config rather than of what was measured.
    MetricDef("cost_per_million_output_tokens", f"{CURRENCY}/1M tokens", _L,
              "hourly price / 3600 / output tokens per second x 1e6: generated_tokens_per_"
              "second (generation), output_throughput_tokens_per_second (under load); in the "
              "currency of the config's cost section", _X, COST_TOKENS,
              column=Column("cost/1M tok", Format.SIGNIFICANT), panel=P_COST_TOKENS),
    MetricDef("cost_per_thousand_requests", f"{CURRENCY}/1k requests", _L,
              "under load: hourly price / 3600 / request_throughput_per_second x 1000, at "
              "the benchmark's load", _X, COST_REQUESTS,
              column=Column("cost/1k req", Format.SIGNIFICANT), panel=P_COST_REQUESTS),
    MetricDef("co2e_grams_per_million_output_tokens", "gCO2e/1M tokens", _L,
              "energy_per_token_joules x 1e6 / 3.6e6 (kWh) x the grid's grams CO2e per kWh",
              _X, CARBON, column=Column("gCO2e/1M tok", Format.SIGNIFICANT), panel=P_CARBON),
    # Numerics (collector/analysis/numerics.py): judged as "outputs changed" (collector/detect/
    # outputs.py), not by the step detector: drift on fixed inputs is deterministic and is
    # often exactly 0, which has no log. The absolute difference depends on the model's
    # scale; its relative form is the one judged.
    MetricDef("output_max_abs_diff", "absolute", _L,
              "largest absolute difference of the outputs' fingerprint from the reference "
              "(the workload's eager float32 result in the same run, else the series' "
              "previous run)", _X, NUMERICS, "max_abs"),
    MetricDef("output_max_rel_diff_ratio", "ratio", _L,
              "output_max_abs_diff over the reference's largest absolute value", _O, NUMERICS,
              "max_rel", panel=P_NUMERICS, legend="max relative difference", tolerance=1e-4),
    MetricDef("output_top1_agreement_ratio", "ratio", _H,
              "share of the fingerprint's top-1 ids (argmax over the last dimension) equal "
              "to the reference's", _O, NUMERICS, "top1_agreement", panel=P_NUMERICS,
              legend="top-1 agreement", tolerance=1e-6),
    MetricDef("output_token_agreement_ratio", "ratio", _H,
              "generation: share of the new token ids of one greedy generate() call equal to "
              "the reference's, position by position", _O, NUMERICS, "token_agreement",
              panel=P_NUMERICS, legend="token agreement", tolerance=1e-6),
]

METRICS: dict[str, MetricDef] = {d.name: d for d in _DEFS}

# The metrics charts and headings name, in words and with the unit they are shown in.
_TITLES = {
    "latency_p50_seconds": "p50 latency (ms)",
    "latency_p90_seconds": "p90 latency (ms)",
    "latency_p99_seconds": "p99 latency (ms)",
    "throughput_samples_per_second": "throughput (samples/s)",
    "throughput_input_tokens_per_second": "input rate (tokens/s)",
    "prefill_tokens_per_second": "prefill rate (tokens/s)",
    "time_to_first_token_p50_seconds": "p50 time to first token (ms)",
    "decode_tokens_per_second": "decode rate (tokens/s)",
    "peak_rss_bytes": "peak memory, RSS (MiB)",
    "model_size_bytes": "model weights (MiB)",
    "load_time_seconds": "load time (ms)",
    "request_latency_p50_seconds": "p50 request latency (ms)",
    "goodput_requests_per_second": "goodput (requests/s)",
    "request_throughput_per_second": "request throughput (requests/s)",
    "output_throughput_tokens_per_second": "output rate (tokens/s)",
    "instructions_per_iteration": "instructions per iteration (millions)",
    "generated_tokens_per_second": "generation rate (tokens/s)",
    # Costs are in the currency of the config's cost section: said beside each value.
    "cost_per_million_output_tokens": "cost per 1M output tokens",
    "cost_per_thousand_requests": "cost per 1k requests",
    "co2e_grams_per_million_output_tokens": "CO2e per 1M output tokens (g)",
}

# The unit a value is shown in (collector.analysis.compare.value_text, the charts' scale).
_SHOWN_UNITS = {"seconds": "ms", "bytes": "MiB", "instructions": "millions", "ratio": "",
                "absolute": "", "blocks": ""}

# The metric a result is read by, first present wins: instruction counts in that mode, else
# the median latency. The table's first value column and its MDE column show it.
# A continuous-batching result has both latencies: its timed iteration (a whole batch) is
# what its interval and convergence are about, so it is read by that; a serving result has
# only the requests' (its interval is their median's).
# A sweep has no latency of its own (its points' are its curve): it is read by the highest
# request rate the server sustained.
HEADLINES = ("instructions_per_iteration", "latency_p50_seconds", "request_latency_p50_seconds",
             "max_request_throughput_per_second")
_FALLBACK_HEADLINE = "latency_p50_seconds"
# What `collector compare` and run-once's comparison show unless told otherwise (those a
# result has): what a person choosing a model or a runtime reads first.
COMPARE_SELECTION = ("instructions_per_iteration", "latency_p50_seconds",
                     "request_latency_p50_seconds", "time_to_first_token_p99_seconds",
                     "time_per_output_token_p50_seconds", "goodput_requests_per_second",
                     "output_throughput_tokens_per_second", "slo_max_rate_per_second",
                     "throughput_samples_per_second", "time_to_first_token_p50_seconds",
                     "decode_tokens_per_second", "peak_rss_bytes", "cuda_max_allocated_bytes",
                     "output_max_rel_diff_ratio", "output_top1_agreement_ratio",
                     "output_token_agreement_ratio")
# run-once's compact table: after each result's headline metric, these (those it has).
# Cost and carbon, derived from the config's cost section (collector/analysis/cost.py): the
# report's cost section shows these (those a result has), each cost in its result's
# currency (units starting with CURRENCY).
COST_METRICS = ("cost_per_million_output_tokens", "cost_per_thousand_requests",
                "co2e_grams_per_million_output_tokens")
TABLE_COMPACT = ("throughput_samples_per_second", "peak_rss_bytes")
# The report's results table: after each result's headline metric, these (those it has).
REPORT_COLUMNS = ("throughput_samples_per_second", "decode_tokens_per_second", "peak_rss_bytes")
# The HTML report's charts (collector/present/html_report.py): latency against batch size,
# throughput against sequence length (tokens/s: samples/s falls as sequences grow),
# memory against model size; its trend charts follow each result's headline and this.
CHART_LATENCY = "latency_p50_seconds"
CHART_THROUGHPUT = "throughput_input_tokens_per_second"
CHART_MEMORY = "peak_rss_bytes"
CHART_MODEL_SIZE = "model_size_bytes"
# Under load: latency against completed requests per second, for a sweep's points (its
# samples, by collector.domain.serving.SWEEP_SAMPLES' point names) and for workloads
# that differ only by their load (one result each).
CHART_LOAD_THROUGHPUT = "request_throughput_per_second"
CHART_LOAD_LATENCIES = (("p99 TTFT", "time_to_first_token_p99_seconds"),
                        ("p99 request latency", "request_latency_p99_seconds"))
# Metrics that are a percentile of a result's raw samples: (sample name, percentile). With
# one run a side, `compare` bootstraps these from the samples (a p99 of 24 requests is
# nearly their maximum: its interval is wide, and a verdict must say so).
SAMPLE_PERCENTILES: dict[str, tuple[str, float]] = {
    f"{metric}_p{q}_seconds": (sample, float(q))
    for metric, sample in (("latency", "latency_seconds"),
                           ("time_to_first_token", "time_to_first_token_seconds"),
                           ("inter_token_latency", "inter_token_latency_seconds"),
                           ("time_per_output_token", "time_per_output_token_seconds"),
                           ("request_latency", "request_latency_seconds"))
    for q in (50, 90, 99) if f"{metric}_p{q}_seconds" in METRICS}
# Those that are the median (by sample name).
SAMPLE_MEDIANS = {name: sample for name, (sample, q) in SAMPLE_PERCENTILES.items() if q == 50}
# What the Grafana metric pickers start with.
DEFAULT_SELECTION = ("latency_p50_seconds", "throughput_samples_per_second",
                     "decode_tokens_per_second", "peak_rss_bytes")


def metric(name: str) -> MetricDef:
    """Look up a metric; unknown names are a programming error."""
    return METRICS[name]


def headline(metrics: Mapping[str, float]) -> str:
    """The metric a result with these values is read by: the first of HEADLINES it has;
    for a result with none of them (an imported one: an older `vllm bench serve` recorded
    no request latency), its first metric in catalogue order that the table shows."""
    found = next((name for name in HEADLINES if name in metrics), None)
    if found is not None:
        return found
    return next((d.name for d in _DEFS if d.name in metrics and d.column is not None),
                _FALLBACK_HEADLINE)


def families() -> dict[str, Family]:
    """Every exported family by full name, in catalogue order."""
    return {d.family.full_name: d.family for d in _DEFS if d.family is not None}


def columns() -> dict[str, list[MetricDef]]:
    """The table's metric columns in catalogue order: header -> the metrics shown there."""
    grouped: dict[str, list[MetricDef]] = {}
    for definition in _DEFS:
        if definition.column is not None:
            grouped.setdefault(definition.column.header, []).append(definition)
    return grouped


def panels() -> list[tuple[Panel, list[MetricDef]]]:
    """The trend panels in dashboard order, each with its metrics in catalogue order."""
    return [(panel, [d for d in _DEFS if d.panel == panel]) for panel in PANELS]
