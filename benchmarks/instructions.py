"""Measurement mode `instructions`: how repeatable, how faithful to an injected change, how dear.

Through the real path (collector.adapters.measure.run_benchmark on one WorkerPool, so every run is a
fresh worker forked from the pool's valgrind forkserver), for the default config's bert-tiny
(BertForSequenceClassification, sequence length 32, eager) and gpt2-tiny (generate, sequence
length 64, `--gpt2-tokens` new tokens, 16 in the config):

  (a) run-to-run spread: `--runs` fresh runs of each; the coefficient of variation (sample
      stdev / mean) of instructions_per_iteration, and the largest pairwise difference;
      bert-tiny also `--pool-runs` runs in a second pool (a fresh valgrind forkserver), to
      show that a new server does not move the count;
  (b) fidelity: `--extra-runs` runs of each with model.extra_compute 0.03; the reading
      (injected / mean baseline - 1): mean and range over the runs (goal: 3% +- 0.5%);
  (c) cost: valgrind forkserver start-up (first run's wall time minus the median of the
      others), seconds per fresh run, and seconds per instrumented iteration (the counted
      region and its two uncounted instrumented iterations: duration_s / (iterations + 2)).

    .venv/bin/python benchmarks/instructions.py [--runs 10] [--extra-runs 3] [--pool-runs 2]
        [--bert-iterations 10] [--gpt2-iterations 3] [--gpt2-tokens 16] [--json]

Defaults take ~25 min on 2 cores (gpt2-tiny's generate is ~103 M instructions, ~7 s per
instrumented iteration under callgrind). Keep the work under the __main__ guard: workers
import this file as __mp_main__.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from collector.adapters.config import load_config
from collector.adapters.host import capture_host
from collector.adapters.measure import WorkerPool, run_benchmark
from collector.domain.model import BenchmarkResult, BenchmarkSpec, Environment, MeasurementMode

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "default.yml"
# collector.adapters.measure.worker.INSTRUMENTED_WARMUP (importing it loads torch)
INSTRUMENTED_EXTRA = 2
EXTRA = 0.03
GOAL_CV = 0.005
GOAL_EXTRA_ABS = 0.005


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_spec(name: str, sequence_length: int | None = None) -> BenchmarkSpec:
    config = load_config(CONFIG)
    suite = config.suite("default")
    assert suite is not None, "configs/default.yml has no suite 'default'"
    for spec in suite.benchmarks:
        if spec.name.split("[")[0] == name and spec.backend == "eager" and (
                sequence_length is None or spec.sequence_length == sequence_length):
            return spec
    raise SystemExit(f"configs/default.yml has no eager {name} (sequence_length "
                     f"{sequence_length})")


def instructions_spec(spec: BenchmarkSpec, *, iterations: int, extra: float = 0.0,
                      **fields: Any) -> BenchmarkSpec:
    data = spec.model_dump(mode="json")
    data["measurement"].update(mode=MeasurementMode.INSTRUCTIONS.value,
                               min_iterations=iterations, max_iterations=None)
    data["model"]["extra_compute"] = extra
    data["timeout_s"] = 1800
    data.update(fields)
    return BenchmarkSpec.model_validate(data)


def one_run(pool: WorkerPool, spec: BenchmarkSpec, env: Environment) -> tuple[BenchmarkResult,
                                                                               float]:
    started = time.perf_counter()
    result = run_benchmark(pool, spec, env)
    wall = time.perf_counter() - started
    if result.status != "ok":
        raise SystemExit(f"{spec.name} failed: {result.failure}")
    log(f"  {spec.name} extra={getattr(spec.model, 'extra_compute', 0)}: "
        f"{result.metrics['instructions_per_iteration']:,.0f} instructions/iteration, "
        f"{wall:.1f} s")
    return result, wall


def spread(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    return {
        "n": len(values), "mean": mean,
        "cv": statistics.stdev(values) / mean if len(values) > 1 else 0.0,
        "max_pairwise_rel_diff": max((abs(a - b) / mean
                                      for a, b in itertools.combinations(values, 2)),
                                     default=0.0),
    }


def model_figures(pool: WorkerPool, env: Environment, base: BenchmarkSpec, *, runs: int,
                  extra_runs: int) -> dict[str, Any]:
    results = [one_run(pool, base, env) for _ in range(runs)]
    counts = [r.metrics["instructions_per_iteration"] for r, _ in results]
    walls = [w for _, w in results]
    iterations = base.measurement.min_iterations
    per_iteration_s = [r.measurement.duration_s / (iterations + INSTRUMENTED_EXTRA)
                       for r, _ in results if r.measurement is not None]
    baseline = statistics.fmean(counts)
    injected = instructions_spec(base, iterations=iterations, extra=EXTRA)
    extra = [one_run(pool, injected, env) for _ in range(extra_runs)]
    readings = [r.metrics["instructions_per_iteration"] / baseline - 1 for r, _ in extra]
    figures: dict[str, Any] = {
        "iterations": iterations,
        "runs": spread(counts),
        "instructions_per_iteration": counts,
        "wall_s_per_run": walls,
        "s_per_run_median": statistics.median(walls[1:] or walls),
        "s_per_instrumented_iteration_median": statistics.median(per_iteration_s),
        "extra_compute": {
            "injected": EXTRA, "readings": readings,
            "mean": statistics.fmean(readings) if readings else None,
            "min": min(readings, default=None), "max": max(readings, default=None),
            "s_per_run_median": statistics.median([w for _, w in extra]) if extra else None,
        },
    }
    if "instructions_per_token" in results[0][0].metrics:
        figures["instructions_per_token_mean"] = statistics.fmean(
            r.metrics["instructions_per_token"] for r, _ in results)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--extra-runs", type=int, default=3)
    parser.add_argument("--pool-runs", type=int, default=2)
    parser.add_argument("--bert-iterations", type=int, default=10)
    parser.add_argument("--gpt2-iterations", type=int, default=3)
    parser.add_argument("--gpt2-tokens", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    env = capture_host("benchmark-host")
    bert = instructions_spec(default_spec("bert-tiny", 32), iterations=args.bert_iterations)
    gpt2 = instructions_spec(default_spec("gpt2-tiny"), iterations=args.gpt2_iterations,
                             new_tokens=args.gpt2_tokens)
    report: dict[str, Any] = {"loadavg_start": loadavg()}
    with WorkerPool() as pool:
        started = time.perf_counter()
        _, first_wall = one_run(pool, bert, env)
        log(f"first run (includes the valgrind forkserver's start): {first_wall:.1f} s")
        report["bert-tiny"] = model_figures(pool, env, bert, runs=args.runs,
                                            extra_runs=args.extra_runs)
        report["startup_s"] = first_wall - report["bert-tiny"]["s_per_run_median"]
        report["gpt2-tiny"] = model_figures(pool, env, gpt2, runs=args.runs,
                                            extra_runs=args.extra_runs)
        report["first_pool_s"] = time.perf_counter() - started
    if args.pool_runs:
        with WorkerPool() as other:
            counts = [one_run(other, bert, env)[0].metrics["instructions_per_iteration"]
                      for _ in range(args.pool_runs)]
        first_pool = report["bert-tiny"]["runs"]["mean"]
        report["bert-tiny"]["second_pool"] = {
            "instructions_per_iteration": counts,
            "rel_diff_of_means": statistics.fmean(counts) / first_pool - 1}
    report["loadavg_end"] = loadavg()

    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average at start {report['loadavg_start']}, at end {report['loadavg_end']}")
    print(f"valgrind forkserver start-up: {report['startup_s']:.1f} s (once per WorkerPool)")
    for name in ("bert-tiny", "gpt2-tiny"):
        fig = report[name]
        runs, extra = fig["runs"], fig["extra_compute"]
        spec = bert if name == "bert-tiny" else gpt2
        tokens = f", new_tokens {spec.new_tokens}" if name == "gpt2-tiny" else ""
        print(f"{name} (seq {spec.sequence_length}{tokens}, {fig['iterations']} counted "
              f"iterations):")
        print(f"  instructions/iteration {runs['mean']:,.0f} over {runs['n']} fresh runs: "
              f"CV {runs['cv']:.4%}, largest pairwise difference "
              f"{runs['max_pairwise_rel_diff']:.4%} "
              f"({'goal met' if runs['max_pairwise_rel_diff'] < GOAL_CV else 'goal NOT met'}"
              f": < {GOAL_CV:.1%})")
        if "instructions_per_token_mean" in fig:
            print(f"  instructions/token {fig['instructions_per_token_mean']:,.0f}")
        if "second_pool" in fig:
            print(f"  a second pool (fresh valgrind forkserver): "
                  f"{fig['second_pool']['rel_diff_of_means']:+.4%} from the first")
        if extra["readings"]:
            ok = all(abs(r - EXTRA) <= GOAL_EXTRA_ABS for r in extra["readings"])
            print(f"  extra_compute {EXTRA:.0%} reads {extra['mean']:+.3%} (range "
                  f"{extra['min']:+.3%} .. {extra['max']:+.3%}, {len(extra['readings'])} "
                  f"runs; {'goal met' if ok else 'goal NOT met'}: {EXTRA:.0%} +- "
                  f"{GOAL_EXTRA_ABS:.1%})")
        print(f"  cost: {fig['s_per_run_median']:.1f} s per fresh run, "
              f"{fig['s_per_instrumented_iteration_median']:.2f} s per instrumented "
              f"iteration; with extra_compute {extra['s_per_run_median'] or 0:.1f} s per run "
              "(calibration)")


if __name__ == "__main__":
    main()
