"""How long `collector import` takes for a year of 100 series, end to end.

The history: transformers benchmark_v2 result files, one JSON Lines file per daily run (as
its runner writes one result set per run), 365 days x 100 series (25 models x 4 configs),
each record a copy of the committed fixture's first record (tests/fixtures/imports/
benchmark_v2/full_results.jsonl: 10 e2e latencies, TTFTs and ITLs, GPU samples, decoded
outputs) with its model, configuration, commit (a new one every 7 days), timestamp and
values changed, so every record is a realistic size. Two forms, as the runner writes them:
full (every new token's time: about 320 inter-token gaps a record, each kept as a sample:
12 million sample rows a year) and summarized (no token times: about 30 samples a
record).

Each trial is the whole command as a user runs it, in a fresh process:
`collector import DIR/*.jsonl --local-store NEW.db` (and, with `--postgres`, into a fresh
database of a throwaway PostgreSQL 15 as the store of record), reading, checking, writing
in one transaction and scanning every imported series. Then the same import again, which
must add nothing. Trials alternate the stores (interleaved); the figure is the median with
the min-max range.

    .venv/bin/python benchmarks/import_speed.py [--trials 3] [--forms summarized,full]
        [--postgres] [--no-detect] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/ is not installed
    sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "tests" / "fixtures" / "imports" / "benchmark_v2" / "full_results.jsonl"
DAYS, MODELS, CONFIGS = 365, 25, 4
START = datetime(2025, 1, 1, 6, tzinfo=timezone.utc)


def write_history(directory: Path, form: str, days: int = DAYS, models: int = MODELS) -> int:
    """One JSONL file per day; returns the records written. `full`: every token's time
    (the gaps are the inter-token latency's samples: ~320 a record); `summarized`: none,
    as the runner's summarized results (~30 samples a record)."""
    template = json.loads(FIXTURE.read_text().splitlines()[0])
    if form == "summarized":
        template["measurements"]["timestamps"] = None
    rng = random.Random(1)  # noqa: S311 - seeded noise for made-up timings, not secrets
    shapes = [(1, 128), (4, 128), (1, 512), (4, 512)][:CONFIGS]
    count = 0
    for day in range(days):
        lines = []
        when = START + timedelta(days=day)
        commit = f"{(day // 7) * 7919 + 104729:07x}"[:7] + "0" * 33
        for model in range(models):
            for batch, sequence in shapes:
                record = copy.deepcopy(template)
                config = record["config"]
                config.update(batch_size=batch, sequence_length=sequence,
                              name=f"b{batch}_s{sequence}-m{model}")
                scale = (1 + model / 10) * batch ** 0.3 * (sequence / 128) ** 0.2
                for key in ("e2e_latency", "time_to_first_token", "inter_token_latency"):
                    record["measurements"][key] = [
                        v * scale * (1 + rng.gauss(0, 0.02))
                        for v in template["measurements"][key]]
                record["metadata"].update(model_id=f"org/model-{model:02d}",
                                          timestamp=when.isoformat(), commit_id=commit)
                record["benchmark_config_hash"] = f"{model:02d}{batch}{sequence}" + "0" * 56
                lines.append(json.dumps(record))
                count += 1
        (directory / f"run-{day:03d}.jsonl").write_text("\n".join(lines) + "\n")
    return count


def run_import(files: list[str], local: Path, url: str | None,
               extra: tuple[str, ...] = ()) -> tuple[float, str]:
    env = {**os.environ, "COLLECTOR_DATA_DIR": str(local.parent),
           "PYTHONPATH": str(ROOT)}
    env.pop("COLLECTOR_DATABASE_URL", None)
    if url is not None:
        env["COLLECTOR_DATABASE_URL"] = url
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "collector", "import", *files,
                           "--local-store", str(local), *extra],
                          capture_output=True, text=True, env=env, check=False,
                          timeout=600, cwd=local.parent)  # no configs/default.yml there
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout.strip().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--forms", default="summarized,full")
    parser.add_argument("--postgres", action="store_true",
                        help="also import into a throwaway PostgreSQL 15 (interleaved)")
    parser.add_argument("--no-detect", action="store_true",
                        help="time the import without the scan that follows it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tests.pg_server import start_throwaway

    work = Path(tempfile.mkdtemp(prefix="import-speed-"))
    forms = args.forms.split(",")
    files: dict[str, list[str]] = {}
    result: dict[str, Any] = {"trials": args.trials, "detect": not args.no_detect}
    for form in forms:
        history = work / form
        history.mkdir()
        began = time.perf_counter()
        records = write_history(history, form)
        files[form] = sorted(str(p) for p in history.glob("*.jsonl"))
        size = sum(Path(f).stat().st_size for f in files[form])
        result[f"{form}_records"], result[f"{form}_mib"] = records, size / 2**20
        print(f"{form}: {records} records in {len(files[form])} files, {size / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - began:.0f} s)", flush=True)
    server = start_throwaway() if args.postgres else None
    stores = ["sqlite", "postgres"] if server is not None else ["sqlite"]
    timings: dict[str, list[float]] = {}
    extra = ("--no-detect",) if args.no_detect else ()
    try:
        for trial in range(args.trials):
            for form in forms:
                for store in stores:
                    url = (server.create_database(f"import_{form}_{trial}")
                           if store == "postgres" and server is not None else None)
                    local = work / f"{form}-{store}-{trial}.db"
                    first, summary = run_import(files[form], local, url, extra)
                    again, repeat = run_import(files[form], local, url, extra)
                    if " 0 new run(s)" not in repeat:
                        raise SystemExit(f"the second import added runs: {repeat}")
                    timings.setdefault(f"{form} {store} import", []).append(first)
                    timings.setdefault(f"{form} {store} again", []).append(again)
                    print(f"trial {trial + 1} {form:<10} {store:<8}: import {first:5.1f} s, "
                          f"again {again:5.1f} s ({summary})", flush=True)
    finally:
        if server is not None:
            server.stop()
    for name, values in timings.items():
        result[name.replace(" ", "_") + "_s"] = {
            "median": statistics.median(values), "min": min(values), "max": max(values)}
        print(f"{name:<28}: median {statistics.median(values):6.1f} s (range "
              f"{min(values):.1f}-{max(values):.1f} s, {len(values)} trials)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
