"""transformers' `benchmark_v2` results (huggingface/transformers, benchmark_v2/framework/):
the JSON file its runner saves per model (`{model}_benchmark_{timestamp}.json`: config hash
-> record) and the JSON Lines it pushes to a Hub dataset (`benchmark_run_{timestamp}.jsonl`,
full or summarized: one record a line, with its `benchmark_config_hash`). A record is
`{metadata, measurements, config}`; each is one point.

- `measurements` holds one value per timed generate() call (or continuous batch), in
  seconds: `e2e_latency` -> latency p50/p90/p99/mean/min/spread, its values kept as the
  samples, and batch size / p50 as samples/s; `time_to_first_token` -> its p50/p90/p99/mean
  (samples kept) and batch x sequence length / p50 as prefill tokens/s;
  `inter_token_latency` (each call's mean time between tokens) -> the mean, and batch size
  / that time (median over calls) as the decode rate. Full results also hold `timestamps`
  (each call's new tokens' times, per sequence): their consecutive gaps are the inter-token
  latency's samples and p50/p90/p99 (the streamer's end mark, one more time than new
  tokens, is left out). `gpu_metrics` (device-wide utilisation and memory) has no
  counterpart and is not imported.
- `config` -> the spec: `num_tokens_to_generate`, `batch_size`, `sequence_length`,
  `attn_implementation` (`paged|sdpa` is sdpa), `sdpa_backend` (math, flash_attention,
  efficient_attention, cudnn_attention), `compile_kwargs` (a CompileConfig) or the older
  `compile_mode` -> backend compile with its mode, fullgraph and dynamic (else eager),
  `kernelize` -> kernels, `continuous_batching` -> a continuous batch of `batch_size`
  requests; dtype and device where the config has them, else the runner's constants
  (bfloat16, cuda). The model is `metadata.model_id` (a Hub id; a path is a local model),
  and names the benchmark.
- `metadata` -> the time (`timestamp`, ISO 8601; naive is UTC), the commit (`commit_id`:
  what a change is attributed to), and from `hardware_info` the GPU's name, Python, torch
  and CUDA versions (CPU count and RAM where an older runner wrote them). A record the
  runner marked `success: false` has no measurements: it is skipped, with a warning.

Decisions:
- Group: one run per record, its key a digest of the model, the config hash, the
  timestamp and the commit: the runner records no id of a whole run, and a record's JSON
  and JSON Lines forms (full or summarized) are then the same run, imported once.
- Host: the records do not name the machine: `imported` (or `collector import --host`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from collector.adapters.imports.common import (
    ImportedPoint,
    benchmark_name,
    digest,
    json_number,
    name_field,
    parse_json,
    parse_time,
    positive_field,
    required_field,
    text_field,
)
from collector.domain import stats
from collector.domain.catalogue import SAMPLE_MEDIANS
from collector.domain.errors import InputError
from collector.domain.workload import Origin

ORIGIN = Origin.BENCHMARK_V2
log = logging.getLogger("collector.imports")

_ATTENTION = ("eager", "sdpa", "flash_attention_2", "flex_attention")
_SDPA = {"math": "math", "flash_attention": "flash", "efficient_attention": "efficient",
         "cudnn_attention": "cudnn"}
_DTYPES = ("float32", "float16", "bfloat16")
_LATENCY = {"p50": "latency_p50_seconds", "p90": "latency_p90_seconds",
            "p99": "latency_p99_seconds", "mean": "latency_mean_seconds",
            "min": "latency_min_seconds", "stdev": "latency_stdev_seconds",
            "cv": "latency_cv_ratio"}
_TTFT = {"p50": "time_to_first_token_p50_seconds", "p90": "time_to_first_token_p90_seconds",
         "p99": "time_to_first_token_p99_seconds", "mean": "time_to_first_token_mean_seconds"}
_ITL = {"p50": "inter_token_latency_p50_seconds", "p90": "inter_token_latency_p90_seconds",
        "p99": "inter_token_latency_p99_seconds"}
_ITL_MEAN = "inter_token_latency_mean_seconds"


def recognises(path: Path, text: str) -> bool:
    """JSON (or JSON Lines) with a record's measurements and config: `e2e_latency` and
    `num_tokens_to_generate`."""
    del path  # the content decides, whatever the file is called
    return (text.lstrip().startswith("{") and '"e2e_latency"' in text
            and '"num_tokens_to_generate"' in text)


def read(path: Path, text: str) -> list[ImportedPoint]:
    points = []
    for where, key, record in _records(path, text):
        point = _point(record, key, where)
        if point is not None:
            points.append(point)
    return points


def _records(path: Path, text: str) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(where, config hash, record) of each record: a JSON Lines file when its first line
    is a whole object, else one JSON document (config hash -> record)."""
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("{") and first.endswith("}"):
        for index, line in enumerate(lines, start=1):
            if line.strip():
                yield from _in(parse_json(line, str(path), index), f"{path}:{index}", text,
                               None)
        return
    yield from _in(parse_json(text, str(path)), str(path), text, path)


