"""optimum-benchmark's results (huggingface/optimum-benchmark, 0.6): `benchmark.json`, which
holds a run's `config` and `report`, or `benchmark_report.json` read with the
`benchmark_config.json` that its command line writes next to it (a report alone does not say
which model, task or shapes it measured).

One file is one benchmark of the inference scenario, so one point:

- latency of the timed target (`forward`, or `generate` for generation tasks): its p50, p90,
  p99 and mean as the report gives them, the fastest iteration and the spread from its
  `values`, which are kept as the samples; `prefill` is the time to the first token and
  `per_token` the inter-token latency (p50/p90/p99/mean, their values kept as samples; in
  0.6 its tracker adds every call's token gaps again to the next call's, with the gaps
  between calls: its upper percentiles are those gaps, imported as the tool reports them);
- throughput: the timed target's samples/s; for generation `decode` (tokens/s) and
  `prefill` (samples/s x sequence length: prompt tokens/s); for forward tasks with a
  sequence, samples/s x sequence length is the input tokens/s. optimum-benchmark divides by
  the mean latency where the collector divides by the median: the values are the tool's;
- memory (MB, 10^6 bytes): the largest `max_ram` of the measured targets is the peak RSS,
  `load_model`'s the peak while loading, `max_allocated`/`max_reserved` the CUDA peaks;
- energy (kWh per call, codecarbon): joules per iteration, and for generation per generated
  token (batch x new tokens) and tokens per joule;
- `load_model`'s latency is the load time, `first_forward`/`first_generate`'s the first call.

The spec comes from `config`: the backend (pytorch -> eager, or compile with
`torch_compile`; onnxruntime; openvino), model (a path is a local model, else a Hub id),
task, device, dtype (`torch_dtype`/`dtype`; none is float32, the default of the transformers
4 that optimum-benchmark 0.6 runs on; `auto` says nothing and is refused), threads, attention,
bitsandbytes quantization, `input_shapes` and the generate kwargs (`max_new_tokens`, else
the scenario's `new_tokens`, else the tool's default of 100). Settings that change what runs
and have no counterpart in the collector (other quantizations, autocast, PEFT, DeepSpeed,
BetterTransformer, another backend, another scenario) are refused, naming the file and the
field: imported under a plain spec they would join the wrong series.

The environment comes from `config.environment`: CPU, its logical cores, RAM, platform,
Python, GPUs, transformers (version, and its commit where the tool ran from a checkout: the
commit a change is attributed to), the backend's version (torch for pytorch) and the other
libraries' versions as packages.

Decisions:
- Time: optimum-benchmark records no time. The report file's modification time (when the
  tool wrote it, at the end of the run) is taken, and a warning says so, naming the file.
  A copy that did not keep it (`cp` without `-p`, a checkout) gets another time, never
  another run: the run's id is its content's.
- Group: a digest of the parsed config and report (formatting, file name and place play no
  part), so a run's benchmark.json and its report with its config are the same run.
- Host: the tool does not name the machine: `imported` (or `collector import --host`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collector.adapters.imports.common import (
    ImportedPoint,
    benchmark_name,
    digest,
    json_number,
    name_field,
    parse_json,
    positive_field,
    read_json,
    required_field,
    text_field,
)
from collector.domain import stats
from collector.domain.catalogue import SAMPLE_MEDIANS
from collector.domain.errors import InputError
from collector.domain.workload import GENERATION_TASKS, NO_SEQUENCE_TASKS, Origin, Task

ORIGIN = Origin.OPTIMUM_BENCHMARK
CONFIG_FILE = "benchmark_config.json"  # what the command line writes next to the report
log = logging.getLogger("collector.imports")

# Present in a report (every latency, every memory measurement) and nowhere else we import.
_REPORT_MARKERS = ('"stdev_"', '"max_ram"')
_MB = 1e6  # optimum-benchmark's MB: bytes / 1e6
_KWH = 3.6e6  # joules
_TARGETS = ("load_model", "first_forward", "first_generate", "forward", "generate", "prefill",
            "decode", "per_token")

# Percentiles and mean of a latency, by the report's key.
_LATENCY = {"p50": "latency_p50_seconds", "p90": "latency_p90_seconds",
            "p99": "latency_p99_seconds", "mean": "latency_mean_seconds"}
_TTFT = {"p50": "time_to_first_token_p50_seconds", "p90": "time_to_first_token_p90_seconds",
         "p99": "time_to_first_token_p99_seconds", "mean": "time_to_first_token_mean_seconds"}
_ITL = {"p50": "inter_token_latency_p50_seconds", "p90": "inter_token_latency_p90_seconds",
        "p99": "inter_token_latency_p99_seconds", "mean": "inter_token_latency_mean_seconds"}

# optimum-benchmark's task names -> ours (others have no counterpart).
_TASKS = {"text-generation": Task.TEXT_GENERATION,
          "text-classification": Task.TEXT_CLASSIFICATION,
          "feature-extraction": Task.FEATURE_EXTRACTION,
          "image-classification": Task.IMAGE_CLASSIFICATION,
          "automatic-speech-recognition": Task.SPEECH_RECOGNITION,
          "zero-shot-image-classification": Task.ZERO_SHOT_IMAGE_CLASSIFICATION}
_DTYPES = ("float32", "float16", "bfloat16")
_ATTENTION = ("eager", "sdpa", "flash_attention_2", "flex_attention")
_PROVIDERS = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda",
              "TensorrtExecutionProvider": "tensorrt"}
# Backend settings that change what runs and have no counterpart: (backend, key, words).
_REFUSED = (("pytorch", "autocast_enabled", "autocast"),
            ("pytorch", "peft_type", "a PEFT adapter"),
            ("pytorch", "deepspeed_inference", "DeepSpeed inference"),
            ("pytorch", "to_bettertransformer", "BetterTransformer"),
            ("onnxruntime", "quantization", "ONNX Runtime quantization"),
            ("onnxruntime", "auto_quantization", "ONNX Runtime quantization"),
            ("openvino", "load_in_8bit", "OpenVINO 8-bit weights"),
            ("openvino", "load_in_4bit", "OpenVINO 4-bit weights"))
# optimum-benchmark's environment keys of libraries -> their distribution names.
_LIBRARIES = {"optimum_benchmark_version": "optimum-benchmark",
              "accelerate_version": "accelerate", "diffusers_version": "diffusers",
              "optimum_version": "optimum", "timm_version": "timm", "peft_version": "peft"}


def recognises(path: Path, text: str) -> bool:
    """A JSON object with a report's measurements: benchmark.json or benchmark_report.json
    (and a lone benchmark_config.json, to say what to import instead)."""
    del path  # the content decides, whatever the file is called
    if not text.lstrip().startswith("{"):
        return False
    if any(marker in text for marker in _REPORT_MARKERS):
        return True
    return '"_target_": "optimum_benchmark.' in text and '"scenario"' in text


def read(path: Path, text: str) -> list[ImportedPoint]:
    where = str(path)
    document = _object(parse_json(text, where), where, "the document")
    if "report" in document:  # benchmark.json
        config = _object(document.get("config"), where, "config")
        report = _object(document["report"], where, "report")
        config_where, config_at, report_at = where, "config.", "report."
    elif "scenario" in document and "backend" in document:
        raise InputError(f"{where}: an optimum-benchmark config holds no measurements: "
                         f"import the run's benchmark.json (or its benchmark_report.json)")
    else:  # benchmark_report.json, with the config next to it
        sibling = path.parent / CONFIG_FILE
        if not sibling.is_file():
            raise InputError(f"{where}: an optimum-benchmark report says nothing of what it "
                             f"measured and no {CONFIG_FILE} is next to it: import the run's "
                             f"benchmark.json")
        report, config_where, config_at, report_at = document, str(sibling), "", ""
        config = _object(read_json(sibling), config_where, "the document")
    spec, task = _spec(config, config_where, config_at)
    environment = _environment(config, config_where, config_at)
    metrics, samples = _metrics(report, where, report_at, spec, task)
    return [ImportedPoint(
        origin=ORIGIN, where=where, group=digest(ORIGIN.value, config, report), spec=spec,
        time=_written(path), metrics=metrics, samples=samples, environment=environment)]


# -- the spec -------------------------------------------------------------------------------
# `at` is the dotted place of a mapping in its file, ending with a dot ('' at the top), so
# a message names the field: `config.backend.torch_dtype`.


def _spec(config: Mapping[str, Any], where: str, at: str) -> tuple[dict[str, Any], Task]:
    backend = _object(config.get("backend"), where, f"{at}backend")
    scenario = _object(config.get("scenario"), where, f"{at}scenario")
    b_at, s_at = f"{at}backend.", f"{at}scenario."
    kind = name_field(backend, "name", where, b_at)
    if (scenario_name := name_field(scenario, "name", where, s_at)) != "inference":
        raise InputError(f"{where}: {s_at}name: {scenario_name!r}: only the inference "
                         "scenario is imported")
    model = name_field(backend, "model", where, b_at)
    task_name = name_field(backend, "task", where, b_at)
    task = _TASKS.get(task_name)
    if task is None:
        raise InputError(f"{where}: {b_at}task: {task_name!r} has no counterpart in the "
                         f"collector's tasks ({', '.join(_TASKS)})")
    device = text_field(backend, "device", where, b_at) or "cpu"
    if device not in ("cpu", "cuda"):
        raise InputError(f"{where}: {b_at}device: {device!r}: only cpu and cuda are imported")
    for backend_name, key, words in _REFUSED:
        if kind == backend_name and backend.get(key):
            raise InputError(f"{where}: {b_at}{key}: {words} has no counterpart in the "
                             "collector's backends")
    name = text_field(config, "name", where, at) or model
    spec: dict[str, Any] = {"name": benchmark_name(name), "model": _model(model),
                            "task": task.value, "device": device,
                            "dtype": _dtype(backend, where, b_at)}
    spec.update(_backend(kind, backend, where, b_at))
    if backend.get("intra_op_num_threads") is not None:
        spec["threads"] = positive_field(backend, "intra_op_num_threads", where, b_at)
    attention = text_field(backend, "attn_implementation", where, b_at)
    if attention is not None:
        if attention not in _ATTENTION:
            raise InputError(f"{where}: {b_at}attn_implementation: {attention!r} has no "
                             f"counterpart ({', '.join(_ATTENTION)})")
        spec["attn_implementation"] = attention
    spec.update(_shapes(scenario, task, where, s_at))
    return spec, task


def _shapes(scenario: Mapping[str, Any], task: Task, where: str, at: str) -> dict[str, int]:
    """Batch size, sequence length and new tokens from the scenario's input shapes and
    generate kwargs (the tool's defaults where it has them: batch 2, 100 new tokens)."""
    shapes = _object(scenario.get("input_shapes", {}), where, f"{at}input_shapes")
    out = {"batch_size": positive_field({"batch_size": 2, **shapes}, "batch_size", where,
                                  f"{at}input_shapes.")}
    if task.value not in NO_SEQUENCE_TASKS:
        out["sequence_length"] = positive_field(shapes, "sequence_length", where,
                                          f"{at}input_shapes.")
    if task in GENERATION_TASKS:
        generate = _object(scenario.get("generate_kwargs", {}), where, f"{at}generate_kwargs")
        if generate.get("max_new_tokens") is not None:
            out["new_tokens"] = positive_field(generate, "max_new_tokens", where,
                                         f"{at}generate_kwargs.")
        elif scenario.get("new_tokens") is not None:
            out["new_tokens"] = positive_field(scenario, "new_tokens", where, at)
        else:
            out["new_tokens"] = 100
    return out


def _model(model: str) -> dict[str, str]:
    """A path is a local model, anything else a Hub id."""
    local = model.startswith(("/", "./", "../", "~"))
    return {"source": "local", "path": model} if local else {"source": "hub", "id": model}


def _dtype(backend: Mapping[str, Any], where: str, at: str) -> str:
    if backend.get("half"):  # openvino's
        return "float16"
    key = "dtype" if backend.get("dtype") is not None else "torch_dtype"
    value = text_field(backend, key, where, at)
    if value is None:
        return "float32"
    value = value.removeprefix("torch.")
    if value not in _DTYPES:
        raise InputError(f"{where}: {at}{key}: {value!r} does not say the dtype the model "
                         f"ran in ({', '.join(_DTYPES)})")
    return value


def _backend(kind: str, backend: Mapping[str, Any], where: str, at: str) -> dict[str, Any]:
    """The collector's backend, and its settings, for optimum-benchmark's backend."""
    if kind == "pytorch":
        out: dict[str, Any] = {"backend": "eager"}
        quantization = _object(backend.get("quantization_config") or {}, where,
                               f"{at}quantization_config")
        if quantization or backend.get("quantization_scheme"):
            out["quantization"] = _quantization(quantization, where, at)
        if backend.get("torch_compile"):
            settings = _object(backend.get("torch_compile_config") or {}, where,
                               f"{at}torch_compile_config")
            if (used := settings.get("backend", "inductor")) != "inductor":
                raise InputError(f"{where}: {at}torch_compile_config.backend: {used!r}: the "
                                 "collector compiles with inductor only")
            out.update({"backend": "compile",
                        "compile": {k: settings[k] for k in ("mode", "fullgraph", "dynamic")
                                    if settings.get(k) is not None}})
        return out
    if kind == "onnxruntime":
        provider = backend.get("provider")
        if provider is None:
            return {"backend": "onnxruntime"}
        if provider not in _PROVIDERS:
            raise InputError(f"{where}: {at}provider: {provider!r} has no counterpart "
                             f"({', '.join(_PROVIDERS)})")
        return {"backend": "onnxruntime",
                "onnxruntime": {"execution_provider": _PROVIDERS[provider]}}
    if kind == "openvino":
        return {"backend": "openvino"}
    raise InputError(f"{where}: {at}name: {kind!r} has no counterpart in the collector's "
                     "backends (pytorch, onnxruntime, openvino)")


def _quantization(config: Mapping[str, Any], where: str, at: str) -> str:
    """bitsandbytes' 8-bit and 4-bit NF4 loading; any other quantization is refused."""
    if config.get("load_in_8bit"):
        return "bnb-int8"
    if config.get("load_in_4bit") and config.get("bnb_4bit_quant_type") == "nf4":
        return "bnb-nf4"
    method = config.get("quant_method") or "this"
    raise InputError(f"{where}: {at}quantization_config: {method} quantization has no "
                     "counterpart in the collector's (bitsandbytes int8 and nf4)")


# -- the environment ------------------------------------------------------------------------


def _environment(config: Mapping[str, Any], where: str, at: str) -> dict[str, Any]:
    env = _object(config.get("environment", {}), where, f"{at}environment")
    backend = _object(config.get("backend"), where, f"{at}backend")
    e_at = f"{at}environment."
    out: dict[str, Any] = {}
    if (cpu := text_field(env, "cpu", where, e_at)) is not None:
        out["cpu_model"] = cpu.strip()
    if env.get("cpu_count") is not None:
        out["cpu_logical_cores"] = positive_field(env, "cpu_count", where, e_at)
    if env.get("cpu_ram_mb") is not None:
        out["memory_total_bytes"] = round(json_number(env["cpu_ram_mb"], where,
                                                  f"{e_at}cpu_ram_mb") * _MB)
    for key, field in (("platform", "os"), ("python_version", "python_version"),
                       ("transformers_version", "transformers_version"),
                       ("transformers_commit", "commit")):
        if (value := text_field(env, key, where, e_at)) is not None:
            out[field] = value
    out.update(_gpus(env, where, e_at))
    packages = {name: env[key] for key, name in _LIBRARIES.items()
                if isinstance(env.get(key), str)}
    if (version := text_field(backend, "version", where, f"{at}backend.")) is not None:
        if backend.get("name") == "pytorch":
            out["torch_version"] = version
        else:
            packages[str(backend.get("name"))] = version
    if packages:
        out["packages"] = packages
    return out


def _gpus(env: Mapping[str, Any], where: str, at: str) -> dict[str, Any]:
    gpus = env.get("gpu")
    out: dict[str, Any] = {}
    if gpus is not None:
        if not isinstance(gpus, list) or not all(isinstance(g, str) for g in gpus):
            raise InputError(f"{where}: {at}gpu: expected a list of GPU names")
        if gpus:
            out = {"gpu_name": " + ".join(dict.fromkeys(gpus)), "gpu_count": len(gpus)}
    if env.get("gpu_count") is not None:
        out["gpu_count"] = positive_field(env, "gpu_count", where, at)
    return out


# -- the measurements -----------------------------------------------------------------------


def _metrics(report: Mapping[str, Any], where: str, at: str, spec: Mapping[str, Any],
             task: Task) -> tuple[dict[str, float], dict[str, list[float]]]:
    targets = {name: _object(report[name], where, f"{at}{name}")
               for name in _TARGETS if report.get(name) is not None}
    generation = task in GENERATION_TASKS
    timed = "generate" if generation else "forward"
    if timed not in targets:
        raise InputError(f"{where}: {at}{timed}: missing (a {task.value} benchmark's report "
                         "times it)")
    metrics: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    for target, names in ((timed, _LATENCY), ("prefill", _TTFT), ("per_token", _ITL)):
        if target == timed or generation:
            figures, values = _latency(targets.get(target, {}), names, where, f"{at}{target}.")
            metrics.update(figures)
            if values:
                samples[SAMPLE_MEDIANS[names["p50"]]] = values
    for target, metric in (("load_model", "load_time_seconds"),
                           (f"first_{timed}", "first_call_seconds")):
        if (once := _once(targets.get(target, {}), where, f"{at}{target}.")) is not None:
            metrics[metric] = once
    metrics.update(_rates(targets, timed, spec.get("sequence_length"), where, at))
    metrics.update(_memory(targets, where, at))
    joules = _energy(targets[timed], where, f"{at}{timed}.")
    if joules is not None and joules > 0:
        metrics["energy_per_iteration_joules"] = joules
        if generation:
            tokens = spec["batch_size"] * spec["new_tokens"]
            metrics["energy_per_token_joules"] = joules / tokens
            metrics["tokens_per_joule"] = tokens / joules
    return metrics, samples


def _rates(targets: Mapping[str, Mapping[str, Any]], timed: str, sequence: int | None,
           where: str, at: str) -> dict[str, float]:
    """The timed target's samples/s (and input tokens/s for a forward task with a
    sequence); for generation the decode rate and the prompt tokens/s of the prefill."""
    out: dict[str, float] = {}
    if (rate := _rate(targets[timed], "samples/s", where, f"{at}{timed}.")) is not None:
        out["throughput_samples_per_second"] = rate
        if timed == "forward" and sequence is not None:
            out["throughput_input_tokens_per_second"] = rate * sequence
    if timed == "generate":
        decode = _rate(targets.get("decode", {}), "tokens/s", where, f"{at}decode.")
        if decode is not None:
            out["decode_tokens_per_second"] = decode
        prefill = _rate(targets.get("prefill", {}), "samples/s", where, f"{at}prefill.")
        if prefill is not None and sequence is not None:
            out["prefill_tokens_per_second"] = prefill * sequence
    return out


def _latency(target: Mapping[str, Any], names: Mapping[str, str], where: str,
             at: str) -> tuple[dict[str, float], list[float]]:
    """A latency's percentiles and mean, and its values; for the timed target (the one
    named by latency metrics) also the fastest and the spread."""
    if target.get("latency") is None:
        return {}, []
    latency = _object(target["latency"], where, f"{at}latency")
    l_at = f"{at}latency."
    _unit(latency, "s", where, l_at)
    metrics = {metric: json_number(required_field(latency, key, where, l_at), where, f"{l_at}{key}")
               for key, metric in names.items()}
    values = latency.get("values", [])
    if not isinstance(values, list):
        raise InputError(f"{where}: {l_at}values: expected a list of numbers")
    times = [json_number(v, where, f"{l_at}values[{i}]") for i, v in enumerate(values)]
    if any(v < 0 for v in times):
        raise InputError(f"{where}: {l_at}values: a negative time")
    if times and names is _LATENCY:
        summary = stats.summarize(times)
        metrics.update({"latency_min_seconds": summary.min,
                        "latency_stdev_seconds": summary.stdev, "latency_cv_ratio": summary.cv})
    return metrics, times


def _once(target: Mapping[str, Any], where: str, at: str) -> float | None:
    """A one-off target's time (load, first call): its latency's mean, of one value."""
    if target.get("latency") is None:
        return None
    latency = _object(target["latency"], where, f"{at}latency")
    _unit(latency, "s", where, f"{at}latency.")
    return json_number(required_field(latency, "mean", where, f"{at}latency."), where,
                   f"{at}latency.mean")


def _rate(target: Mapping[str, Any], unit: str, where: str, at: str) -> float | None:
    if target.get("throughput") is None:
        return None
    throughput = _object(target["throughput"], where, f"{at}throughput")
    _unit(throughput, unit, where, f"{at}throughput.")
    return json_number(required_field(throughput, "value", where, f"{at}throughput."), where,
                   f"{at}throughput.value")


def _memory(targets: Mapping[str, Mapping[str, Any]], where: str, at: str) -> dict[str, float]:
    """Peaks in bytes: RSS while measuring (the largest of the measured targets') and while
    loading, CUDA's allocated and reserved."""
    peaks: dict[str, list[float]] = {}
    for name, target in targets.items():
        if target.get("memory") is None:
            continue
        memory = _object(target["memory"], where, f"{at}{name}.memory")
        m_at = f"{at}{name}.memory."
        _unit(memory, "MB", where, m_at)
        rss = "load_peak_rss_bytes" if name == "load_model" else "peak_rss_bytes"
        for key, metric in (("max_ram", rss), ("max_allocated", "cuda_max_allocated_bytes"),
                            ("max_reserved", "cuda_max_reserved_bytes")):
            if memory.get(key) is not None:
                peaks.setdefault(metric, []).append(
                    json_number(memory[key], where, f"{m_at}{key}") * _MB)
    return {metric: max(values) for metric, values in peaks.items()}


def _energy(target: Mapping[str, Any], where: str, at: str) -> float | None:
    """Joules per call of the timed target (the report gives kWh per call)."""
    if target.get("energy") is None:
        return None
    energy = _object(target["energy"], where, f"{at}energy")
    _unit(energy, "kWh", where, f"{at}energy.")
    return json_number(required_field(energy, "total", where, f"{at}energy."), where,
                   f"{at}energy.total") * _KWH


def _written(path: Path) -> datetime:
    """When the tool wrote the file (it records no time of its own), with a warning."""
    try:
        written = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError as exc:
        raise InputError(f"{path}: cannot read its modification time: "
                         f"{exc.strerror or exc}") from None
    log.warning("%s: optimum-benchmark records no time: the file's modification time, %s, "
                "is taken as when it was measured", path, written.isoformat(timespec="seconds"))
    return written


# -- typed fields ---------------------------------------------------------------------------


def _object(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        problem = "missing" if value is None else f"expected an object, got {_kind(value)}"
        raise InputError(f"{where}: {what}: {problem}")
    return value


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", bool: "a boolean"}.get(type(value), "a number")


def _unit(mapping: Mapping[str, Any], unit: str, where: str, at: str) -> None:
    if mapping.get("unit") != unit:
        raise InputError(f"{where}: {at}unit: expected {unit!r}, got {mapping.get('unit')!r:.40}")


