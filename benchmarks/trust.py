"""Numbers a person can trust: consecutive `run-once` runs of a config with nothing changed
between them, and what the collector said of each.

Each run is one fresh `python -m collector run-once --config CONFIG --format json
--local-store TMP/db.sqlite` (the same local store throughout: the series build up their
history). From each run's JSON document (docs/results-format.md) the script counts:

- the quality of every successful result (its `reading`: clean, disturbed, unconverged),
  and the best repetition's window uncertainty (`measurement.achieved_rel_ci`) of each;
- the rows of `against_previous`: judged (a verdict), *slower*/*faster* (a verdict other
  than same: with nothing changed, every one is invented), too few runs, not judged (busy).

With `--burner`, a CPU burner (`python -c 'while True: pass'`, one process: a whole core of
the two) runs during every run: every result should then read disturbed.

    .venv/bin/python benchmarks/trust.py [--runs 30] [--config configs/default.yml]
        [--burner] [--keep DIR] [--json]

Goals (issue 22): 0 invented verdicts over 30 runs; a quiet run's results marked clean; a
run under the burner marks every result disturbed.
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
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_once(config: Path, store: Path, *, burner: bool) -> tuple[dict[str, Any], float]:
    """One fresh run-once; its JSON document and wall time."""
    hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
           if burner else None)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "collector", "run-once", "--config", str(config),
             "--format", "json", "--no-progress", "--local-store", str(store)],
            cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"run-once exited {proc.returncode}: {proc.stderr[-2000:]}")
    document: dict[str, Any] = json.loads(proc.stdout)
    return document, wall


def tally(document: dict[str, Any]) -> dict[str, Any]:
    """What one run's document says: qualities, window uncertainties, verdicts."""
    qualities: Counter[str] = Counter()
    windows: list[float] = []
    other: list[float] = []
    failed = 0
    for run in document["runs"]:
        if run.get("purpose", "scheduled") != "scheduled":
            continue
        for result in run["results"]:
            if result["status"] != "ok":
                failed += 1
                continue
            reading = result["reading"]
            qualities[reading["quality"]] += 1
            if reading["rel_ci"] is not None:
                windows.append(reading["rel_ci"])
            if reading["other_cpu_fraction"] is not None:
                other.append(reading["other_cpu_fraction"])
    verdicts: Counter[str] = Counter()
    invented = []
    for row in document.get("against_previous", []):
        if row["note"] is not None:
            verdicts["too few runs" if row["note"].startswith("too few") else "not judged"] += 1
        elif row["verdict"] == "same":
            verdicts["same"] += 1
        else:
            verdicts[row["word"]] += 1
            invented.append(f"{row['workload']} {row['metric']} {row['word']} "
                            f"{row['ratio']:.3f}x")
    return {"qualities": dict(qualities), "windows": windows, "other_cpu": other,
            "failed": failed, "verdicts": dict(verdicts), "invented": invented}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yml")
    parser.add_argument("--burner", action="store_true",
                        help="a CPU burner on one core during every run")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the store and each run's JSON there")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="collector-trust-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "db.sqlite"
    per_run = []
    for index in range(args.runs):
        document, wall = run_once(args.config, store, burner=args.burner)
        (work / f"run-{index + 1:02d}.json").write_text(json.dumps(document))
        counted = tally(document)
        counted["wall_s"] = wall
        per_run.append(counted)
        q = counted["qualities"]
        windows = counted["windows"]
        print(f"run {index + 1:2d}: {wall:5.0f} s; clean {q.get('clean', 0)}, disturbed "
              f"{q.get('disturbed', 0)}, unconverged {q.get('unconverged', 0)}, failed "
              f"{counted['failed']}; window ±% median "
              f"{100 * statistics.median(windows) if windows else float('nan'):.2f} max "
              f"{100 * max(windows) if windows else float('nan'):.2f}; other CPU max "
              f"{max(counted['other_cpu'], default=0):.2f}; previous runs "
              f"{counted['verdicts']}", file=sys.stderr, flush=True)
        for line in counted["invented"]:
            print(f"    invented: {line}", file=sys.stderr, flush=True)
    verdicts: Counter[str] = Counter()
    qualities: Counter[str] = Counter()
    for counted in per_run:
        verdicts.update(counted["verdicts"])
        qualities.update(counted["qualities"])
    windows = sorted(w for counted in per_run for w in counted["windows"])
    summary = {
        "runs": args.runs, "burner": args.burner, "config": str(args.config),
        "qualities": dict(qualities), "verdicts": dict(verdicts),
        "invented": sum(len(c["invented"]) for c in per_run),
        "judged": sum(c["verdicts"].get("same", 0) + len(c["invented"]) for c in per_run),
        "window_rel_ci": {"n": len(windows),
                          "p50": statistics.median(windows) if windows else None,
                          "p90": windows[int(0.9 * (len(windows) - 1))] if windows else None,
                          "max": windows[-1] if windows else None},
        "wall_s_median": statistics.median(c["wall_s"] for c in per_run),
        "kept_in": str(work), "per_run": per_run,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.runs} runs{' under a CPU burner' if args.burner else ''}: qualities "
              f"{dict(qualities)}; against previous runs {dict(verdicts)}; invented verdicts "
              f"{summary['invented']} of {summary['judged']} judged; window ±% p50 "
              f"{100 * (summary['window_rel_ci']['p50'] or 0):.2f}, p90 "
              f"{100 * (summary['window_rel_ci']['p90'] or 0):.2f}, max "
              f"{100 * (summary['window_rel_ci']['max'] or 0):.2f}; run-once median "
              f"{summary['wall_s_median']:.0f} s; kept in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
