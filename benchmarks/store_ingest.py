"""Store ingest: how fast do runs and their raw samples go into the history stores?

  (a) raw sample rows per second into PostgreSQL through PostgresStore.record_run, with
      bulk="copy" (COPY FROM STDIN) against bulk="executemany" (one INSERT per row, pipelined
      by psycopg). Runs come from tests/helpers.py make_run(samples=N): 2 results x N raw
      samples each (default N = 5,000, so 10,000 sample rows per run), built before timing.
      Rounds alternate: each round records a share of the COPY runs and one executemany run,
      each store in its own fresh database, so the machine's drift hits both alike. The
      timed call is record_run itself (flattening the run into rows, then one transaction).
      Goal: >= 100,000 sample rows/s with COPY. A breakdown then writes the same kind of
      sample rows with a bare COPY (text, as the store does, and binary) into samples and
      into an index-less copy of it, to show where COPY's time goes.
  (b) run records per second for typical runs (make_run's default: 2 results x 20 samples):
      (i) SQLiteStore.record_run (local store: tables + outbox, synchronous=FULL, WAL),
      (ii) PostgresStore.record_run, (iii) end to end through the outbox, one run at a time:
      SQLiteStore.record_run then collector.adapters.store.outbox.forward_pending(local, lambda:
      pg), and (iv) forward_pending draining a backlog of runs already in the outbox.

A throwaway PostgreSQL (tests/pg_server.py, fsync off as for the tests) is started in a
temporary directory and removed at the end, also on error or SIGTERM.

    .venv/bin/python benchmarks/store_ingest.py [--copy-runs 30] [--executemany-runs 3]
        [--samples 5000] [--breakdown-runs 10] [--typical-runs 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from collector.adapters.store.outbox import forward_pending
from collector.adapters.store.postgres import PostgresStore
from collector.adapters.store.rows import SAMPLE_COLUMNS, run_rows
from collector.adapters.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collector.domain.model import RunResult
    from tests.pg_server import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
COPY_GOAL_ROWS_PER_S = 100_000


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _import_test_helpers() -> None:
    """tests/ is not installed: make the repository root importable."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _terminate(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - handler
    raise SystemExit(128 + signum)  # unwinds through the finally that removes the server


def start_server() -> PostgresServer:
    _import_test_helpers()
    from tests.pg_server import start_throwaway

    try:
        return start_throwaway()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def build_runs(count: int, samples: int) -> list[RunResult]:
    _import_test_helpers()
    from tests.helpers import make_run

    runs: list[RunResult] = [make_run(samples=samples) for _ in range(count)]
    return runs


def sample_rows(run: RunResult) -> int:
    return sum(len(values) for r in run.results for values in r.samples.values())


def timed_record(store: PostgresStore | SQLiteStore, run: RunResult) -> float:
    started = time.perf_counter()
    fresh = store.record_run(run)
    elapsed = time.perf_counter() - started
    if not fresh:
        raise SystemExit(f"run {run.run_id} was already stored: run ids must be distinct")
    return elapsed


def bulk_ingest(server: PostgresServer, copy_runs: int, executemany_runs: int,
                samples: int, log: Any) -> dict[str, Any]:
    """(a): sample rows/s, COPY against executemany, in alternating rounds."""
    stores: dict[Literal["copy", "executemany"], PostgresStore] = {
        mode: PostgresStore(server.create_database(f"ingest_{mode}"), bulk=mode)
        for mode in ("copy", "executemany")}
    try:
        # One untimed run each first: connection warm-up and the series rows.
        for store in stores.values():
            timed_record(store, build_runs(1, samples)[0])
        per_round = [copy_runs // executemany_runs + (i < copy_runs % executemany_runs)
                     for i in range(executemany_runs)]
        times: dict[str, list[float]] = {"copy": [], "executemany": []}
        rows: dict[str, int] = {"copy": 0, "executemany": 0}
        flatten: list[float] = []
        for round_index, copies in enumerate(per_round):
            batch = build_runs(copies + 1, samples)
            for run in batch[:copies]:
                times["copy"].append(timed_record(stores["copy"], run))
                rows["copy"] += sample_rows(run)
            times["executemany"].append(timed_record(stores["executemany"], batch[-1]))
            rows["executemany"] += sample_rows(batch[-1])
            started = time.perf_counter()
            run_rows(batch[-1])  # the Python side alone, for the split below
            flatten.append(time.perf_counter() - started)
            print(f"  round {round_index + 1}/{len(per_round)}: {copies} COPY runs "
                  f"{sum(times['copy'][-copies:]):.2f} s, 1 executemany run "
                  f"{times['executemany'][-1]:.2f} s", file=log)
        stored = {mode: int(store._query("SELECT count(*) FROM samples")[0][0])
                  for mode, store in stores.items()}
    finally:
        for store in stores.values():
            store.close()
    rate = {mode: rows[mode] / sum(times[mode]) for mode in times}
    per_run = samples * 2
    return {
        "samples_per_result": samples,
        "sample_rows_per_run": per_run,
        "runs": {mode: len(times[mode]) for mode in times},
        "sample_rows": rows,
        "seconds": {mode: sum(times[mode]) for mode in times},
        "run_seconds_median": {mode: statistics.median(times[mode]) for mode in times},
        "sample_rows_per_s": rate,
        "copy_over_executemany": rate["copy"] / rate["executemany"],
        "run_rows_flatten_s_median": statistics.median(flatten),
        "samples_in_db": stored,
        "goal_rows_per_s": COPY_GOAL_ROWS_PER_S,
        "goal_met": rate["copy"] >= COPY_GOAL_ROWS_PER_S,
    }


