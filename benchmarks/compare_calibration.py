"""How often `collector compare` says slower or faster when nothing changed, and how often it
sees a real change: its verdicts on simulated sides with this host's noise.

Each trial builds two sides of one workload (bert-like latency p50, 10 ms), each with
`--runs` runs of `--reps` fresh-process repetitions (run-once's default: 1 run of 3). A
repetition's value is 10 ms x a run effect x a repetition effect, both log-normal: the
run-to-run and within-run spreads of the wall-time p50 measured on these machines
(benchmarks/wall_stability.py: 25-28 % CV between `run-once` invocations of bert-tiny and
gpt2-tiny; the repetitions of one run share part of it). Side B is side A times
(1 + effect). The verdict is collector.analysis.compare's, on the real BenchmarkResult objects the
stores hand back (tests.helpers.make_run), so the whole path from values to verdict is
the product's.

Reported per (effect, runs x reps, assumed run noise): the share of trials judged slower,
faster and same, and the median of the interval's width (high / low). With one run a side
the repetitions cannot show run-to-run noise: rows with the default assumed noise (5 %, a
quiet host) and with this host's own show what --run-noise is for. The goal for effect 0
is at most 5 % non-"same" verdicts (a 95 % interval; the 3 % threshold removes a few more).

    .venv/bin/python benchmarks/compare_calibration.py [--trials 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.analysis.compare import DEFAULT_RUN_NOISE, compare
from collector.domain.model import Repetition
from tests.helpers import make_run

METRIC = "latency_p50_seconds"


def side(rng: random.Random, template: Any, shape: tuple[int, int], level: float,
         spread: tuple[float, float]) -> list[Any]:
    """`shape` = (runs, repetitions); `spread` = (run log-sd, repetition log-sd)."""
    runs, reps = shape
    run_sd, rep_sd = spread
    results = []
    for _ in range(runs):
        run_effect = math.exp(rng.gauss(0, run_sd))
        values = [level * run_effect * math.exp(rng.gauss(0, rep_sd)) for _ in range(reps)]
        repetitions = tuple(
            Repetition.model_validate({
                "index": i, "status": "ok", "started_at": template.started_at,
                "finished_at": template.finished_at, "metrics": {METRIC: v},
                "sample_offsets": {}, "sample_counts": {}})
            for i, v in enumerate(values)) if reps > 1 else ()
        results.append(template.model_copy(update={
            "metrics": {METRIC: statistics.median(values)}, "repetitions": repetitions,
            "samples": {}}))
    return results


def trial_stats(args: argparse.Namespace, effect: float, plan: tuple[int, int, float],
                template: Any) -> dict[str, Any]:
    runs, reps, run_noise = plan
    rng = random.Random(f"{effect}-{runs}-{reps}")  # noqa: S311 - simulation, not secrets
    verdicts = {"worse": 0, "better": 0, "same": 0}
    widths = []
    for _ in range(args.trials):
        spread = (args.run_sd, args.rep_sd)
        a = side(rng, template, (runs, reps), 0.010, spread)
        b = side(rng, template, (runs, reps), 0.010 * (1 + effect), spread)
        [row] = [r for r in compare(a, b, metrics=[METRIC], run_noise=run_noise).rows]
        verdicts[row.verdict] += 1
        if row.low is not None and row.high is not None:
            widths.append(row.high / row.low)
    total = args.trials
    return {"effect": effect, "runs": runs, "reps": reps, "run_noise": run_noise,
            "slower": verdicts["worse"] / total, "faster": verdicts["better"] / total,
            "same": verdicts["same"] / total,
            "median_ci_width": statistics.median(widths) if widths else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--run-sd", type=float, default=0.20,
                        help="log-sd of a run's effect (shared by its repetitions)")
    parser.add_argument("--rep-sd", type=float, default=0.15,
                        help="log-sd of a repetition within its run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    [template] = make_run(models=("bert",)).results
    # One run a side: with the default assumed run noise, and with the host's own.
    plans = [(1, 3, DEFAULT_RUN_NOISE), (1, 3, math.hypot(args.run_sd, args.rep_sd)),
             (3, 3, DEFAULT_RUN_NOISE), (5, 3, DEFAULT_RUN_NOISE), (10, 1, DEFAULT_RUN_NOISE)]
    rows = [trial_stats(args, effect, plan, template)
            for effect in (0.0, 0.10, 0.30, 1.0) for plan in plans]
    if args.json:
        print(json.dumps({"run_sd": args.run_sd, "rep_sd": args.rep_sd,
                          "trials": args.trials, "rows": rows}, indent=2))
        return 0
    print(f"run log-sd {args.run_sd}, repetition log-sd {args.rep_sd}, {args.trials} trials")
    print("| effect | runs x reps per side | --run-noise | slower | faster | same | "
          "median CI width |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        width = f"{r['median_ci_width']:.2f}x" if r["median_ci_width"] else "-"
        print(f"| +{r['effect']:.0%} | {r['runs']} x {r['reps']} | {r['run_noise']:.2f} | "
              f"{r['slower']:.1%} | "
              f"{r['faster']:.1%} | {r['same']:.1%} | {width} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
