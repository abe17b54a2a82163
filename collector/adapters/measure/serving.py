"""A serving benchmark, run in the isolated worker: start the server (or reach the external
endpoint), drive it with the load generator (collector/adapters/load/), and turn what came
back into the worker's result body.

The server the collector starts runs in the worker's interpreter and package environment
(`{python}`), so an A/B or a bisect across package versions changes the server's versions.
Its process tree's CPU is counted as the measurement's own by the noise probe (the server's
work is what is measured, not a neighbour's). Failures, each a recorded failure with its
cause, never a traceback:

- server_unavailable: it could not start, exited before it was ready, was not ready in time,
  or exited during the run (the end of its log is kept in the failure's detail);
- requests_failed: not one request of the run succeeded (the first errors are named);
- client_bound: the load generator, not the server, was the bottleneck.

Requests that fail in a run that otherwise works are counted (request_error_ratio,
request_timeout_ratio) and never enter a latency figure.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.adapters.host import NoiseMeter
from collector.adapters.load.client import Target
from collector.adapters.load.loadgen import ClientBound, LoadRun, SweepResult, run_load, sweep
from collector.adapters.measure.isolation import WorkerFailure
from collector.adapters.measure.server import ServerProcess, ServerUnavailable, free_port
from collector.domain.load_stats import RequestRecord
from collector.domain.model import (
    BenchmarkSpec,
    FailureKind,
    HubSource,
    LocalSource,
    MeasurementInfo,
    SyntheticSource,
)
from collector.domain.serving import SWEEP_SAMPLES, Endpoint, ProfileKind, Serving
from collector.domain.stats import median_ci

LOOPBACK = "127.0.0.1"
# What each point of a sweep's curve holds (collector.domain.serving.SWEEP_SAMPLES names
# the raw samples they are kept as, one value per point, lowest rate first).
_SWEEP_VALUES: dict[str, Callable[[LoadRun], float]] = {
    "offered rate": lambda run: run.target_rate or 0.0,
    "throughput": lambda run: run.summary.metrics["request_throughput_per_second"],
    "goodput": lambda run: run.summary.metrics["goodput_requests_per_second"],
    "p99 TTFT": lambda run: run.summary.metrics.get("time_to_first_token_p99_seconds", 0.0),
    "p50 TPOT": lambda run: run.summary.metrics.get("time_per_output_token_p50_seconds", 0.0),
    "p99 request latency":
        lambda run: run.summary.metrics.get("request_latency_p99_seconds", 0.0),
}
_PLACEHOLDER = re.compile(r"\{(python|model|host|port|device|dtype)\}")

Progress = Callable[[dict[str, Any]], None]


def command_line(command: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """The server's argument list with its placeholders filled in (nothing else in braces is
    touched: a JSON argument stays as written)."""
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in command]


def run(spec: BenchmarkSpec, workdir: Path, checkpoint: Callable[[], str],
        progress: Progress, api_key: str | None = None) -> dict[str, Any]:
    """The worker's result body for a serving benchmark. `checkpoint` puts the model's
    files on disk (only a started server needs them); `api_key`: an endpoint's key, read
    by the parent (collector/adapters/load/keys.py)."""
    serving = spec.serving
    assert serving is not None
    if serving.endpoint is not None:
        target = Target(base_url=serving.endpoint.url.rstrip("/"), api=serving.api,
                        model=_served_name(spec, serving.endpoint),
                        api_key=api_key)
        body = _measure(spec, serving, target, NoiseMeter(), progress, alive=None)
        body["environment"] = {"server": _reported_server(target)}
        return body
    assert serving.server is not None
    progress({"phase": "starting server"})
    path = checkpoint()
    _ensure_tokenizer(spec, Path(path))
    port = free_port(LOOPBACK)
    command = command_line(serving.server.command, {
        "python": sys.executable, "model": path, "host": LOOPBACK, "port": str(port),
        "device": spec.device, "dtype": spec.dtype.value})
    base = f"http://{LOOPBACK}:{port}"
    with ServerProcess(command, log_path=workdir / "server.log", cwd=workdir) as server:
        try:
            ready_s = server.wait_ready(base + serving.server.ready_path,
                                        serving.server.ready_timeout_s)
        except ServerUnavailable as exc:
            raise WorkerFailure(FailureKind.SERVER_UNAVAILABLE, str(exc),
                                detail=server.log_tail() or None) from None
        target = Target(base_url=base, model=path, api=serving.api)
        body = _measure(spec, serving, target, NoiseMeter(ours=server.cpu_seconds), progress,
                        alive=server)
        body["metrics"]["load_time_seconds"] = ready_s
    body["environment"] = {"server": _started_server(command)}
    return body


def _measure(spec: BenchmarkSpec, serving: Serving, target: Target, meter: NoiseMeter,
             progress: Progress, *, alive: ServerProcess | None) -> dict[str, Any]:
    progress({"phase": "measuring", "iterations": 0})
    meter.start()
    try:
        if serving.profile.kind is ProfileKind.SWEEP:
            result: LoadRun | SweepResult = sweep(target, serving)
        else:
            result = run_load(target, serving)
    except ClientBound as exc:
        raise WorkerFailure(FailureKind.CLIENT_BOUND, str(exc)) from None
    noise = meter.stop()
    if alive is not None and not alive.alive():
        raise WorkerFailure(FailureKind.SERVER_UNAVAILABLE,
                            f"the server exited during the run ({_runs(result)})",
                            detail=alive.log_tail() or None)
    runs = [result] if isinstance(result, LoadRun) else [result.throughput, *result.points]
    records = [r for run in runs for r in run.records]
    if not any(r.outcome == "ok" for r in records):
        raise WorkerFailure(FailureKind.REQUESTS_FAILED, _no_success(records))
    if isinstance(result, LoadRun):
        metrics = dict(result.summary.metrics)
        samples = {k: list(v) for k, v in result.summary.samples.items()}
        stop = result.stop_reason
    else:
        metrics = _sweep_metrics(result)
        samples = {SWEEP_SAMPLES[point]: [float(value(run)) for run in result.points]
                   for point, value in _SWEEP_VALUES.items()}
        stop = "requests"
    info = _measurement(spec, serving, records, stop,
                        sum(run.duration_s for run in runs),
                        interval=isinstance(result, LoadRun))
    return {"resolved_task": spec.task.value, "metrics": metrics, "samples": samples,
            "measurement": info.model_dump(mode="json"),
            "noise": noise.model_dump(mode="json")}


def _runs(result: LoadRun | SweepResult) -> str:
    if isinstance(result, LoadRun):
        return f"{result.sent} requests sent"
    return f"{len(result.points)} sweep points run"


def _sweep_metrics(result: SweepResult) -> dict[str, float]:
    """A sweep's own figures; its curve is in the samples (_SWEEP_VALUES)."""
    runs = [result.throughput, *result.points]
    total = sum(len(run.records) for run in runs)
    metrics = {"max_request_throughput_per_second": result.max_throughput,
               "slo_max_rate_per_second": result.slo_max_rate}
    if total:
        for outcome, name in (("error", "request_error_ratio"),
                              ("timeout", "request_timeout_ratio")):
            metrics[name] = sum(r.outcome == outcome for run in runs
                                for r in run.records) / total
    return metrics


