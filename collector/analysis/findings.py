"""Bottleneck analysis from measured data: findings that cite the measurement they come from.

Each finding is computed from a set of successful results (one side: files, stored runs),
never written as fixed prose:

- thresholds (configurable): high latency, high memory, low throughput;
- backend and variant speedups: every backend, quantization or attention variant of a
  workload against its eager result with the same model, shapes, dtype and device
  ("onnxruntime is 1.8x as fast as eager for bert-tiny at batch 1 on this host: 0.9 ms
  vs 1.6 ms");
- torch.compile's payoff: the time it saves per call against its compile time;
- batch scaling efficiency: throughput at batch N over N times that at batch 1;
- prefill share of a generate() call (time to first token over the call);
- memory per byte of weights (peak RSS over the model's size);
- first-call cost against the steady state;
- CPU noise during the run (the noise probe: other processes' share of the CPU).

A report reads findings run by run (`analyse_runs`: a busy run is never averaged with a
quiet one) and grouped (`group`): one line for a pattern many workloads of a run share,
with the range of its values, citing the run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from collector.analysis.compare import value_text
from collector.domain import backends
from collector.domain.catalogue import BUSY_CPU_FRACTION
from collector.domain.model import BenchmarkResult, Quantization
from collector.domain.series import workload_label
from collector.domain.stats import percentile

Severity = Literal["info", "warning"]
# What tells variants of one workload apart: the backend (and its own settings), quantization
# and attention (its SDPA kernel and the Hub kernels included).
_VARIANT_KEYS = ("backend", "quantization", "attn_implementation", "sdpa_backend", "kernels",
                 *backends.with_settings())


@dataclass(frozen=True)
class Thresholds:
    """Where a value becomes a finding on its own (the report's `thresholds`)."""

    high_latency_s: float = 0.1  # p50 above 100 ms
    high_memory_bytes: float = 4 * 2**30  # peak RSS above 4 GiB
    low_throughput: float = 10.0  # below 10 samples/s
    noisy_cpu_fraction: float = BUSY_CPU_FRACTION  # other processes' CPU share while measuring
    cold_first_call: float = 2.0  # first call over p50 from which it is a finding at all
    slow_first_call: float = 10.0  # first call over p50 from which it is a warning
    poor_batch_scaling: float = 0.5  # throughput gain over batch size gain


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: Severity
    workload: str
    text: str  # what was found, citing the measurement
    values: dict[str, float]
    run: str | None = None  # the run it was found in (`analyse_runs`)


# Each kind: what a group of its findings is called, the value that sums them up and how
# that value reads.
_KINDS: dict[str, tuple[str, str, str]] = {
    "high_latency": ("p50 latency above the threshold", "latency_p50_seconds", "ms"),
    "high_memory": ("peak RSS above the threshold", "peak_rss_bytes", "MiB"),
    "low_throughput": ("throughput below the threshold", "throughput_samples_per_second",
                       "rate"),
    "memory_per_weight": ("peak RSS against the model's weights (the rest is the runtime, "
                          "activations and the worker)", "ratio", "x"),
    "first_call": ("the first call against the steady state", "ratio", "x"),
    "prefill_share": ("prefill's share of a generate() call", "share", "%"),
    "compile_time": ("torch.compile time on the first call", "compile_time_seconds", "s"),
    "noisy_run": ("measured while other processes used the CPU", "other", "%"),
    "variant_speedup": ("a variant's speed against eager (above 1x: faster)", "speedup",
                        "x"),
    "batch_scaling": ("batch scaling (share of linear)", "efficiency", "%"),
}


@dataclass(frozen=True)
class FindingGroup:
    """Findings of one kind and severity in one run: one line for a pattern many
    workloads share."""

    kind: str
    severity: Severity
    run: str | None
    members: tuple[Finding, ...]

    @property
    def text(self) -> str:
        if len(self.members) == 1:
            return self.members[0].text
        title, key, unit = _KINDS.get(self.kind, (self.kind, "", ""))
        values = [f.values[key] for f in self.members if key in f.values]
        span = ""
        if values:
            low, high = _shown(min(values), unit), _shown(max(values), unit)
            span = f": {low}" if low == high else f": {low} to {high}"
        return f"{title}{span}, for {len(self.members)} workloads"

    @property
    def workloads(self) -> list[str]:
        return [f.workload for f in self.members]


def _shown(value: float, unit: str) -> str:
    if unit == "ms":
        return _ms(value)
    if unit == "MiB":
        return value_text("peak_rss_bytes", value)
    if unit == "%":
        return f"{value:.0%}"
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.1f}"


def group(findings: Sequence[Finding]) -> list[FindingGroup]:
    """One group per run, kind and severity, warnings first, in the order found."""
    groups: dict[tuple[str | None, str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.run, finding.severity, finding.kind), []).append(finding)
    ordered = sorted(groups.items(), key=lambda item: (item[0][1] != "warning",
                                                       item[0][0] or "", item[0][2]))
    return [FindingGroup(kind, severity, run, tuple(members))  # type: ignore[arg-type]  # Severity
            for (run, severity, kind), members in ordered]


