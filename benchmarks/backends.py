"""Backends compared: eager vs torch.compile vs ONNX Runtime vs OpenVINO vs int8 (torchao), on
bert-tiny and a mid-sized synthetic encoder at batch 1 and 8, measured interleaved in one run.

Models (BertForSequenceClassification, random weights from the collector's synthetic source,
sequence length 128, threads 1 as in configs/default.yml):

  bert-tiny  exactly configs/default.yml's: 2 layers x 128 hidden, 4 heads, intermediate 256;
  mid        6 layers x 384 hidden, 6 heads, intermediate 1536 (otherwise the same config).

Variants: backend eager, compile, onnxruntime, openvino; eager + quantization int8-dynamic;
eager + int8-weight-only (--no-weight-only drops it). Batch sizes 1 and 8.

The specs come from the collector's own config loader (a temporary YAML file read by
collector.adapters.config.load_config, with configs/default.yml's defaults and `repetitions: 1`),
and each one runs in a fresh worker process through the collector's runner
(collector.adapters.measure.run_benchmark with one WorkerPool), as `run-once` runs it. Every round
runs every (model, batch, variant) once; the order is rotated by a different offset each round
and mirrored every other round, so a slow minute of the shared machine hits all variants.
After each round the outputs' drift of every result against the eager result of the same
model and batch in that round is computed by collector.analysis.numerics.with_drift (what run-once
stores: output_max_rel_diff_ratio, output_top1_agreement_ratio).

Reported per model x batch and variant: the p50 latency (median over rounds of the stored
latency_p50_seconds), its ratio to eager's p50 of the same round (median over rounds, and
[min, max] over rounds), the one-off cost (export_time_seconds for ONNX Runtime / OpenVINO,
compile_time_seconds and first_call_seconds for compile; first_call_seconds for the
others; the worker's figures: compile time is the first call minus p50, with a fresh Inductor
cache per worker; --json keeps every round's value), and the median drift. A ratio below 1
is faster than eager. Failures are counted and their first message is printed.

    .venv/bin/python benchmarks/backends.py [--rounds 3] [--max-duration-s 2]
        [--models bert-tiny,mid] [--batches 1,8] [--no-weight-only] [--json]
    .venv/bin/python benchmarks/backends.py --table-from OUT.json   # the table of a --json run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from collector.adapters.config import load_config
from collector.adapters.host import capture_host
from collector.adapters.measure import WorkerPool, run_benchmark
from collector.analysis.numerics import with_drift
from collector.domain.model import BenchmarkResult, BenchmarkSpec, RunResult
from collector.version import __version__

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yml"
SEQUENCE_LENGTH = 128
BASE_MODEL: dict[str, Any] = {"num_hidden_layers": 2, "hidden_size": 128,
                              "num_attention_heads": 4, "intermediate_size": 256,
                              "vocab_size": 4096, "num_labels": 2}
MODELS: dict[str, dict[str, Any]] = {
    "bert-tiny": BASE_MODEL,
    "mid": {**BASE_MODEL, "num_hidden_layers": 6, "hidden_size": 384,
            "num_attention_heads": 6, "intermediate_size": 1536},
}
BACKENDS = ("eager", "compile", "onnxruntime", "openvino")
QUANTIZED = ("int8-dynamic", "int8-weight-only")
COLD_KEYS = ("export_time_seconds", "compile_time_seconds", "first_call_seconds")
DRIFT_KEYS = ("output_max_rel_diff_ratio", "output_top1_agreement_ratio")


def variant_of(spec: BenchmarkSpec) -> str:
    """eager, compile, onnxruntime, openvino, int8-dynamic or int8-weight-only."""
    quantization = spec.quantization.value
    return spec.backend if quantization == "none" else quantization


def model_of(spec: BenchmarkSpec) -> str:
    return spec.name.split(".", 1)[0]


def write_config(path: Path, models: Sequence[str], batches: Sequence[int],
                 quantizations: Sequence[str], max_duration_s: float | None) -> None:
    """A config with configs/default.yml's defaults, one repetition per spec (the rounds
    are the repetitions here), and one benchmark per model and variant family."""
    defaults = YAML(typ="safe").load(DEFAULT_CONFIG.read_text(encoding="utf-8"))["defaults"]
    measurement = dict(defaults.get("measurement", {}))
    measurement["repetitions"] = 1
    if max_duration_s is not None:
        measurement["max_duration_s"] = max_duration_s
        measurement["min_duration_s"] = min(measurement.get("min_duration_s", 0.5),
                                            max_duration_s)
    defaults["measurement"] = measurement
    benchmarks: list[dict[str, Any]] = []
    for name in models:
        model = {"source": "synthetic", "architecture": "BertForSequenceClassification",
                 "config": MODELS[name]}
        benchmarks.append({"name": f"{name}.backends", "model": model,
                           "sequence_length": SEQUENCE_LENGTH,
                           "matrix": {"backend": list(BACKENDS), "batch_size": list(batches)}})
        if quantizations:
            benchmarks.append({"name": f"{name}.int8", "model": model,
                               "sequence_length": SEQUENCE_LENGTH,
                               "matrix": {"quantization": list(quantizations),
                                          "batch_size": list(batches)}})
    document = {"version": 1, "defaults": defaults,
                "suites": {"backends": {"description": "benchmarks/backends.py",
                                        "benchmarks": benchmarks}}}
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as stream:
        yaml.dump(document, stream)


def round_order(count: int, round_index: int, rounds: int) -> list[int]:
    """Round r: the specs rotated by r * count / rounds, reversed on odd rounds."""
    shift = (round_index * count) // max(rounds, 1)
    order = [(i + shift) % count for i in range(count)]
    return order[::-1] if round_index % 2 else order


def with_round_drift(results: list[BenchmarkResult], env_host: str) -> list[BenchmarkResult]:
    """The round's results with their drift against the same round's eager result of the same
    workload, computed by the collector's own with_drift on a RunResult of the round."""
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        return results
    run = RunResult(run_id=uuid.uuid4().hex, suite="backends", host=env_host,
                    started_at=min(r.started_at for r in results),
                    finished_at=max(r.finished_at for r in results),
                    collector_version=__version__, results=tuple(results))
    return list(with_drift(run).results)