def _measurement(spec: BenchmarkSpec, serving: Serving, records: list[RequestRecord],
                 stop: str, duration_s: float, *, interval: bool) -> MeasurementInfo:
    """The run as a measurement: its requests are the iterations; converged when the
    median end-to-end latency's 95% interval is within the benchmark's target. A sweep
    (`interval` False) is read by its maximum throughput, one closed-loop run with no
    interval of its own: none is claimed."""
    latencies = sorted(r.e2e_s for r in records if r.outcome == "ok")
    if not interval:
        return MeasurementInfo(
            iterations=len(latencies), warmup_iterations=serving.warmup_requests,
            duration_s=duration_s, target_rel_ci=spec.measurement.target_rel_ci,
            achieved_rel_ci=None, converged=True, stop_reason="max_iterations")
    ci = median_ci(latencies, spec.measurement.confidence)
    achieved = ci.rel_half_width if ci is not None else None
    converged = achieved is not None and achieved <= spec.measurement.target_rel_ci
    return MeasurementInfo(
        iterations=len(latencies), warmup_iterations=serving.warmup_requests,
        duration_s=duration_s, target_rel_ci=spec.measurement.target_rel_ci,
        achieved_rel_ci=achieved if achieved is not None and achieved < float("inf")
        else None,
        converged=converged,
        stop_reason="converged" if converged else (
            "max_duration" if stop in ("duration", "saturated") else "max_iterations"))


def _no_success(records: list[RequestRecord]) -> str:
    errors = sum(r.outcome == "error" for r in records)
    timeouts = sum(r.outcome == "timeout" for r in records)
    first = next((r.error for r in records if r.error), None)
    text = (f"no request succeeded ({len(records)} sent: {errors} errors, {timeouts} "
            "timeouts)")
    return f"{text}; first: {first}" if first else text


def _served_name(spec: BenchmarkSpec, endpoint: Endpoint) -> str:
    if endpoint.model_name is not None:
        return endpoint.model_name
    if isinstance(spec.model, HubSource):
        return spec.model.id
    if isinstance(spec.model, LocalSource):
        return spec.model.path
    raise WorkerFailure(FailureKind.EXCEPTION, "an endpoint serving a synthetic model needs "
                        "serving.endpoint.model_name (the name the server knows it by)")


def _ensure_tokenizer(spec: BenchmarkSpec, path: Path) -> None:
    """A synthetic model is made servable (collector/adapters/measure/tokenizer.py: a
    tokenizer built offline, no end-of-sequence token); a local model must bring its own
    tokenizer."""
    if not isinstance(spec.model, SyntheticSource):
        return
    from transformers import AutoConfig

    from collector.adapters.measure.tokenizer import make_servable

    try:
        make_servable(path, AutoConfig.from_pretrained(str(path)))
    except (OSError, ValueError) as exc:
        raise WorkerFailure(FailureKind.MODEL_UNAVAILABLE,
                            f"no tokenizer for {spec.name}'s model: {exc}") from None


def _started_server(command: list[str]) -> str:
    """What serves, as the worker's interpreter has it installed."""
    if any("transformers" in arg for arg in command[:3]) and "serve" in command:
        import transformers

        return f"transformers serve {transformers.__version__}"
    return Path(command[0]).name[:200]


def _reported_server(target: Target) -> str | None:
    """An external server as it reports itself: vLLM-style GET /version, else the `Server`
    header of GET /v1/models (None when it says nothing)."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    for path in ("/version", "/v1/models"):
        # The configured endpoint's URL (http or https: the config's pattern says so).
        request = urllib.request.Request(target.base_url + path, headers=headers)  # noqa: S310
        with (contextlib.suppress(OSError, ValueError),
              urllib.request.urlopen(request, timeout=5) as answer):  # noqa: S310 - as above
            data = answer.read(4096)
            if path == "/version":
                version = json.loads(data).get("version")
                if isinstance(version, str) and version:
                    return f"version {version}"[:200]
            server = answer.headers.get("Server")
            if server:
                return str(server)[:200]
    return None
