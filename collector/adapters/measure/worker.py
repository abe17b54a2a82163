"""Worker side: the only module tree that imports torch and transformers.

Runs one benchmark inside a fresh worker process: load the model from disk onto the device,
build inputs, time the first call, warm up, measure until stable, and send back a plain-JSON
payload (metrics, raw samples, measurement info, noise probe, environment additions).

In measurement mode `instructions` the worker runs under valgrind (collector/adapters/measure/
valgrind.py) and, instead of timing, counts the CPU instructions of exactly `min_iterations`
iterations after the warm-up (collector/adapters/measure/callgrind.py).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

# isort: split
import collector.adapters.measure.quiet_imports  # noqa: F401 - before transformers (see that module)

# isort: split
import transformers

from collector.adapters.host import NoiseMeter
from collector.adapters.measure import attention, backends, protocol
from collector.adapters.measure.backends.base import Context, Prepared
from collector.adapters.measure.callgrind import CallgrindError, InstructionCounter
from collector.adapters.measure.energy import EnergyMeter
from collector.adapters.measure.extra_compute import Cost, ExtraCompute
from collector.adapters.measure.isolation import WorkerFailure
from collector.adapters.measure.measure import Measured, measure
from collector.adapters.measure.numerics import outputs_fingerprint
from collector.adapters.measure.quantize import int8_matmul, quantize
from collector.adapters.measure.quantize import load_kwargs as quantization_load_kwargs
from collector.adapters.measure.tasks import AUTO_CLASSES, batching, generation, infer_task
from collector.adapters.measure.tasks.inputs import build_inputs
from collector.adapters.measure.valgrind import instructions_mode_problem
from collector.domain import backends as declarations
from collector.domain import capabilities
from collector.domain.load_stats import summarise
from collector.domain.model import (
    GENERATION_TASKS,
    BenchmarkSpec,
    FailureKind,
    HubSource,
    LocalSource,
    MeasurementInfo,
    MeasurementMode,
    NoiseProbe,
    SyntheticSource,
    Task,
)
from collector.domain.serving import SLOs
from collector.domain.stats import Summary, summarize

HUB_FILES = ["*.json", "*.safetensors", "*.py", "*.txt", "*.model"]
# CPython specialises bytecode after ~8 runs of a code path: instruction counts of the first
# iterations are ~1% higher and settle by the 10th (measured on bert-tiny under callgrind).
INSTRUCTIONS_MIN_WARMUP = 10
# Then, once instrumentation is on, two more: the first instrumented iteration counts ~0.7%
# more and the second ~0.1% more than the steady state (so does the first after any Python
# work such as reading a dump), measured on bert-tiny.
INSTRUMENTED_WARMUP = 2
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# Memory: the kernel's high-water mark instead of a sampling thread (exact, zero overhead).


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    value = _status_bytes("VmHWM")
    if value is not None:
        return value
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Model loading


def _model_class_name(spec: BenchmarkSpec, config: Any) -> str | None:
    if isinstance(spec.model, SyntheticSource):
        return spec.model.architecture
    names = getattr(config, "architectures", None) or []
    return names[0] if names and hasattr(transformers, names[0]) else None


def _checkpoint(spec: BenchmarkSpec, workdir: Path) -> str:
    """A directory (or hub snapshot) holding the model's files on local disk."""
    source = spec.model
    if isinstance(source, SyntheticSource):
        if not hasattr(transformers, source.architecture):
            raise WorkerFailure(FailureKind.EXCEPTION,
                                f"unknown architecture {source.architecture!r}")
        cls = getattr(transformers, source.architecture)
        # transformers keeps unknown keys silently; a typo (n_layers for n_layer) would
        # benchmark a different model than the one asked for.
        defaults = cls.config_class()
        unknown = sorted(k for k in source.config if not hasattr(defaults, k))
        if unknown:
            raise WorkerFailure(FailureKind.EXCEPTION, (
                f"unknown {cls.config_class.__name__} key(s) in model.config: "
                f"{', '.join(unknown)}"))
        config = cls.config_class(**source.config)
        torch.manual_seed(source.seed)
        model = cls(config)
        path = workdir / "synthetic-model"
        model.save_pretrained(path)
        del model
        return str(path)
    if isinstance(source, LocalSource):
        path = Path(source.path).expanduser()
        if not (path / "config.json").is_file():
            what = "does not exist" if not path.exists() else "has no config.json"
            raise WorkerFailure(FailureKind.MODEL_UNAVAILABLE,
                                f"local model directory {str(path)!r} {what}")
        return str(path)
    assert isinstance(source, HubSource)
    from huggingface_hub import snapshot_download

    try:
        # Only what from_pretrained needs: configs, safetensors weights, remote code; the
        # legacy .bin weights only where a repository has no safetensors.
        path = Path(snapshot_download(source.id, revision=source.revision,
                                      allow_patterns=HUB_FILES))
        if not any(path.glob("*.safetensors")):
            snapshot_download(source.id, revision=source.revision,
                              allow_patterns=["pytorch_model*.bin"])
        return str(path)
    except Exception as exc:
        raise WorkerFailure(FailureKind.MODEL_UNAVAILABLE, (
            f"hub model {source.id!r} at revision {source.revision!r} could not be fetched "
            f"and is not in the local cache ({type(exc).__name__}: {str(exc)[:300]})"
        )) from None


