"""Stability: how much does the reported p50 move between separate `collector run-once` calls?

Runs `python -m collector run-once --format json --no-progress` N times (default 5), each a
fresh process, on one benchmark, and reports every run's latency_p50_seconds, their mean and
the coefficient of variation (stdev / mean) across runs, with each run's achieved CI and the
noise probe's other_cpu_fraction. By default the benchmark is bert-tiny from
configs/default.yml at sequence_length 32, written to a temporary config with measurement
min_duration_s 1, max_duration_s 5, target_rel_ci 0.01, and torch's default thread count
unless --threads is given.

    .venv/bin/python benchmarks/stability.py [--runs 5] [--threads N] [--json]
    .venv/bin/python benchmarks/stability.py --config FILE --benchmark NAME [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_BENCHMARK = "bert-tiny"
DEFAULT_CONFIG = """\
version: 1
suites:
  stability:
    description: bert-tiny from configs/default.yml, seq 32
    defaults:
      device: cpu
      dtype: float32
      backend: eager
      timeout_s: 300
      measurement:
        warmup_iterations: 3
        min_iterations: 10
        min_duration_s: 1
        max_duration_s: 5
        target_rel_ci: 0.01
    benchmarks:
      - name: bert-tiny
        model:
          source: synthetic
          architecture: BertForSequenceClassification
          config: {num_hidden_layers: 2, hidden_size: 128, num_attention_heads: 4,
                   intermediate_size: 256, vocab_size: 4096, num_labels: 2}
        sequence_length: 32
"""
THREADS_LINE = "        threads: {threads}\n"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_once(config: str, benchmark: str) -> dict[str, Any]:
    """One fresh `collector run-once`; the first result's figures."""
    command = [sys.executable, "-m", "collector", "run-once", "--config", config,
               "--benchmark", benchmark, "--format", "json", "--no-progress"]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    try:
        document = json.loads(proc.stdout)
        results = [r for run in document["runs"] for r in run["results"]]
    except (json.JSONDecodeError, KeyError) as exc:
        raise SystemExit(f"run-once exited {proc.returncode} without a results document "
                         f"({exc}):\n{proc.stderr[-2000:]}") from None
    if not results:
        raise SystemExit(f"no benchmark matched {benchmark!r} in {config}")
    result = results[0]
    if result["status"] != "ok":
        raise SystemExit(f"benchmark failed: {result['failure']}")
    measurement = result["measurement"]
    return {
        "p50_s": result["metrics"]["latency_p50_seconds"],
        "achieved_rel_ci": measurement["achieved_rel_ci"],
        "iterations": measurement["iterations"],
        "stop_reason": measurement["stop_reason"],
        "other_cpu_fraction": result["noise"]["other_cpu_fraction"],
        "wall_s": wall,
        "matched_benchmarks": len(results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="number of run-once invocations")
    parser.add_argument("--config", help="configuration file (default: a temporary bert-tiny "
                                         "config)")
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK,
                        help="benchmark name or glob; the first match is reported")
    parser.add_argument("--threads", type=int,
                        help="torch threads for the temporary config (default: torch's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    if args.threads is not None and args.config is not None:
        parser.error("--threads applies to the temporary config only; set threads in FILE")
    load_start = loadavg()
    log = sys.stderr if args.json else sys.stdout

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="collector-stability-") as tmp:
        config = args.config
        if config is None:
            config = str(Path(tmp) / "stability.yml")
            text = DEFAULT_CONFIG
            if args.threads is not None:
                text += THREADS_LINE.format(threads=args.threads)
            Path(config).write_text(text, encoding="utf-8")
        for index in range(args.runs):
            run = run_once(config, args.benchmark)
            runs.append(run)
            ci = run["achieved_rel_ci"]
            print(f"run {index + 1}: p50 {run['p50_s'] * 1e3:.4f} ms  achieved CI "
                  f"{'-' if ci is None else f'{ci:.2%}'} ({run['stop_reason']}, "
                  f"n={run['iterations']})  other_cpu_fraction {run['other_cpu_fraction']:.3f}"
                  f"  wall {run['wall_s']:.1f} s", file=log)

    p50s = [r["p50_s"] for r in runs]
    mean = statistics.fmean(p50s)
    cv = statistics.stdev(p50s) / mean
    load_end = loadavg()
    result = {
        "benchmark": "stability",
        "config": args.config or "(temporary bert-tiny seq 32)",
        "benchmark_name": args.benchmark,
        "threads": args.threads,
        "runs": runs,
        "p50_s": p50s,
        "p50_mean_s": mean,
        "p50_cv": cv,
        "p50_max_over_min": max(p50s) / min(p50s),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"benchmark {args.benchmark} from {result['config']}, threads "
          f"{args.threads or 'default'}")
    print(f"p50 over {len(p50s)} runs (ms): {', '.join(f'{p * 1e3:.4f}' for p in p50s)}")
    print(f"mean {mean * 1e3:.4f} ms, CV {cv:.2%}, max/min {max(p50s) / min(p50s):.4f}")
    print(f"load average (1/5/15 min): start {load_start}, end {load_end}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
