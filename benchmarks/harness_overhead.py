"""Harness overhead: does collector's measure() report the same median as a bare timing loop?

Builds a small synthetic BertForSequenceClassification in this process (random weights,
torch.manual_seed(0)) whose forward takes a few milliseconds on CPU, and times the very step
the worker times (collector.adapters.measure.tasks.forward.make_step: one forward under
torch.inference_mode) two ways, in alternating rounds so that drift in the machine's speed
cancels out:

  engine  collector.adapters.measure.measure.measure(step, settings)
  bare    t0 = time.perf_counter_ns(); step(); t1 = time.perf_counter_ns()

The bare loop does the same warm-up and the same number of iterations as the engine's latest
round (stopping early, like the engine, at max_duration_s). Reported: each round's ratio
engine_median / bare_median, and the overall ratio: the median of the rounds' engine medians
over the median of the rounds' bare medians (each round counts once, however many iterations
it ran). Goal: within 2 %.

torch runs on one thread by default (--threads): the harness's cost does not depend on it, and
on a shared 2-core machine two intra-op threads that have to meet at every operator can slow a
forward down tens of times whenever another process takes a core, which swamps the comparison.

It also times an empty step both ways: the difference of those medians is the harness's own
cost inside the timed region, free of the machine's noise.

    .venv/bin/python benchmarks/harness_overhead.py [--rounds 20] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import transformers

from collector.adapters.measure.measure import measure
from collector.adapters.measure.tasks import forward
from collector.domain.model import MeasurementSettings

GOAL = 0.02
# One layer of the bert-tiny shape in configs/default.yml: ~2-3 ms per forward on 2 CPU cores.
MODEL_CONFIG: dict[str, Any] = {"num_hidden_layers": 1, "hidden_size": 128,
                                "num_attention_heads": 4, "intermediate_size": 256,
                                "vocab_size": 4096, "num_labels": 2}
SEQUENCE_LENGTH = 32
# max_duration_s 2 (not the usual 5+): many short paired rounds cancel a shared machine's
# drift better than a few long ones.
SETTINGS = MeasurementSettings(warmup_iterations=20, min_iterations=200, min_duration_s=1.0,
                               max_duration_s=2.0, target_rel_ci=0.005)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build_step() -> Callable[[], None]:
    torch.manual_seed(0)
    config = transformers.BertConfig(**MODEL_CONFIG)
    model: Any = transformers.BertForSequenceClassification(config)
    model.eval()
    ids = torch.randint(4, config.vocab_size, (1, SEQUENCE_LENGTH))
    step: Callable[[], None] = forward.make_step(
        model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return step


def bare(step: Callable[[], None], warmup: int, iterations: int,
         max_duration_s: float = SETTINGS.max_duration_s) -> list[int]:
    for _ in range(warmup):
        step()
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(max_duration_s * 1e9)
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        step()
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if t1 >= deadline:
            break
    return samples


def engine(step: Callable[[], None],
           settings: MeasurementSettings = SETTINGS) -> tuple[list[int], float | None]:
    measured = measure(step, settings)
    assert measured.info is not None
    return measured.samples_ns, measured.info.achieved_rel_ci


def run_round(step: Callable[[], None], engine_first: bool,
              iterations: int) -> dict[str, Any]:
    """One engine window and one bare window, back to back, in the given order."""
    if not engine_first:
        bare_samples = bare(step, SETTINGS.warmup_iterations, iterations)
    engine_samples, rel_ci = engine(step)
    if engine_first:
        bare_samples = bare(step, SETTINGS.warmup_iterations, len(engine_samples))
    engine_med = statistics.median(engine_samples)
    bare_med = statistics.median(bare_samples)
    return {"order": "engine-first" if engine_first else "bare-first",
            "engine_median_ms": engine_med / 1e6, "bare_median_ms": bare_med / 1e6,
            "ratio": engine_med / bare_med, "engine_iterations": len(engine_samples),
            "bare_iterations": len(bare_samples), "engine_rel_ci": rel_ci}


def empty_step() -> None:
    """A step that does nothing: what is left in the timed region is the harness's own cost."""


