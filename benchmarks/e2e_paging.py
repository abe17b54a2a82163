"""End to end on this real, noisy machine: does a real slowdown page in the cycle it first
appears, and does noise never page?

Real engine, real store (SQLite), no synthetic series. A suite of the default config's
bert-tiny (seq 32, eager) and gpt2-tiny (generate) with the default config's measurement
settings runs cycle after cycle through `collector.usecases.cycle.run_once`, exactly as
`collector serve` runs a scheduled suite (interleaved repetitions, detection after every
run, confirmation runs for suspicions and outlying runs).

* Null cycles: `--cycles` clean cycles (default 70) in one history; every cycle from the
  detector's 21st run on is a null cycle: any regression or host drift that becomes open is
  a false page (pages are counted by kind; improvements never page).
* Trials: from the `--first-trial`-th clean cycle on (default 30), every few cycles (so the
  trials spread over the session), the history as it is then is copied and one cycle runs
  on the copy with bert-tiny slowed by `--inject` (default +10%) of real extra compute
  (`extra_compute`, calibrated by the worker; not part of the identity, so the same series).
  A trial passes when an open regression of that series starts at the trial's run within
  that same cycle. The copy is then thrown away, so every trial faces a clean history.
* Cost: each cycle's wall time; a trial's extra time over the median clean cycle is what
  confirmation costs.
* `--mode instructions`: the same with bert-tiny alone counted under valgrind
  (`measurement: {mode: instructions, repetitions: 1}`; gpt2-tiny's generate costs a minute
  a run there), judged on instructions_per_iteration; its detector judges from the 10th run
  on, so null cycles count from the 11th. Nothing is recorded unless `--record` is given.

The clean history's stored points (every metric, and each repetition's p50) are written to
`--record` (default benchmarks/data/host_noise.json): the noise model of this host that
`benchmarks/detection_quality.py --host-noise` replays.

    .venv/bin/python benchmarks/e2e_paging.py [--cycles 70] [--trials 10] [--inject 0.10]
        [--first-trial 30] [--record PATH] [--mode wall|instructions] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from collector.adapters.config import Config, load_config
from collector.adapters.measure import WorkerPool
from collector.adapters.store import Stores
from collector.domain.history import Regression
from collector.usecases.cycle import run_once
from collector.usecases.outcome import Outcome

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "default.yml"
INJECTED = "bert-tiny"
KEPT = ("bert-tiny", "gpt2-tiny")
# The detector judges nothing before this many runs (DetectorSettings / INSTRUCTION_SETTINGS).
MIN_HISTORY = {"wall": 20, "instructions": 10}
JUDGED = {"wall": "latency_p50_seconds", "instructions": "instructions_per_iteration"}


def suite_config(path: Path, inject: float, *, detection: dict[str, Any] | None = None,
                 mode: str = "wall") -> Config:
    """bert-tiny (seq 32, eager) and gpt2-tiny from the default config, its defaults, and
    bert-tiny slowed by `inject` of extra compute. Instructions mode: bert-tiny alone."""
    yaml = YAML()
    document = yaml.load(DEFAULT_CONFIG.read_text())
    benches = []
    kept = KEPT if mode == "wall" else (INJECTED,)
    for original in document["suites"]["default"]["benchmarks"]:
        if original["name"] not in kept:
            continue
        entry = dict(original)
        if mode != "wall":
            entry["measurement"] = {**entry.get("measurement", {}), "mode": mode,
                                    "repetitions": 1}
        if entry["name"] == "bert-tiny":
            entry.pop("matrix", None)
            entry["sequence_length"] = 32
            if inject > 0:
                entry["model"] = {**entry["model"], "extra_compute": inject}
        benches.append(entry)
    out: dict[str, Any] = {"version": 1, "defaults": document.get("defaults"),
                           "suites": {"e2e": {"benchmarks": benches}}}
    if detection:
        out["detection"] = detection
    with path.open("w") as handle:
        yaml.dump(out, handle)
    return load_config(path)


def pages(outcome: Outcome) -> list[Regression]:
    """Records that became open (page or host-drift warning) in this cycle."""
    seen: dict[str, Regression] = {}
    detection = outcome.detection
    for record in (detection.new + detection.changed if detection else []) + outcome.confirmed:
        seen[record.regression_id] = record
    return [r for r in seen.values() if r.status == "open" and r.kind != "improvement"]


def cycle(config: Config, stores: Stores, pool: WorkerPool) -> tuple[Outcome, float]:
    start = time.monotonic()
    outcome = run_once(config, stores=stores, pool=pool)
    elapsed = time.monotonic() - start
    if outcome.store_error or outcome.detection_error:
        raise SystemExit(f"cycle failed: {outcome.store_error or outcome.detection_error}")
    failed = [r for run in outcome.runs for r in run.results if r.status != "ok"]
    if failed:
        raise SystemExit(f"benchmark failed: {failed[0].failure}")
    return outcome, elapsed


def record_history(stores: Stores, path: Path | None) -> dict[str, Any]:
    """Every series' stored points (oldest first), with each repetition's p50; written to
    `path` when given."""
    store = stores.local
    out: dict[str, Any] = {"recorded_at": datetime.now(timezone.utc).isoformat(),
                           "host_cpu": os.cpu_count(), "series": {}}
    for info in store.list_series():
        history = store.series_history(info.series_id, 10_000)
        metrics = {m: [by_run[r.run_id] for r in history.runs if r.run_id in by_run]
                   for m, by_run in sorted(history.values.items())}
        out["series"][info.benchmark] = {
            "series_id": info.series_id, "task": info.task, "metrics": metrics,
            "other_cpu_fraction": [r.other_cpu_fraction for r in history.runs]}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def cv(values: list[float]) -> float | None:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else None


def trial(slow: Config, db: Path, copy: Path, pool: WorkerPool, *, after: int,
          metric: str) -> dict[str, Any]:
    """One slowed cycle on a copy of the history as it is now (SQLite's backup API: the
    store runs in WAL mode, so the file alone may miss the latest runs)."""
    source, target = sqlite3.connect(db), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    stores = Stores.open(copy, None)
    try:
        outcome, elapsed = cycle(slow, stores, pool)
        run = outcome.runs[0]
        series = next(r.series_id for r in run.results if r.spec.name == INJECTED)
        hit = [r for r in pages(outcome) if r.series_id == series
               and r.kind == "regression" and r.start_run_id == run.run_id]
        before = stores.local.series_history(series, 40)
        p50 = before.values[metric]
        reference = statistics.median(p50[r.run_id] for r in before.runs[:-1])
        return {"after_cycle": after, "paged": bool(hit),
                "metrics": sorted(r.metric for r in hit), "seconds": elapsed,
                "scheduled_point_step": p50[run.run_id] / reference - 1,
                "confirmation_points": len(outcome.confirmation_runs)}
    finally:
        stores.close()
        copy.unlink(missing_ok=True)


def summarize(args: argparse.Namespace, clean_times: list[float], trials: list[dict[str, Any]],
              null_pages: list[dict[str, Any]], *, confirmations: int,
              recorded: dict[str, Any]) -> dict[str, Any]:
    median_clean = statistics.median(clean_times)
    metric = JUDGED[args.mode]
    return {
        "mode": args.mode, "metric": metric,
        "cycles": args.cycles, "null_cycles": max(0, args.cycles - MIN_HISTORY[args.mode]),
        "null_pages": null_pages, "trials": trials,
        "paged": sum(t["paged"] for t in trials), "inject": args.inject,
        "clean_cycle_seconds": {"median": median_clean, "max": max(clean_times)},
        "trial_extra_seconds_median": (statistics.median(t["seconds"] for t in trials)
                                       - median_clean) if trials else None,
        "noise_confirmation_points": confirmations,
        "run_to_run_cv": {name: cv(s["metrics"][metric])
                          for name, s in recorded["series"].items()},
        "load_average_end": os.getloadavg(),
        "record": str(args.record) if args.record else None}


def report(summary: dict[str, Any]) -> None:
    trials = summary["trials"]
    print(f"\n+{summary['inject']:.0%} slowdown paged in the same cycle: "
          f"{summary['paged']}/{len(trials)} (goal >= 9/10)")
    print(f"pages over {summary['null_cycles']} null cycles: {len(summary['null_pages'])} "
          f"(goal 0) {summary['null_pages'] or ''}")
    print(f"clean cycle: median {summary['clean_cycle_seconds']['median']:.1f} s; trial "
          f"cycle: +{summary['trial_extra_seconds_median'] or 0:.1f} s (confirmation runs); "
          f"{summary['noise_confirmation_points']} confirmation point(s) in clean cycles")
    print(f"run-to-run CV of the stored {summary['metric']}: " + ", ".join(
        f"{k} {v:.3%}" for k, v in summary["run_to_run_cv"].items() if v is not None))
    if summary["record"]:
        print(f"recorded the clean history to {summary['record']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("wall", "instructions"), default="wall")
    parser.add_argument("--cycles", type=int, help="clean cycles (default 70; 60 for "
                        "instructions)")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--first-trial", type=int,
                        help="default 30 (wall) or 10 (instructions)")
    parser.add_argument("--inject", type=float, default=0.10)
    parser.add_argument("--record", type=Path, help="default benchmarks/data/host_noise.json "
                        "in wall mode; none in instructions mode")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wall = args.mode == "wall"
    args.cycles = args.cycles or (70 if wall else 60)
    args.first_trial = args.first_trial or (30 if wall else 10)
    if args.record is None and wall:
        args.record = ROOT / "benchmarks" / "data" / "host_noise.json"
    out = sys.stderr if args.json else sys.stdout
    tmp = Path(tempfile.mkdtemp(prefix="collector-e2e-"))
    clean = suite_config(tmp / "clean.yml", 0.0, mode=args.mode)
    slow = suite_config(tmp / "slow.yml", args.inject, mode=args.mode)
    db = tmp / "history.db"
    stores = Stores.open(db, None)
    spacing = max(1, (args.cycles - args.first_trial) // max(args.trials, 1))
    trial_at = {args.first_trial + i * spacing for i in range(args.trials)}
    print(f"load average at start: {os.getloadavg()}; trials after clean cycles "
          f"{sorted(trial_at)}", file=out, flush=True)
    null_pages: list[dict[str, Any]] = []
    clean_times: list[float] = []
    trials: list[dict[str, Any]] = []
    confirmations = 0
    try:
        with WorkerPool() as pool:
            for index in range(1, args.cycles + 1):
                outcome, elapsed = cycle(clean, stores, pool)
                clean_times.append(elapsed)
                confirmations += len(outcome.confirmation_runs)
                opened = pages(outcome)
                if index > MIN_HISTORY[args.mode]:
                    null_pages += [{"cycle": index, "metric": r.metric, "kind": r.kind,
                                    "change": r.relative_change} for r in opened]
                print(f"clean {index:3d}: {elapsed:5.1f} s, "
                      f"{len(outcome.confirmation_runs)} confirmation point(s), "
                      f"{len(opened)} page(s)", file=out, flush=True)
                if index in trial_at:
                    result = trial(slow, db, tmp / "trial.db", pool, after=index,
                                   metric=JUDGED[args.mode])
                    trials.append(result)
                    print(f"  trial after {index}: "
                          f"{'PAGED' if result['paged'] else 'missed'} "
                          f"({', '.join(result['metrics']) or '-'}), "
                          f"{result['seconds']:.1f} s, scheduled point "
                          f"{result['scheduled_point_step']:+.1%}", file=out, flush=True)
        recorded = record_history(stores, args.record)
    finally:
        stores.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(args, clean_times, trials, null_pages, confirmations=confirmations,
                        recorded=recorded)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