def _in(value: Any, where: str, text: str,
        document: Path | None) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """The records of one JSON value: a record itself (a JSON Lines row), or a mapping of
    config hashes to records (the runner's file; each record then named by its line)."""
    value = _object(value, where, "the record")
    if "measurements" in value or "metadata" in value:
        key = value.get("benchmark_config_hash")
        yield where, key if isinstance(key, str) else None, value
        return
    if not value:
        raise InputError(f"{where}: no benchmark_v2 record in it")
    for key, record in value.items():
        at = where
        if document is not None:
            found = text.find(json.dumps(key))
            at = f"{document}:{text.count(chr(10), 0, found) + 1 if found >= 0 else 1}"
        yield at, key, _object(record, at, f"record {key[:40]!r}")


def _point(record: Mapping[str, Any], key: str | None, where: str) -> ImportedPoint | None:
    metadata = _object(record.get("metadata"), where, "metadata")
    if metadata.get("success") is False:
        log.warning("%s: the runner recorded this benchmark as failed: skipped", where)
        return None
    config = _object(record.get("config"), where, "config")
    measurements = _object(record.get("measurements"), where, "measurements")
    model = name_field(metadata, "model_id", where, "metadata.")
    time = parse_time(required_field(metadata, "timestamp", where, "metadata."), where,
                      "metadata.timestamp")
    spec = _spec(config, model, where)
    metrics, samples, duration = _metrics(measurements, config, where)
    environment = _environment(metadata, where)
    group = digest(ORIGIN.value, model, key or digest(config), time.isoformat(),
                   environment.get("commit"))
    return ImportedPoint(origin=ORIGIN, where=where, group=group, spec=spec, time=time,
                         metrics=metrics, samples=samples, environment=environment,
                         duration_s=duration)


# -- the spec -------------------------------------------------------------------------------


def _spec(config: Mapping[str, Any], model: str, where: str) -> dict[str, Any]:
    batch = positive_field(config, "batch_size", where, "config.")
    sequence = positive_field(config, "sequence_length", where, "config.")
    new = positive_field(config, "num_tokens_to_generate", where, "config.")
    device = text_field(config, "device", where, "config.") or "cuda"
    if device not in ("cpu", "cuda"):
        raise InputError(f"{where}: config.device: {device!r}: only cpu and cuda are imported")
    dtype = (text_field(config, "dtype", where, "config.") or "bfloat16").removeprefix("torch.")
    if dtype not in _DTYPES:
        raise InputError(f"{where}: config.dtype: {dtype!r} has no counterpart "
                         f"({', '.join(_DTYPES)})")
    local = model.startswith(("/", "./", "../", "~"))
    spec: dict[str, Any] = {
        "name": benchmark_name(model), "task": "text-generation", "device": device,
        "dtype": dtype, "model": {"source": "local", "path": model} if local
        else {"source": "hub", "id": model}}
    spec.update(_attention(config, where))
    spec.update(_compile(config, where))
    if config.get("kernelize"):
        spec["kernels"] = True
    if config.get("continuous_batching"):
        spec["batching"] = {"requests": batch, "input_tokens": {"mean": sequence},
                            "output_tokens": {"mean": new}}
    else:
        spec.update(batch_size=batch, sequence_length=sequence, new_tokens=new)
    return spec