def _load(spec: BenchmarkSpec, path: str, device: torch.device, sync: Callable[[], None] | None,
          ) -> tuple[Any, Task, float]:
    trust = spec.model.trust_remote_code
    config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust)
    arch = _model_class_name(spec, config)
    task: Task
    if spec.task is not Task.AUTO:
        task = spec.task
        if arch is None or (not isinstance(spec.model, SyntheticSource)
                            and _task_of(arch) is not task):
            arch = None
    elif arch is not None:
        task = infer_task(arch)
    else:
        raise WorkerFailure(FailureKind.EXCEPTION, (
            "the model's config names no transformers architecture; set 'task' explicitly"))
    cls = getattr(transformers, arch if arch is not None else AUTO_CLASSES[task])
    attention.check_model_class(cls, spec)
    start = time.perf_counter_ns()
    with attention.loading(spec):
        model = cls.from_pretrained(path, dtype=_DTYPES[spec.dtype.value],
                                    trust_remote_code=trust,
                                    **backends.get(spec.backend).load_kwargs(spec),
                                    **quantization_load_kwargs(spec))
    model.to(device)
    model.eval()
    attention.kernelize(model, spec)  # on its device: the Hub kernels are per device
    if sync is not None:
        sync()
    load_s = (time.perf_counter_ns() - start) / 1e9
    if isinstance(spec.model, SyntheticSource) and spec.model.delay_ms > 0:
        delay_s = spec.model.delay_ms / 1e3

        def _slow_down(_module: Any, _args: Any) -> None:
            time.sleep(delay_s)

        model.register_forward_pre_hook(_slow_down)
    return model, task, load_s


def _delayed(spec: BenchmarkSpec, step: Callable[[], Any]) -> Callable[[], Any]:
    """`step` sleeping delay_ms first (for backends that run no torch module to hook)."""
    delay_s = spec.model.delay_ms / 1e3 if isinstance(spec.model, SyntheticSource) else 0.0
    if delay_s <= 0:
        return step

    def slowed() -> Any:
        time.sleep(delay_s)
        return step()

    return slowed


def _task_of(arch: str) -> Task | None:
    try:
        return infer_task(arch)
    except WorkerFailure:
        return None


# ---------------------------------------------------------------------------------------------
# The benchmark