def _median(results: Sequence[BenchmarkResult], metric: str) -> float | None:
    values = sorted(r.metrics[metric] for r in results if metric in r.metrics)
    return percentile(values, 50) if values else None


def _base_key(result: BenchmarkResult) -> str:
    """The workload without its backend and variant settings."""
    identity = {k: v for k, v in result.spec.identity().items() if k not in _VARIANT_KEYS}
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def _variant(result: BenchmarkResult) -> str:
    spec = result.spec
    parts = [spec.backend]
    if spec.quantization is not Quantization.NONE:
        parts.append(spec.quantization.value)
    if spec.attention is not None:
        parts.append(f"attn={spec.attention}")
    settings = spec.backend_settings()
    if settings is not None:  # the backend's own settings that are not its defaults
        parts += [str(value) for value in settings.model_dump(
            mode="json", exclude_defaults=True).values()]
    return " ".join(parts)


def _where(result: BenchmarkResult, *, variant: bool = True) -> str:
    spec = result.spec
    name = _variant(result)
    what = spec.name if not variant or name == backends.REFERENCE else f"{spec.name} ({name})"
    return (f"{what} at batch {spec.batch_size}, sequence {spec.sequence_length}, "
            f"{spec.dtype.value} on {spec.device} of {result.environment.host}")


def _ms(value: float) -> str:
    return value_text("latency_p50_seconds", value)


def analyse(results: Sequence[BenchmarkResult],
            thresholds: Thresholds | None = None) -> list[Finding]:
    """Every finding the successful `results` support, warnings first."""
    limits = thresholds or Thresholds()
    ok = [r for r in results if r.status == "ok"]
    groups: dict[str, list[BenchmarkResult]] = {}
    for result in ok:
        groups.setdefault(workload_label(result), []).append(result)
    found = [*_variants(ok), *_batch_scaling(ok, limits)]
    for label, members in groups.items():
        found += list(_own(label, members, limits))
    return sorted(found, key=lambda f: (f.severity != "warning", f.kind, f.workload))


def analyse_runs(runs: Sequence[tuple[str, Sequence[BenchmarkResult]]],
                 thresholds: Thresholds | None = None) -> list[Finding]:
    """`analyse` run by run (each run named by the text given with it): never averaged
    across runs measured under different conditions."""
    return [dataclasses.replace(finding, run=name)
            for name, results in runs for finding in analyse(results, thresholds)]


def _own(label: str, members: list[BenchmarkResult], limits: Thresholds) -> Iterator[Finding]:
    """Findings about one workload by itself."""
    first = members[0]
    p50 = _median(members, "latency_p50_seconds")
    if p50 is not None and p50 > limits.high_latency_s:
        yield Finding("high_latency", "warning", label,
                      f"p50 latency {_ms(p50)} for {_where(first)}, above the "
                      f"{_ms(limits.high_latency_s)} threshold", {"latency_p50_seconds": p50})
    rss = _median(members, "peak_rss_bytes")
    if rss is not None and rss > limits.high_memory_bytes:
        yield Finding("high_memory", "warning", label,
                      f"peak RSS {value_text('peak_rss_bytes', rss)} for {_where(first)}, "
                      f"above {value_text('peak_rss_bytes', limits.high_memory_bytes)}",
                      {"peak_rss_bytes": rss})
    rate = _median(members, "throughput_samples_per_second")
    if rate is not None and rate < limits.low_throughput:
        yield Finding("low_throughput", "warning", label,
                      f"{rate:.1f} samples/s for {_where(first)}, below "
                      f"{limits.low_throughput:g}", {"throughput_samples_per_second": rate})
    size = _median(members, "model_size_bytes")
    if rss is not None and size:
        yield Finding("memory_per_weight", "info", label,
                      f"peak RSS is {rss / size:.1f}x the weights for {_where(first)}: "
                      f"{value_text('peak_rss_bytes', rss)} for "
                      f"{value_text('peak_rss_bytes', size)} of weights (the rest is the "
                      "runtime, activations and the worker)", {"ratio": rss / size})
    first_call = _median(members, "first_call_seconds")
    # torch.compile's first call is its compilation: the compile finding says it.
    # A first call at the steady state's pace is no finding; twice it, a cold cost to know.
    if first_call is not None and p50 and first_call >= limits.cold_first_call * p50 and not (
            backends.get(first.spec.backend).compiles_on_first_call):
        severity: Severity = "warning" if first_call / p50 > limits.slow_first_call else "info"
        yield Finding("first_call", severity, label,
                      f"the first call takes {first_call / p50:.1f}x the steady state for "
                      f"{_where(first)}: {_ms(first_call)} vs {_ms(p50)}",
                      {"first_call_seconds": first_call, "latency_p50_seconds": p50,
                       "ratio": first_call / p50})
    ttft = _median(members, "time_to_first_token_p50_seconds")
    if ttft is not None and p50:
        share = ttft / p50
        yield Finding("prefill_share", "info", label,
                      f"prefill (to the first token) is {share:.0%} of a generate() call for "
                      f"{_where(first)}: {_ms(ttft)} of {_ms(p50)}; decoding the "
                      f"{first.spec.new_tokens} new tokens is the rest",
                      {"share": share, "time_to_first_token_p50_seconds": ttft})
    compile_s = _median(members, "compile_time_seconds")
    if compile_s is not None:
        yield Finding("compile_time", "info", label,
                      f"torch.compile took {compile_s:.2f} s on the first call for "
                      f"{_where(first)}", {"compile_time_seconds": compile_s})
    noisy = [r.noise.other_cpu_fraction for r in members
             if r.noise is not None and r.noise.other_cpu_fraction is not None]
    if noisy and max(noisy) >= limits.noisy_cpu_fraction:
        yield Finding("noisy_run", "warning", label,
                      f"other processes used {max(noisy):.0%} of the CPU while {_where(first)} "
                      "was measured: its times are another machine's", {"other": max(noisy)})