def _attention(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    attention = (text_field(config, "attn_implementation", where, "config.") or "eager")
    attention = attention.removeprefix("paged|")  # continuous batching's paged cache
    if attention not in _ATTENTION:
        raise InputError(f"{where}: config.attn_implementation: {attention!r} has no "
                         f"counterpart ({', '.join(_ATTENTION)})")
    out: dict[str, Any] = {"attn_implementation": attention}
    kernel = text_field(config, "sdpa_backend", where, "config.")
    if kernel is not None and attention == "sdpa":
        if kernel not in _SDPA:
            raise InputError(f"{where}: config.sdpa_backend: {kernel!r} has no counterpart "
                             f"({', '.join(_SDPA)})")
        out["sdpa_backend"] = _SDPA[kernel]
    return out


def _compile(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """compile_kwargs (a CompileConfig's fields) or the older compile_mode."""
    kwargs = config.get("compile_kwargs")
    if kwargs is not None:
        kwargs = _object(kwargs, where, "config.compile_kwargs")
        if (used := kwargs.get("backend") or "inductor") != "inductor":
            raise InputError(f"{where}: config.compile_kwargs.backend: {used!r}: the "
                             "collector compiles with inductor only")
        settings = {k: kwargs[k] for k in ("mode", "fullgraph", "dynamic")
                    if kwargs.get(k) is not None}
        # CompileConfig's default mode; the runner makes fullgraph True unless told.
        return {"backend": "compile",
                "compile": {"mode": "reduce-overhead", "fullgraph": True, **settings}}
    mode = text_field(config, "compile_mode", where, "config.")
    if mode is not None:
        return {"backend": "compile", "compile": {"mode": mode}}
    return {"backend": "eager"}


# -- the measurements -----------------------------------------------------------------------


def _metrics(measurements: Mapping[str, Any], config: Mapping[str, Any],
             where: str) -> tuple[dict[str, float], dict[str, list[float]], float]:
    """The figures, the samples and the timed calls' total duration."""
    at = "measurements."
    batch, sequence = config["batch_size"], config["sequence_length"]
    e2e = _times(measurements, "e2e_latency", where, at, required=True)
    summary = stats.summarize(e2e)
    metrics = {metric: getattr(summary, key) for key, metric in _LATENCY.items()}
    if summary.p50 > 0:
        metrics["throughput_samples_per_second"] = batch / summary.p50
    samples = {SAMPLE_MEDIANS[_LATENCY["p50"]]: e2e}
    if ttft := _times(measurements, "time_to_first_token", where, at):
        first = stats.summarize(ttft)
        metrics.update({metric: getattr(first, key) for key, metric in _TTFT.items()})
        samples[SAMPLE_MEDIANS[_TTFT["p50"]]] = ttft
        if first.p50 > 0:
            metrics["prefill_tokens_per_second"] = batch * sequence / first.p50
    if itl := _times(measurements, "inter_token_latency", where, at):
        metrics[_ITL_MEAN] = stats.mean(itl)
        rates = [batch / value for value in itl if value > 0]
        if rates:
            metrics["decode_tokens_per_second"] = stats.percentile(sorted(rates), 50.0)
    if gaps := _gaps(measurements.get("timestamps"), config["num_tokens_to_generate"], where):
        between = stats.summarize(gaps)
        metrics.update({metric: getattr(between, key) for key, metric in _ITL.items()})
        samples[SAMPLE_MEDIANS[_ITL["p50"]]] = gaps
    return metrics, samples, sum(e2e)


def _times(mapping: Mapping[str, Any], key: str, where: str, at: str, *,
           required: bool = False) -> list[float]:
    value = mapping.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        problem = "missing" if value is None else "expected a non-empty list of seconds"
        raise InputError(f"{where}: {at}{key}: {problem}")
    times = [json_number(v, where, f"{at}{key}[{i}]") for i, v in enumerate(value)]
    for index, seconds in enumerate(times):
        if seconds < 0:
            raise InputError(f"{where}: {at}{key}[{index}]: a negative time ({seconds})")
    return times


def _gaps(timestamps: Any, new_tokens: int, where: str) -> list[float]:
    """The times between consecutive new tokens of every sequence of every call."""
    if timestamps is None:
        return []
    at = "measurements.timestamps"
    if not isinstance(timestamps, list):
        raise InputError(f"{where}: {at}: expected a list (a call's sequences' token times)")
    gaps: list[float] = []
    for call, rows in enumerate(timestamps):
        if not isinstance(rows, list):
            raise InputError(f"{where}: {at}[{call}]: expected a list of sequences")
        for row, stamps in enumerate(rows):
            what = f"{at}[{call}][{row}]"
            if not isinstance(stamps, list):
                raise InputError(f"{where}: {what}: expected a list of seconds")
            times = _numbers(stamps, where, what)
            if len(times) == new_tokens + 1:  # generate()'s streamer marks its end too
                times = times[:-1]
            for index in range(1, len(times)):
                gap = times[index] - times[index - 1]
                if gap < 0:
                    raise InputError(f"{where}: {what}[{index}]: token times go back")
                gaps.append(gap)
    return gaps


# -- the environment ------------------------------------------------------------------------


def _environment(metadata: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (commit := text_field(metadata, "commit_id", where, "metadata.")) is not None:
        out["commit"] = commit
    hardware = _object(metadata.get("hardware_info") or {}, where, "metadata.hardware_info")
    at = "metadata.hardware_info."
    for key in ("gpu_name", "python_version", "torch_version", "cuda_version"):
        if (value := text_field(hardware, key, where, at)) is not None:
            out[key] = value
    if hardware.get("cpu_count") is not None:
        out["cpu_logical_cores"] = positive_field(hardware, "cpu_count", where, at)
    if hardware.get("memory_total_mb") is not None:  # MiB: psutil's total / 1024**2
        out["memory_total_bytes"] = positive_field(hardware, "memory_total_mb", where, at) << 20
    return out


# -- typed fields ---------------------------------------------------------------------------


def _object(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        problem = "missing" if value is None else f"expected an object, got {value!r:.40}"
        raise InputError(f"{where}: {what}: {problem}")
    return value


def _numbers(values: list[Any], where: str, what: str) -> list[float]:
    """A list of finite JSON numbers; the first that is not one named by its index. (A
    year of full results holds millions of token times: the common case is checked in
    bulk, the message built only for a bad value.)"""
    if all(type(v) is float or type(v) is int for v in values):
        try:
            floats = [float(v) for v in values]
        except OverflowError:  # an integer past float's range
            floats = []
        if len(floats) == len(values) and all(map(math.isfinite, floats)):
            return floats
    return [json_number(v, where, f"{what}[{i}]") for i, v in enumerate(values)]