def _device(spec: BenchmarkSpec) -> tuple[torch.device, Callable[[], None] | None]:
    device = torch.device(spec.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WorkerFailure(FailureKind.EXCEPTION,
                                "device 'cuda' requested but CUDA is not available here")
        torch.cuda.set_device(device)
        return device, lambda: torch.cuda.synchronize(device)
    return device, None


def _gpu_environment(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(device)
    env: dict[str, Any] = {"cuda_version": str(torch.version.cuda), "gpu_name": str(props.name),
                           "gpu_count": torch.cuda.device_count()}
    cudnn = torch.backends.cudnn.version()
    env["cudnn_version"] = str(cudnn) if cudnn else None
    gpu = _nvml_state(device)
    if gpu.get("driver"):
        env["gpu_driver"] = gpu["driver"]
    return env


def _nvml_state(device: torch.device) -> dict[str, Any]:
    """Clocks, throttling and temperature through NVML where the library is installed."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        state = {
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "throttle_reasons": int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)),
        }
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in state.items()}
    except Exception:  # NVML is diagnostics only; never fail a benchmark over it
        return {}


def _instruction_counter(spec: BenchmarkSpec) -> InstructionCounter:
    """Checks for instructions mode; one torch thread (a thread pool's spin-waits would be
    counted as work, and valgrind runs one thread at a time anyway)."""
    problem = instructions_mode_problem(spec)
    if problem is not None:
        raise WorkerFailure(FailureKind.EXCEPTION, problem)
    try:
        counter = InstructionCounter.from_environment()
    except CallgrindError as exc:
        raise WorkerFailure(FailureKind.EXCEPTION, str(exc)) from None
    torch.set_num_threads(1)
    # Only settable before any inter-op work began; if it did, the pool exists but is idle.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return counter


def run(conn: Connection, payload: dict[str, Any]) -> None:
    """Worker entry: run payload['spec'] and send its result body on the connection
    (JSON, collector/adapters/measure/protocol.py: the parent validates it as a WorkerResult)."""
    spec = BenchmarkSpec.model_validate(payload["spec"])

    def progress(body: dict[str, Any]) -> None:
        protocol.send(conn, "progress", body)

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    counter = (_instruction_counter(spec)
               if spec.measurement.mode is MeasurementMode.INSTRUCTIONS else None)
    if counter is None and spec.threads is not None:
        torch.set_num_threads(spec.threads)
    device, sync = _device(spec)
    # Known before loading (a CUDA kernel on a CPU, no kernels package, flash or flex under
    # batching): no need to load the model.
    unavailable = attention.problem_before_loading(spec)
    if unavailable is not None:
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, unavailable)
    with tempfile.TemporaryDirectory(prefix="collector-worker-") as tmp:
        workdir = Path(tmp)
        # A cold compile every time: a fresh Inductor cache per benchmark.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(workdir / "inductor"))
        if spec.serving is not None:  # a server (or an endpoint) under load
            # Imported here: the load generator's HTTP stack (~0.4 s) only where it runs.
            from collector.adapters.measure import serving

            body = serving.run(spec, workdir, lambda: _checkpoint(spec, workdir), progress,
                               api_key=payload.get("api_key"))
            _send_result(conn, spec, device, body, payload)
            return
        progress({"phase": "loading"})
        path = _checkpoint(spec, workdir)
        model, task, load_s = _load(spec, path, device, sync)
        # The SDPA kernel for everything that runs the model: the first call (where compile
        # traces it), warm-up, every timed call, the numerics fingerprint, and the batching
        # scheduler's thread (torch's switches are process-wide).
        with attention.measuring(spec):
            if spec.batching is not None:
                body = _measure_batching(spec, model, task, device, sync=sync,
                                         progress=progress)
            else:
                body = _measure_model(spec, model, task, device, sync=sync, progress=progress,
                                      counter=counter, workdir=workdir)
    if counter is None:  # under valgrind, load time is emulation time
        body["metrics"]["load_time_seconds"] = load_s
    _send_result(conn, spec, device, body, payload)


def _send_result(conn: Connection, spec: BenchmarkSpec, device: torch.device,
                 body: dict[str, Any], payload: dict[str, Any]) -> None:
    """The result body with what the worker knows of its environment, sent."""
    body["environment"] = body.get("environment", {})
    if spec.serving is None or spec.serving.endpoint is None:  # an endpoint's are its own
        body["environment"].update({
            "torch_version": str(torch.__version__),
            "transformers_version": str(transformers.__version__),
            "torch_threads": torch.get_num_threads(), **_gpu_environment(device)})
    int8 = int8_matmul(spec, device)
    if int8 is not None:
        body["environment"]["int8_matmul"] = int8
    names = payload.get("packages") or []
    if names:
        body["environment"]["packages"] = installed_versions(names)
    protocol.send(conn, "result", body)


def installed_versions(names: list[str]) -> dict[str, str]:
    """The installed version of each package named, as this interpreter sees it (so in a
    package environment, its pins); missing ones omitted."""
    found = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _time_cost(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds per call of fn over max(repeats, 5) calls (extra_compute sizing)."""
    times = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e9


def _with_extra_compute(spec: BenchmarkSpec, model: Any, step: Callable[[], Any],
                        counter: InstructionCounter | None) -> Callable[[], Any]:
    """The step to measure: with SyntheticSource.extra_compute, every forward call also does
    extra matmuls, calibrated here in the measured unit
    (collector/adapters/measure/extra_compute.py): instruction counts (instrumentation on, after
    the warm-up) or medians of timings."""
    fraction = spec.model.extra_compute if isinstance(spec.model, SyntheticSource) else 0.0
    if fraction <= 0:
        return step
    if counter is None:
        return ExtraCompute().install(model, step, fraction, _time_cost, exact=False)
    count: Cost = counter.count
    return ExtraCompute().install(model, step, fraction, count, exact=True)


def _count_instructions(spec: BenchmarkSpec, model: Any, step: Callable[[], Any],
                        counter: InstructionCounter, *, generating: bool,
                        progress: Callable[[dict[str, Any]], None],
                        ) -> tuple[dict[str, float], dict[str, list[float]], MeasurementInfo]:
    """Warm up uninstrumented (at least INSTRUCTIONS_MIN_WARMUP iterations), turn
    instrumentation on, calibrate extra_compute if asked, run INSTRUMENTED_WARMUP iterations
    uncounted, then count exactly `min_iterations` iterations: one dump per iteration (the
    dump request is all the region holds besides the steps; dumps are read once
    instrumentation is off). The garbage collector is off from calibration to the end of
    the region, so a collection triggered by earlier allocations cannot land in one run and
    not in another."""
    settings = spec.measurement
    warmup = max(settings.warmup_iterations, INSTRUCTIONS_MIN_WARMUP)
    for _ in range(warmup):
        step()
    iterations = settings.min_iterations
    gc.collect()
    gc.disable()
    start = time.perf_counter_ns()
    try:
        counter.start()
        try:
            step = _with_extra_compute(spec, model, step, counter)
            progress({"phase": "measuring", "iterations": 0, "instrumented": True})
            counter.read_dumps()
            for _ in range(INSTRUMENTED_WARMUP):
                step()
            counter.open_region()
            for i in range(iterations):
                step()
                counter.dump(f"iteration {i + 1}")
        finally:
            counter.stop()
    finally:
        gc.enable()
    duration_s = (time.perf_counter_ns() - start) / 1e9
    try:
        counts = counter.read_dumps()[1:]  # the first is open_region's
    except CallgrindError as exc:
        raise WorkerFailure(FailureKind.EXCEPTION, str(exc)) from None
    if len(counts) != iterations:
        raise WorkerFailure(FailureKind.EXCEPTION, (
            f"expected {iterations} callgrind dumps, found {len(counts)}"))
    total = sum(counts)
    metrics = {"instructions_per_iteration": total / iterations}
    if generating:
        metrics["instructions_per_token"] = total / (iterations * spec.new_tokens
                                                     * spec.batch_size)
    info = MeasurementInfo(iterations=iterations, warmup_iterations=warmup,
                           duration_s=duration_s, target_rel_ci=settings.target_rel_ci,
                           achieved_rel_ci=None, converged=True, stop_reason="max_iterations")
    return metrics, {"instructions": [float(c) for c in counts]}, info


def _body(task: Task, device: torch.device, metrics: dict[str, float],
          samples: dict[str, list[float]], *, measured: Measured,
          noise: NoiseProbe) -> dict[str, Any]:
    """A timed measurement's result body, with the device's memory peaks on CUDA."""
    if device.type == "cuda":
        metrics["cuda_max_allocated_bytes"] = float(torch.cuda.max_memory_allocated(device))
        metrics["cuda_max_reserved_bytes"] = float(torch.cuda.max_memory_reserved(device))
    assert measured.info is not None
    return {"resolved_task": task.value, "metrics": metrics, "samples": samples,
            "measurement": measured.info.model_dump(mode="json"),
            "noise": noise.model_dump(mode="json")}


def _timed_metrics(summary: Summary, first_call_s: float) -> dict[str, float]:
    """The timed iterations' figures (a forward, a generate() call, a batch) and the memory
    they took."""
    return {
        "first_call_seconds": first_call_s,
        "latency_p50_seconds": summary.p50,
        "latency_p90_seconds": summary.p90,
        "latency_p99_seconds": summary.p99,
        "latency_mean_seconds": summary.mean,
        "latency_min_seconds": summary.min,
        "latency_stdev_seconds": summary.stdev,
        "latency_cv_ratio": summary.cv,
        "peak_rss_bytes": float(peak_rss_bytes()),
    }


def _energy_metrics(joules: float | None, iterations: int, tokens: int) -> dict[str, float]:
    """Energy per iteration (and per generated token, tokens per joule) where measured."""
    if joules is None or iterations == 0:
        return {}
    metrics = {"energy_per_iteration_joules": joules / iterations}
    if tokens:
        metrics["energy_per_token_joules"] = joules / (iterations * tokens)
        metrics["tokens_per_joule"] = iterations * tokens / joules
    return metrics


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor stores. A tensor subclass (torchao's quantized weights) reports its
    logical dtype's size: count the plain tensors it is made of instead."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _prepare(model: Any, context: Context) -> Prepared:
    """The backend's step for the quantized model (delay_ms wrapped around it where the
    backend runs no torch module for the forward hook to slow down)."""
    spec = context.spec
    impossible = capabilities.problem(spec, context.task)
    if impossible is not None:  # `task: auto` resolved to one the backend cannot run
        raise WorkerFailure(FailureKind.EXCEPTION, impossible[1])
    prepared = backends.get(spec.backend).prepare(quantize(model, spec), context)
    if prepared.module is None:
        prepared.step = _delayed(spec, prepared.step)
    return prepared


def _measure_model(spec: BenchmarkSpec, model: Any, task: Task, device: torch.device, *,
                   sync: Callable[[], None] | None,
                   progress: Callable[[dict[str, Any]], None], workdir: Path,
                   counter: InstructionCounter | None = None) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    if counter is None:  # under valgrind, RSS is valgrind's as much as the model's
        metrics["load_peak_rss_bytes"] = float(peak_rss_bytes())
    dtype = _DTYPES[spec.dtype.value]
    inputs, prompt_tokens = build_inputs(task, model.config, spec, dtype, device)
    generating = task in GENERATION_TASKS
    progress({"phase": "preparing"})
    prepared = _prepare(model, Context(spec, task, inputs, device, sync, workdir))
    metrics.update(prepared.metrics)
    # After quantizing: int8 weights are counted as what they store, not as float32.
    metrics["model_size_bytes"] = float(sum(
        tensor_bytes(t) for t in itertools.chain(model.parameters(), model.buffers())))
    step = prepared.step

    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    progress({"phase": "first call"})
    start = time.perf_counter_ns()
    step()
    if sync is not None:
        sync()
    first_call_s = (time.perf_counter_ns() - start) / 1e9
    if counter is None:  # instructions mode calibrates after its warm-up, instrumented
        step = _with_extra_compute(spec, model, step, None)
    progress({"phase": "warmup"})
    meter = NoiseMeter().start()
    if counter is not None:
        counted, samples, info = _count_instructions(spec, model, step, counter,
                                                     generating=generating, progress=progress)
        noise = meter.stop()
        metrics.update(counted)
        return {"resolved_task": task.value, "metrics": metrics, "samples": samples,
                "measurement": info.model_dump(mode="json"),
                "noise": noise.model_dump(mode="json")}
    energy = EnergyMeter(device.type, device.index)
    measured = measure(step, spec.measurement, sync=sync, on_progress=progress,
                       region=energy.region() if energy.available else None)
    noise = meter.stop(gpu=_nvml_state(device) or None)

    latencies = [ns / 1e9 for ns in measured.samples_ns]
    summary = summarize(latencies)
    metrics.update(_timed_metrics(summary, first_call_s),
                   throughput_samples_per_second=spec.batch_size / summary.p50)
    if declarations.get(spec.backend).compiles_on_first_call:  # e.g. inductor
        metrics["compile_time_seconds"] = max(first_call_s - summary.p50, 0.0)
    if prompt_tokens and not generating:
        metrics["throughput_input_tokens_per_second"] = (spec.batch_size * prompt_tokens
                                                         / summary.p50)
    if generating:  # exactly new_tokens per sequence (generation.make_step), prefill included
        metrics["generated_tokens_per_second"] = (spec.batch_size * spec.new_tokens
                                                  / summary.p50)
    metrics.update(_energy_metrics(energy.joules, len(latencies),
                                   spec.new_tokens * spec.batch_size if generating else 0))
    samples = {"latency_seconds": latencies}
    if prepared.outputs is not None:
        samples.update(outputs_fingerprint(prepared.outputs(), generating))
    if generating:
        token_metrics, token_samples = generation.token_metrics(
            measured.payloads, spec.batch_size, prompt_tokens)
        metrics.update(token_metrics)
        samples.update(token_samples)
    return _body(task, device, metrics, samples, measured=measured, noise=noise)


# ---------------------------------------------------------------------------------------------
# Continuous batching (collector/adapters/measure/tasks/batching.py)


def _measure_batching(spec: BenchmarkSpec, model: Any, task: Task, device: torch.device, *,
                      sync: Callable[[], None] | None,
                      progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One batch of the N requests per iteration, through measure() like every benchmark
    (warm-up, convergence, noise probe). The latency_* metrics are therefore the wall time of
    a whole batch (submission of the first request to the last one's last token); the
    per-request figures (TTFT, ITL, TPOT, request latency) are pooled over the measured
    batches, and the rates are over their summed wall time."""
    impossible = capabilities.problem(spec, task)
    if impossible is None and _task_of(type(model).__name__) is not Task.TEXT_GENERATION:
        impossible = ("task", f"batching needs a causal language model; "
                      f"{type(model).__name__} is not one")
    if impossible is not None:
        raise WorkerFailure(FailureKind.EXCEPTION, impossible[1])
    metrics = {"load_peak_rss_bytes": float(peak_rss_bytes())}
    model = quantize(model, spec)
    metrics["model_size_bytes"] = float(sum(
        tensor_bytes(t) for t in itertools.chain(model.parameters(), model.buffers())))
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    progress({"phase": "first call"})
    # The first call includes creating the manager (its cache, its static tensors) and its
    # warm-up, where compile and CUDA graphs do most of their work.
    start = time.perf_counter_ns()
    runner = batching.BatchRunner(model, spec)
    try:
        runner.step()
        if sync is not None:
            sync()
        first_call_s = (time.perf_counter_ns() - start) / 1e9
        progress({"phase": "warmup"})
        meter = NoiseMeter().start()
        energy = EnergyMeter(device.type, device.index)
        measured = measure(runner.step, spec.measurement, sync=sync, on_progress=progress,
                           region=energy.region() if energy.available else None)
        noise = meter.stop(gpu=_nvml_state(device) or None)
        blocks = runner.kv_cache_blocks
    finally:
        runner.close()
    outcomes: list[batching.BatchOutcome] = measured.payloads
    latencies = [ns / 1e9 for ns in measured.samples_ns]
    summary = summarize(latencies)
    run = summarise([r for o in outcomes for r in o.records], duration_s=sum(latencies),
                    slos=SLOs())
    tokens_per_batch = sum(r.output_tokens for r in runner.requests)
    metrics.update(_timed_metrics(summary, first_call_s))
    # Without SLOs every successful request is "good": goodput would repeat the request
    # rate, and a batch has no client overhead or request timeouts.
    metrics.update({k: v for k, v in run.metrics.items()
                    if not k.startswith("goodput") and k not in (
                        "client_overhead_seconds", "request_timeout_ratio")})
    if declarations.get(spec.backend).compiles_on_first_call:
        metrics["compile_time_seconds"] = max(first_call_s - summary.p50, 0.0)
    if blocks is not None:
        metrics["kv_cache_blocks"] = float(blocks)
    peaks = [o.kv_peak_usage for o in outcomes]
    if peaks and all(p is not None for p in peaks):
        metrics["kv_cache_peak_usage_ratio"] = max(p for p in peaks if p is not None)
    metrics.update(_energy_metrics(energy.joules, len(latencies), tokens_per_batch))
    return _body(task, device, metrics, {"latency_seconds": latencies, **run.samples},
                 measured=measured, noise=noise)