def _variants(ok: list[BenchmarkResult]) -> Iterator[Finding]:
    """Each backend or variant against eager on the same base workload."""
    bases: dict[str, dict[str, list[BenchmarkResult]]] = {}
    for result in ok:
        bases.setdefault(_base_key(result), {}).setdefault(_variant(result), []).append(result)
    for variants in bases.values():
        eager = variants.get(backends.REFERENCE)
        if eager is None or len(variants) < 2:
            continue
        base = _median(eager, "latency_p50_seconds")
        if not base:
            continue
        for name, members in sorted(variants.items()):
            p50 = _median(members, "latency_p50_seconds")
            if name == backends.REFERENCE or not p50:
                continue
            speedup = base / p50
            text = (f"{name} is {speedup:.2f}x as fast as eager for "
                    f"{_where(members[0], variant=False)}: "
                    f"{_ms(p50)} vs {_ms(base)}")
            values = {"speedup": speedup, "latency_p50_seconds": p50, "eager_p50": base}
            compile_s = _median(members, "compile_time_seconds")
            if compile_s and base > p50 and backends.get(
                    members[0].spec.backend).compiles_on_first_call:
                calls = compile_s / (base - p50)
                text += f"; its {compile_s:.2f} s of compilation pays off after {calls:,.0f} calls"
                values["payoff_calls"] = calls
            export_s = _median(members, "export_time_seconds")
            if export_s is not None:
                text += f"; export took {export_s:.2f} s"
            drift = _median(members, "output_max_rel_diff_ratio")
            if drift is not None and drift > 1e-3:
                text += f", and its outputs differ from eager's by up to {drift:.1%}"
            text += _int8_note(members[0], speedup)
            yield Finding("variant_speedup", "info", workload_label(members[0]), text, values)


def _int8_note(result: BenchmarkResult, speedup: float) -> str:
    """Why an int8-dynamic variant runs as fast as it does: the int8 matmul it ran
    (collector/adapters/measure/quantize.py), and where it is slower, the fixed cost that
    explains it."""
    path = result.environment.int8_matmul
    if result.spec.quantization is not Quantization.INT8_DYNAMIC or path is None:
        return ""
    note = f" (its int8 matmuls: {path}"
    if speedup < 1:
        note += ("; int8-dynamic quantizes every call's activations first, a fixed cost per "
                 "layer that narrow layers do not earn back: it pays compiled, or on wider "
                 "models")
    return note + ")"


def _batch_scaling(ok: list[BenchmarkResult], limits: Thresholds) -> Iterator[Finding]:
    """Throughput at each batch size against batch 1 of the same workload."""
    by_base: dict[str, dict[int, list[BenchmarkResult]]] = {}
    for result in ok:
        identity = {k: v for k, v in result.spec.identity().items() if k != "batch_size"}
        key = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        by_base.setdefault(key, {}).setdefault(result.spec.batch_size, []).append(result)
    for sizes in by_base.values():
        if 1 not in sizes or len(sizes) < 2:
            continue
        one = _median(sizes[1], "throughput_samples_per_second")
        if not one:
            continue
        for batch, members in sorted(sizes.items()):
            rate = _median(members, "throughput_samples_per_second")
            if batch == 1 or not rate:
                continue
            efficiency = rate / (batch * one)
            severity: Severity = "warning" if efficiency < limits.poor_batch_scaling else "info"
            yield Finding("batch_scaling", severity, workload_label(members[0]),
                          f"batch {batch} gives {rate / one:.2f}x the throughput of batch 1 "
                          f"for {_where(members[0])} ({efficiency:.0%} of linear): "
                          f"{rate:,.1f} vs {one:,.1f} samples/s",
                          {"efficiency": efficiency, "throughput": rate, "batch1": one})
