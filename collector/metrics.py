"""The catalogue of metrics: name (unit in the name), unit, and which direction is better."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Direction(str, Enum):
    LOWER_IS_BETTER = "lower_is_better"
    HIGHER_IS_BETTER = "higher_is_better"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class MetricDef:
    name: str
    unit: str
    direction: Direction
    help: str


_L = Direction.LOWER_IS_BETTER
_H = Direction.HIGHER_IS_BETTER
_N = Direction.NEUTRAL

_DEFS = [
    MetricDef("load_time_seconds", "seconds", _L,
              "from_pretrained from disk until the model is ready on the device"),
    MetricDef("first_call_seconds", "seconds", _L,
              "first forward/generate call (cold caches; includes compilation when compiled)"),
    MetricDef("compile_time_seconds", "seconds", _L,
              "torch.compile: first call minus the steady-state median"),
    MetricDef("latency_p50_seconds", "seconds", _L, "median iteration latency"),
    MetricDef("latency_p90_seconds", "seconds", _L, "90th percentile iteration latency"),
    MetricDef("latency_p99_seconds", "seconds", _L, "99th percentile iteration latency"),
    MetricDef("latency_mean_seconds", "seconds", _L, "mean iteration latency"),
    MetricDef("latency_min_seconds", "seconds", _L, "fastest iteration"),
    MetricDef("latency_stdev_seconds", "seconds", _N, "sample standard deviation of latency"),
    MetricDef("latency_cv_ratio", "ratio", _N, "coefficient of variation of latency"),
    MetricDef("throughput_samples_per_second", "samples/s", _H,
              "batch size / median latency"),
    MetricDef("throughput_input_tokens_per_second", "tokens/s", _H,
              "batch size x input length / median latency"),
    MetricDef("time_to_first_token_p50_seconds", "seconds", _L,
              "median time from generate() call to the first new token"),
    MetricDef("time_to_first_token_mean_seconds", "seconds", _L,
              "mean time to the first new token"),
    MetricDef("inter_token_latency_mean_seconds", "seconds", _L,
              "mean time between consecutive new tokens"),
    MetricDef("inter_token_latency_p90_seconds", "seconds", _L,
              "90th percentile time between consecutive new tokens"),
    MetricDef("decode_tokens_per_second", "tokens/s", _H,
              "new tokens after the first, over the batch, per second of decoding (median)"),
    MetricDef("prefill_tokens_per_second", "tokens/s", _H,
              "prompt tokens over the batch / median time to first token"),
    MetricDef("peak_rss_bytes", "bytes", _L,
              "peak resident set size of the worker while measuring (kernel high-water mark)"),
    MetricDef("load_peak_rss_bytes", "bytes", _L,
              "peak resident set size of the worker up to the end of model loading"),
    MetricDef("model_size_bytes", "bytes", _N, "bytes of parameters and buffers"),
    MetricDef("cuda_max_allocated_bytes", "bytes", _L, "torch.cuda.max_memory_allocated"),
    MetricDef("cuda_max_reserved_bytes", "bytes", _L, "torch.cuda.max_memory_reserved"),
    MetricDef("instructions_per_iteration", "instructions", _L,
              "CPU instructions per iteration (forward or generate call), counted under "
              "valgrind in the timed region only (measurement mode instructions)"),
    MetricDef("instructions_per_token", "instructions", _L,
              "CPU instructions per generated token over the batch (generation tasks, "
              "measurement mode instructions)"),
]

METRICS: dict[str, MetricDef] = {d.name: d for d in _DEFS}


def metric(name: str) -> MetricDef:
    """Look up a metric; unknown names are a programming error."""
    return METRICS[name]
