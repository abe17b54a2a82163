"""What regression detection costs after a run, and for a full scan.

Builds a local store (SQLite) with SERIES series of RUNS runs each (the metrics the engine
stores for a text model: 15 of them judged), then times, in one process:

  * the detector alone: one replay of `history_runs` points (the unit of work);
  * the after-run scan: `scan(store, series_ids=<one run's series>)`, as run-once does;
  * a full scan of every series (`collector regressions scan`).

    .venv/bin/python benchmarks/detection_cost.py [--series 9] [--runs 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers, when run as a file

from collector.adapters.store import SQLiteStore
from collector.detect.detector import detectable, replay
from collector.domain.catalogue import METRICS, Direction
from collector.usecases.scan import ScanSettings, scan
from tests.helpers import make_run


def _seconds(action: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()  # type: ignore[operator]  # a callable, typed loosely for brevity
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=9)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = ScanSettings()
    rng = random.Random(0)  # noqa: S311 - seeded synthetic noise, nothing secret
    points = [1 + 0.03 * rng.gauss(0, 1) for _ in range(settings.history_runs)]
    one = _seconds(lambda: replay(points, Direction.LOWER_IS_BETTER), args.repeat)

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "local.db")
        models = ("bert", "vit", "gpt2")
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        hosts = [f"host-{i}" for i in range(max(1, args.series // len(models)))]
        build = time.perf_counter()
        for run in range(args.runs):
            for host in hosts:
                store.record_run(make_run(host=host, models=models, samples=5,
                                          when=start + timedelta(hours=run),
                                          latency=0.01 * (1 + 0.03 * rng.gauss(0, 1))))
        built = time.perf_counter() - build
        series = store.list_series()
        judged = sum(detectable(m) for m in METRICS)
        first_host = [s.series_id for s in series if s.host == hosts[0]]
        after_run = _seconds(lambda: scan(store, series_ids=first_host), args.repeat)
        full = _seconds(lambda: scan(store), max(1, args.repeat // 2))
        store.close()

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1e3:.0f} ms (min {min(values) * 1e3:.0f})"

    print(f"store: {len(series)} series x {args.runs} runs (built in {built:.0f} s); "
          f"{judged} catalogue metrics are judged, make_run stores 4 of them")
    print(f"one replay of {settings.history_runs} points: {ms(one)}")
    print(f"after-run scan of one run's {len(first_host)} series: {ms(after_run)}")
    print(f"full scan of {len(series)} series: {ms(full)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