def run_rounds(specs: Sequence[BenchmarkSpec], rounds: int,
               log: Any) -> list[list[BenchmarkResult]]:
    env = capture_host()
    done: list[list[BenchmarkResult]] = []
    with WorkerPool() as pool:
        for r in range(rounds):
            order = round_order(len(specs), r, rounds)
            results: list[BenchmarkResult | None] = [None] * len(specs)
            for n, index in enumerate(order, 1):
                spec = specs[index]
                t0 = time.monotonic()
                result = run_benchmark(pool, spec, env)
                results[index] = result
                p50 = result.metrics.get("latency_p50_seconds")
                shown = f"{p50 * 1e3:.2f} ms" if p50 is not None else (
                    f"FAILED {result.failure.kind.value if result.failure else ''}")
                print(f"round {r + 1}/{rounds} [{n}/{len(specs)}] {model_of(spec)} "
                      f"b{spec.batch_size} {variant_of(spec)}: {shown} "
                      f"({time.monotonic() - t0:.1f} s)", file=log, flush=True)
            got = [x for x in results if x is not None]
            done.append(with_round_drift(got, env.host))
    return done


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


Key = tuple[str, int, str]  # model, batch size, variant


def key_of(result: BenchmarkResult) -> Key:
    return (model_of(result.spec), result.spec.batch_size, variant_of(result.spec))


def row_for(key: Key, rounds: list[list[BenchmarkResult]]) -> dict[str, Any]:
    """The figures of one (model, batch, variant) over the rounds."""
    model, batch, variant = key
    p50s: list[float] = []
    ratios: list[float] = []
    extra: dict[str, list[float]] = {k: [] for k in (*COLD_KEYS, *DRIFT_KEYS)}
    other_cpu: list[float] = []
    failures: list[str] = []
    for results in rounds:
        by_key = {key_of(r): r for r in results}
        result = by_key.get(key)
        eager = by_key.get((model, batch, "eager"))
        if result is None:
            continue
        if result.status != "ok":
            message = result.failure.message if result.failure is not None else ""
            failures.append((message.splitlines() or ["failed"])[0][:200])
            continue
        p50 = result.metrics.get("latency_p50_seconds")
        base = (eager.metrics.get("latency_p50_seconds")
                if eager is not None and eager.status == "ok" else None)
        if p50 is not None:
            p50s.append(p50)
            if base:
                ratios.append(p50 / base)
        for k, values in extra.items():
            if k in result.metrics:
                values.append(result.metrics[k])
        if result.noise is not None:
            other_cpu.append(result.noise.other_cpu_fraction)
    return {
        "model": model, "batch_size": batch, "variant": variant,
        "rounds_ok": len(p50s), "failures": failures,
        "p50_seconds": _median(p50s), "p50_seconds_by_round": p50s,
        "ratio_to_eager": _median(ratios), "ratio_to_eager_by_round": ratios,
        "ratio_min": min(ratios) if ratios else None,
        "ratio_max": max(ratios) if ratios else None,
        **{k: _median(v) for k, v in extra.items()},
        **{f"{k}_by_round": v for k, v in extra.items()},
        "other_cpu_fraction_median": _median(other_cpu),
    }