def copy_breakdown(server: PostgresServer, runs: int, samples: int) -> dict[str, Any]:
    """Where COPY's time goes: the same sample rows written with a bare COPY (no record_run
    around it) into samples, the same in binary format, and into an index-less copy of the
    samples table (CREATE TABLE ... (LIKE samples), in this throwaway database only)."""
    url = server.create_database("ingest_breakdown")
    PostgresStore(url).close()  # the schema
    ways = {"text COPY into samples": ("samples", False),
            "binary COPY into samples": ("samples", True),
            "text COPY, samples without its primary key": ("samples_noindex", False)}
    seconds = dict.fromkeys(ways, 0.0)
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE samples_noindex (LIKE samples)")
        for _ in range(runs):
            batch = build_runs(len(ways), samples)
            for (name, (table, binary)), run in zip(ways.items(), batch, strict=True):
                data = run_rows(run).samples
                if binary:
                    data = [(uuid.UUID(r[0]), *r[1:]) for r in data]
                statement = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, SAMPLE_COLUMNS)),
                    sql.SQL("(FORMAT BINARY)" if binary else ""))
                started = time.perf_counter()
                with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                    if binary:
                        copy.set_types(["uuid", "text", "text", "int4", "float8"])
                    for row in data:
                        copy.write_row(row)
                seconds[name] += time.perf_counter() - started
            rows += len(data)
    return {name: {"rows": rows, "seconds": t, "rows_per_s": rows / t}
            for name, t in seconds.items()}