def timed_region_cost_ns() -> tuple[float, float]:
    """Median sample of an empty step, engine and bare (the per-iteration timing floor)."""
    settings = MeasurementSettings(warmup_iterations=1000, min_iterations=100_000,
                                   min_duration_s=0.2, max_duration_s=1.0, target_rel_ci=0.01)
    engine_samples, _ = engine(empty_step, settings)
    bare_samples = bare(empty_step, 1000, len(engine_samples), max_duration_s=1.0)
    return statistics.median(engine_samples), statistics.median(bare_samples)


def paired_estimate(ratios: list[float]) -> tuple[float, float]:
    """Geometric mean of the round ratios and its approximate 95 % half-width (2 standard
    errors of the mean log ratio), as a relative factor."""
    logs = [math.log(r) for r in ratios]
    center = math.exp(statistics.fmean(logs))
    if len(logs) < 2:
        return center, math.inf
    half = 2 * statistics.stdev(logs) / math.sqrt(len(logs))
    return center, math.exp(half) - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20,
                        help="rounds; odd rounds run engine first, even ones bare first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = loadavg()
    log = sys.stderr if args.json else sys.stdout

    step = build_step()
    forward_ms = statistics.median(bare(step, 20, 200)) / 1e6
    in_range = 1.0 <= forward_ms <= 5.0
    print(f"model: BertForSequenceClassification {MODEL_CONFIG}, seq={SEQUENCE_LENGTH}, "
          f"torch threads={torch.get_num_threads()}", file=log)
    print(f"one forward: {forward_ms:.3f} ms ({'within' if in_range else 'OUTSIDE'} 1-5 ms)",
          file=log)
    floor_engine_ns, floor_bare_ns = timed_region_cost_ns()
    print(f"empty step, median sample: engine {floor_engine_ns:.0f} ns, bare "
          f"{floor_bare_ns:.0f} ns (difference = "
          f"{(floor_engine_ns - floor_bare_ns) / (forward_ms * 1e6):+.4%} of one forward)",
          file=log)

    rounds: list[dict[str, Any]] = []
    iterations = SETTINGS.min_iterations
    for index in range(args.rounds):
        r = run_round(step, engine_first=index % 2 == 0, iterations=iterations)
        iterations = r["engine_iterations"]
        rounds.append(r)
        ci = r["engine_rel_ci"]
        print(f"round {index + 1:2d} {r['order']:12s} engine {r['engine_median_ms']:.4f} ms "
              f"(n={r['engine_iterations']}, ci={'-' if ci is None else f'{ci:.2%}'})  "
              f"bare {r['bare_median_ms']:.4f} ms (n={r['bare_iterations']})  "
              f"ratio {r['ratio']:.4f}", file=log)

    engine_median = statistics.median(r["engine_median_ms"] for r in rounds)
    bare_median = statistics.median(r["bare_median_ms"] for r in rounds)
    ratio = engine_median / bare_median
    paired, paired_half = paired_estimate([r["ratio"] for r in rounds])
    met = abs(ratio - 1.0) <= GOAL
    load_end = loadavg()
    result = {
        "benchmark": "harness_overhead",
        "model_config": MODEL_CONFIG,
        "sequence_length": SEQUENCE_LENGTH,
        "torch_threads": torch.get_num_threads(),
        "forward_ms": forward_ms,
        "forward_ms_within_1_5": in_range,
        "empty_step_engine_ns": floor_engine_ns,
        "empty_step_bare_ns": floor_bare_ns,
        "rounds": rounds,
        "engine_median_ms": engine_median,
        "bare_median_ms": bare_median,
        "ratio": ratio,
        "difference_pct": (ratio - 1.0) * 100,
        "paired_ratio_geomean": paired,
        "paired_ratio_half_width_95": paired_half,
        "goal_pct": GOAL * 100,
        "goal_met": met,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"overall: engine median {engine_median:.4f} ms / bare median {bare_median:.4f} ms "
          f"= ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f} %)")
    print(f"paired: geometric mean of the round ratios {paired:.4f} "
          f"(+/- {paired_half:.2%}, about 95 %)")
    verdict = "goal met" if met else "goal NOT met"
    if paired_half > GOAL:
        verdict += (f" (the machine's noise on this run, +/- {paired_half:.1%}, is larger than "
                    "the goal: see the empty-step line for the harness's own cost)")
    print(f"goal |difference| <= {GOAL:.0%}: {verdict}")
    print(f"load average (1/5/15 min): start {load_start}, end {load_end}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
