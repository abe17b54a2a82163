"""Start-up cost of the command line and of `import collector`, in fresh processes.

For each tree (a checkout of the collector; default: this one), interleaved round by round so
that a busy neighbour weighs on every tree alike, the wall time of
  (a) `python -m collector --help` and
  (b) `python -c "import collector"`,
and whether either loaded torch or transformers (they must not: only workers do). Prints
min / median / max per tree and command, and the ratio of medians to the first tree.

    .venv/bin/python benchmarks/cli_start.py [--rounds 20] [--tree DIR ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys\n{body}\n"
         "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
COMMANDS = {
    "collector --help": PROBE.format(body=(
        "from collector.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        "    pass")),
    "import collector": PROBE.format(body="import collector"),
}


def once(tree: Path, code: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    elapsed = time.perf_counter() - started
    heavy = next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY"))
    return elapsed, heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = args.tree or [ROOT]
    times: dict[tuple[str, str], list[float]] = {}
    heavy: dict[tuple[str, str], set[str]] = {}
    for round_ in range(args.rounds):
        order = trees[round_ % len(trees):] + trees[:round_ % len(trees)]
        for tree in order:
            for name, code in COMMANDS.items():
                elapsed, loaded = once(tree, code)
                times.setdefault((str(tree), name), []).append(elapsed)
                heavy.setdefault((str(tree), name), set()).add(loaded)
    rows: list[dict[str, Any]] = []
    for (tree, name), values in times.items():
        base = statistics.median(times[(str(trees[0]), name)])
        rows.append({"tree": tree, "command": name, "min_s": min(values),
                     "median_s": statistics.median(values), "max_s": max(values),
                     "ratio_to_first": statistics.median(values) / base,
                     "heavy_imports": sorted(heavy[(tree, name)])})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['tree']:<30} {row['command']:<18} min {row['min_s']:.3f} s  median "
              f"{row['median_s']:.3f} s  max {row['max_s']:.3f} s  x{row['ratio_to_first']:.2f}"
              f"  {', '.join(row['heavy_imports'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