def summarize(rounds: list[list[BenchmarkResult]]) -> list[dict[str, Any]]:
    """One row per (model, batch, variant), in model, batch, variant order."""
    variants = [*BACKENDS, *QUANTIZED]
    keys = sorted({key_of(r) for results in rounds for r in results},
                  key=lambda k: (list(MODELS).index(k[0]), k[1], variants.index(k[2])))
    return [row_for(key, rounds) for key in keys]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.2f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cold(row: dict[str, Any], key: str) -> str:
    """Median seconds, with [min, max] over rounds when they differ at 0.1 s."""
    values = row.get(f"{key}_by_round") or []
    median = _s(row[key])
    if len(values) > 1 and f"{min(values):.1f}" != f"{max(values):.1f}":
        return f"{median} [{min(values):.1f}, {max(values):.1f}]"
    return median


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | batch | variant | p50 ms | ratio to eager (median [min, max]) | "
             "export s | compile s | first call s (median) | max rel diff | top-1 agree | failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = ("-" if row["ratio_to_eager"] is None else
                 f"{row['ratio_to_eager']:.2f} [{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]")
        rel = row["output_max_rel_diff_ratio"]
        top1 = row["output_top1_agreement_ratio"]
        lines.append(
            f"| {row['model']} | {row['batch_size']} | {row['variant']} | "
            f"{_ms(row['p50_seconds'])} | {ratio} | {_cold(row, 'export_time_seconds')} | "
            f"{_cold(row, 'compile_time_seconds')} | {_s(row['first_call_seconds'])} | "
            f"{'-' if rel is None else f'{rel:.1e}'} | "
            f"{'-' if top1 is None else f'{top1:.0%}'} | {len(row['failures']) or ''} |")
    failed = [r for r in rows if r["failures"]]
    for row in failed:
        lines.append(f"\n{row['model']} b{row['batch_size']} {row['variant']} failed "
                     f"{len(row['failures'])}x: {row['failures'][0]}")
    return "\n".join(lines)


def footer(summary: dict[str, Any]) -> str:
    m = summary["measurement"]
    return (f"{summary['rounds']} rounds x {summary['specs']} specs, wall "
            f"{summary['wall_seconds'] / 60:.1f} min; loadavg before "
            f"{summary['loadavg_before']}, after {summary['loadavg_after']}; measurement "
            f"min/max_duration_s {m['min_duration_s']}/{m['max_duration_s']}, "
            f"threads {summary['threads']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-duration-s", type=float, default=None,
                        help="override measurement max_duration_s (default: the default "
                             "config's)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--no-weight-only", action="store_true",
                        help="drop the int8-weight-only variant")
    parser.add_argument("--json", action="store_true", help="machine output on stdout")
    parser.add_argument("--table-from", type=Path, metavar="JSON",
                        help="print the table of an earlier --json output; runs nothing")
    args = parser.parse_args(argv)
    if args.table_from is not None:
        summary = json.loads(args.table_from.read_text(encoding="utf-8"))
        print(markdown(summary["rows"]))
        print(f"\n{footer(summary)}")
        return 0
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown or args.rounds < 1:
        parser.error(f"unknown model(s) {unknown}" if unknown else "--rounds must be >= 1")
    batches = [int(b) for b in args.batches.split(",") if b]
    quantizations = QUANTIZED[:1] if args.no_weight_only else QUANTIZED
    loadavg_before = Path("/proc/loadavg").read_text().strip()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backends.yml"
        write_config(path, models, batches, quantizations, args.max_duration_s)
        config = load_config(path)
        specs = list(config.suites[0].benchmarks)
        rounds = run_rounds(specs, args.rounds, sys.stderr)
    wall = time.monotonic() - started
    loadavg_after = Path("/proc/loadavg").read_text().strip()
    rows = summarize(rounds)
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rounds": args.rounds, "specs": len(specs), "wall_seconds": wall,
        "loadavg_before": loadavg_before, "loadavg_after": loadavg_after,
        "cpu_count": os.cpu_count(),
        "measurement": specs[0].measurement.model_dump(mode="json"),
        "threads": specs[0].threads, "sequence_length": SEQUENCE_LENGTH,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(markdown(rows))
        print(f"\n{footer(summary)}")
    return 0 if all(not r["failures"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