def typical_runs(server: PostgresServer, count: int, workdir: Path,
                 log: Any) -> dict[str, Any]:
    """(b): runs/s for make_run's default runs, local, remote and through the outbox."""
    results: dict[str, dict[str, float]] = {}

    def report(name: str, seconds: float, runs: int) -> None:
        results[name] = {"runs": runs, "seconds": seconds, "runs_per_s": runs / seconds,
                         "ms_per_run": seconds / runs * 1e3}
        print(f"  {name}: {runs} runs in {seconds:.2f} s", file=log)

    # (i) SQLite local store
    local = SQLiteStore(workdir / "local-only.db")
    try:
        batch = build_runs(count, 20)
        report("sqlite", sum(timed_record(local, run) for run in batch), count)
    finally:
        local.close()

    # (ii) PostgreSQL directly
    pg = PostgresStore(server.create_database("typical_pg"))
    try:
        batch = build_runs(count + 1, 20)
        timed_record(pg, batch[0])  # warm-up and series rows
        report("postgres", sum(timed_record(pg, run) for run in batch[1:]), count)
    finally:
        pg.close()

    # (iii) end to end, one run at a time: local store, then forward the outbox
    local = SQLiteStore(workdir / "e2e.db")
    pg = PostgresStore(server.create_database("typical_e2e"))
    try:
        batch = build_runs(count + 1, 20)
        for index, run in enumerate(batch):
            started = time.perf_counter()
            local.record_run(run)
            sync = forward_pending(local, lambda: pg)
            elapsed = time.perf_counter() - started
            if not sync.ok or sync.delivered != 1:
                raise SystemExit(f"forward failed: {sync}")
            if index == 0:
                total = 0.0  # the first run is the warm-up
            else:
                total += elapsed
        report("sqlite+forward", total, count)
        if pg.run_count() != count + 1:
            raise SystemExit(f"PostgreSQL holds {pg.run_count()} runs, expected {count + 1}")

        # (iv) draining a backlog: runs recorded locally first (not timed), forwarded at once
        backlog = build_runs(count, 20)
        for run in backlog:
            local.record_run(run)
        started = time.perf_counter()
        sync = forward_pending(local, lambda: pg)
        elapsed = time.perf_counter() - started
        if not sync.ok or sync.delivered != count:
            raise SystemExit(f"backlog forward failed: {sync}")
        report("forward backlog", elapsed, count)
    finally:
        local.close()
        pg.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy-runs", type=int, default=30,
                        help="runs recorded with bulk='copy' in (a)")
    parser.add_argument("--executemany-runs", type=int, default=3,
                        help="runs recorded with bulk='executemany' in (a) (also the rounds)")
    parser.add_argument("--samples", type=int, default=5000,
                        help="raw samples per result in (a); each run has 2 results")
    parser.add_argument("--breakdown-runs", type=int, default=10,
                        help="runs per way of writing the samples in the COPY breakdown")
    parser.add_argument("--typical-runs", type=int, default=300,
                        help="typical runs (2 results x 20 samples) per store in (b)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.executemany_runs < 1 or args.copy_runs < args.executemany_runs:
        parser.error("need --executemany-runs >= 1 and --copy-runs >= --executemany-runs")
    if min(args.samples, args.typical_runs, args.breakdown_runs) < 1:
        parser.error("--samples, --typical-runs and --breakdown-runs must be positive")
    signal.signal(signal.SIGTERM, _terminate)
    load_start = loadavg()
    log = sys.stderr if args.json else sys.stdout
    started = time.perf_counter()

    server = start_server()
    try:
        print(f"throwaway PostgreSQL in {server.directory} ({server.bindir})", file=log)
        print(f"(a) raw samples: {args.copy_runs} COPY runs and {args.executemany_runs} "
              f"executemany runs of 2 x {args.samples} samples", file=log)
        bulk = bulk_ingest(server, args.copy_runs, args.executemany_runs, args.samples, log)
        breakdown = copy_breakdown(server, args.breakdown_runs, args.samples)
        print(f"(b) typical runs: {args.typical_runs} per store", file=log)
        with tempfile.TemporaryDirectory(prefix="collector-bench-sqlite-") as tmp:
            typical = typical_runs(server, args.typical_runs, Path(tmp), log)
    finally:
        server.close()
    load_end = loadavg()
    wall = time.perf_counter() - started

    result = {"benchmark": "store_ingest", "bulk": bulk, "copy_breakdown": breakdown,
              "typical": typical,
              "wall_s": wall, "loadavg_start": load_start, "loadavg_end": load_end}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rate = bulk["sample_rows_per_s"]
    print(f"(a) sample rows/s into PostgreSQL: COPY {rate['copy']:,.0f} "
          f"({bulk['runs']['copy']} runs, {bulk['sample_rows']['copy']:,} rows in "
          f"{bulk['seconds']['copy']:.2f} s, median {bulk['run_seconds_median']['copy']:.3f} "
          f"s/run), executemany {rate['executemany']:,.0f} ({bulk['runs']['executemany']} "
          f"runs, median {bulk['run_seconds_median']['executemany']:.2f} s/run)")
    print(f"    COPY / executemany: {bulk['copy_over_executemany']:.1f}x; flattening one run "
          f"(run_rows, Python only) {bulk['run_rows_flatten_s_median'] * 1e3:.0f} ms of the "
          f"COPY run's {bulk['run_seconds_median']['copy'] * 1e3:.0f} ms")
    verdict = "goal met" if bulk["goal_met"] else "goal NOT met"
    print(f"    goal >= {COPY_GOAL_ROWS_PER_S:,} sample rows/s with COPY: {verdict}")
    print("    where COPY's time goes (sample rows only, without record_run): "
          + ", ".join(f"{name} {r['rows_per_s']:,.0f} rows/s" for name, r in breakdown.items()))
    line = ", ".join(f"{name} {r['runs_per_s']:.0f} runs/s ({r['ms_per_run']:.1f} ms/run)"
                     for name, r in typical.items())
    print(f"(b) typical runs (2 results x 20 samples): {line}")
    print(f"wall {wall:.0f} s; load average (1/5/15 min): start {load_start}, end {load_end}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
