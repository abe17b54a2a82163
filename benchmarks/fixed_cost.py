"""Fixed cost per benchmark: what the collector spends around each measurement.

  (a) importing torch + transformers.modeling_utils in a brand-new interpreter (median of 3
      wall times, with the import statement's own time and a bare interpreter for reference);
  (b) worker start-up through WorkerPool("forkserver"): pool.run() of a trivial target that
      imports torch and returns. The first call includes starting the forkserver and its
      preload; the median of the next calls is the per-benchmark cost;
  (c) the same through WorkerPool("spawn"), where every worker is a new interpreter that
      imports torch itself;
  (d) one tiny real benchmark (tests/helpers.py spec_dict("bert")) end to end through
      collector.adapters.measure.run_benchmark on the warm forkserver, minus its measured time
      (result.measurement.duration_s): the fixed overhead around a measurement.

The trivial target is a module-level function of this script. Workers find it because
multiprocessing sends them the parent's main-module path and sys.path, and each new worker
imports this file as `__mp_main__` before it unpickles the target (so keep this module's top
level cheap and the work under the __main__ guard). The script checks the target really ran
in a worker (its pid and the modules it saw are sent back).

    .venv/bin/python benchmarks/fixed_cost.py [--forkserver-calls 8] [--spawn-calls 3] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from collector.adapters.measure.isolation import WorkerPool
from collector.adapters.measure.protocol import send

ROOT = Path(__file__).resolve().parents[1]
IMPORT_RUNS = 3
TIMEOUT_S = 300.0


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def trivial_target(conn: Connection, payload: Any) -> None:  # noqa: ARG001 - target signature
    """Import torch (already loaded in a forkserver worker) and report back."""
    already = "torch" in sys.modules
    importlib.import_module("torch")
    send(conn, "result", {"pid": os.getpid(), "torch_was_loaded": already})


def interpreter_seconds(modules: str) -> tuple[float, float]:
    """(wall seconds of a new interpreter that imports `modules` and exits, seconds of the
    import statement alone as timed inside it); the difference is start-up plus shutdown."""
    code = ("import time; t = time.perf_counter(); "
            f"{'import ' + modules + '; ' if modules else ''}print(time.perf_counter() - t)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return time.perf_counter() - started, float(out)


def worker_start_seconds(pool: WorkerPool) -> tuple[float, dict[str, Any]]:
    """Seconds from pool.run() to its return for the trivial target."""
    started = time.perf_counter()
    outcome = pool.run(trivial_target, None, timeout_s=TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if outcome.payload is None:
        raise SystemExit(f"trivial worker failed: {outcome.failure}")
    if outcome.payload["pid"] == os.getpid():
        raise SystemExit("the trivial target ran in this process, not in a worker")
    return elapsed, outcome.payload


def end_to_end(pool: WorkerPool) -> dict[str, float]:
    """One tiny real benchmark through run_benchmark; its wall time split around the
    measurement."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from collector.adapters.host import capture_host
    from collector.adapters.measure import run_benchmark
    from collector.domain.model import BenchmarkSpec
    from tests.helpers import spec_dict

    spec = BenchmarkSpec.model_validate(spec_dict("bert"))
    environment = capture_host()
    started = time.perf_counter()
    result = run_benchmark(pool, spec, environment)
    wall = time.perf_counter() - started
    if result.status != "ok" or result.measurement is None:
        raise SystemExit(f"tiny benchmark failed: {result.failure}")
    measured = result.measurement.duration_s
    return {"wall_s": wall, "measured_s": measured, "overhead_s": wall - measured,
            "load_time_s": result.metrics["load_time_seconds"],
            "first_call_s": result.metrics["first_call_seconds"],
            "iterations": float(result.measurement.iterations)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forkserver-calls", type=int, default=8,
                        help="forkserver workers timed after the first")
    parser.add_argument("--spawn-calls", type=int, default=3, help="spawn workers timed")
    parser.add_argument("--e2e-runs", type=int, default=3,
                        help="tiny end-to-end benchmarks timed (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    load_start = loadavg()
    log = sys.stderr if args.json else sys.stdout

    # (a) a brand-new interpreter importing torch and transformers
    bare_python = [interpreter_seconds("")[0] for _ in range(IMPORT_RUNS)]
    timed = [interpreter_seconds("torch, transformers.modeling_utils")
             for _ in range(IMPORT_RUNS)]
    imports = [wall for wall, _ in timed]
    import_statement = statistics.median(inside for _, inside in timed)
    print(f"(a) new interpreter + import torch, transformers.modeling_utils: median "
          f"{statistics.median(imports):.3f} s of {[round(x, 3) for x in imports]}; the import "
          f"itself {import_statement:.3f} s, the rest is start-up and shutdown (bare "
          f"interpreter {statistics.median(bare_python):.3f} s)", file=log)

    # (b) forkserver: the first call starts the server and its preload
    forkserver = WorkerPool("forkserver")
    first, payload = worker_start_seconds(forkserver)
    warm: list[float] = []
    for _ in range(args.forkserver_calls):
        seconds, payload = worker_start_seconds(forkserver)
        warm.append(seconds)
        if not payload["torch_was_loaded"]:
            raise SystemExit("forkserver worker did not inherit torch from the preload")
    fork_median = statistics.median(warm)
    print(f"(b) forkserver worker: first call {first:.3f} s (starts the server + preload), "
          f"then median {fork_median * 1e3:.1f} ms of {len(warm)} "
          f"(min {min(warm) * 1e3:.1f}, max {max(warm) * 1e3:.1f} ms)", file=log)

    # (c) spawn: a new interpreter per worker, importing torch in the target
    spawn_pool = WorkerPool("spawn")
    spawned = [worker_start_seconds(spawn_pool)[0] for _ in range(args.spawn_calls)]
    spawn_median = statistics.median(spawned)
    print(f"(c) spawn worker: median {spawn_median:.3f} s of "
          f"{[round(x, 3) for x in spawned]}", file=log)
    ratio = spawn_median / fork_median
    print(f"    spawn / forkserver per-benchmark start-up: {ratio:.1f}x", file=log)

    # (d) a tiny real benchmark on the warm forkserver
    runs = [end_to_end(forkserver) for _ in range(args.e2e_runs)]
    e2e = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"(d) tiny bert benchmark end to end (median of {len(runs)}): wall "
          f"{e2e['wall_s']:.3f} s, measured {e2e['measured_s']:.3f} s "
          f"({e2e['iterations']:.0f} iterations), fixed overhead {e2e['overhead_s']:.3f} s "
          f"(of which model load {e2e['load_time_s']:.3f} s, first call "
          f"{e2e['first_call_s']:.3f} s); overheads {[round(r['overhead_s'], 3) for r in runs]}",
          file=log)
    load_end = loadavg()
    print(f"load average (1/5/15 min): start {load_start}, end {load_end}", file=log)
    if args.json:
        print(json.dumps({
            "benchmark": "fixed_cost",
            "bare_interpreter_s": bare_python,
            "import_torch_transformers_s": imports,
            "import_torch_transformers_median_s": statistics.median(imports),
            "import_statement_median_s": import_statement,
            "forkserver_first_call_s": first,
            "forkserver_calls_s": warm,
            "forkserver_median_s": fork_median,
            "spawn_calls_s": spawned,
            "spawn_median_s": spawn_median,
            "spawn_over_forkserver": ratio,
            "end_to_end_runs": runs,
            "end_to_end_median": e2e,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
