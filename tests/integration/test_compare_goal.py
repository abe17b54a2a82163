"""What `compare --format json` prints holds together, for any two results files: each row's
ratio is B/A of the values printed beside it (each side's run, or the geometric mean of its
runs), and a deterministic metric equal on both sides reads 1.000x, exact, same."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.domain.catalogue import METRICS
from collector.present.documents import results_document
from tests.helpers import FAST_MEASUREMENT, benchmark_yaml, make_run
from tests.helpers import run_collector as collector


def check_rows(document: dict[str, Any], sides: tuple[list[dict[str, Any]], ...]) -> int:
    """Every row against the results files' own values; the rows checked."""
    values: list[dict[tuple[str, str], list[float]]] = []
    for side in sides:
        found: dict[tuple[str, str], list[float]] = {}
        for doc in side:
            for run in doc["runs"]:
                for result in run["results"]:
                    if result["status"] != "ok":
                        continue
                    name = result["spec"]["name"]
                    for metric, value in result["metrics"].items():
                        found.setdefault((name, metric), []).append(value)
        values.append(found)
    for row in document["rows"]:
        name = row["workload"].split(" ")[0]
        for found_side, key in ((values[0], "a"), (values[1], "b")):
            runs = found_side[(name, row["metric"])]
            expected = math.exp(sum(map(math.log, runs)) / len(runs)) if len(set(runs)) > 1 \
                else runs[0]
            assert row[key] == pytest.approx(expected, rel=1e-12), (row, key, runs)
        assert row["ratio"] == pytest.approx(row["b"] / row["a"], rel=1e-12), row
        # As printed (3 decimals), the ratio is the printed values' ratio within rounding.
        assert abs(round(row["ratio"], 3) - row["b"] / row["a"]) <= 0.0005 + 1e-12
        if METRICS[row["metric"]].profile.exact:
            assert row["exact"] and row["method"] == "exact"
            if row["a"] == row["b"]:
                assert (row["ratio"], row["ci95"], row["verdict"]) == (1.0, [1.0, 1.0], "same")
    return len(document["rows"])


def test_random_results_files_hold_together(tmp_path: Path) -> None:
    rng = random.Random(2212)
    checked = 0
    for trial in range(6):
        sides = []
        for side in "ab":
            docs = []
            for index in range(rng.choice((1, 1, 2, 3))):
                level = rng.uniform(0.001, 0.05)
                run = make_run(latency=level, metrics={
                    "peak_rss_bytes": 3e8 if trial % 2 else 3e8 + rng.randrange(4) * 2**20,
                    "output_top1_agreement_ratio": 1.0,
                    "first_call_seconds": level * rng.uniform(1, 50)})
                docs.append(results_document([run]))
                (tmp_path / f"{trial}-{side}-{index}.json").write_text(json.dumps(docs[-1]))
            sides.append(docs)
        files = {side: sorted(str(p) for p in tmp_path.glob(f"{trial}-{side}-*.json"))
                 for side in "ab"}
        proc = collector("compare", "--a", *files["a"], "--b", *files["b"], "--all-metrics",
                         "--format", "json")
        assert proc.returncode == 0, proc.stderr
        checked += check_rows(json.loads(proc.stdout), (sides[0], sides[1]))
    assert checked >= 6 * 2 * 5


def test_two_real_runs_hold_together(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    with config.open("w") as handle:
        YAML().dump({"version": 1, "suites": {"t": {"benchmarks": [
            benchmark_yaml("bert", measurement={**FAST_MEASUREMENT, "repetitions": 2})]}}},
            handle)
    files = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        proc = collector("run-once", "--config", str(config), "--output", str(out),
                         "--no-progress", "--no-confirm", "--local-store",
                         str(tmp_path / "db.sqlite"))
        assert proc.returncode == 0, proc.stderr
        files.append(out)
    proc = collector("compare", *map(str, files), "--all-metrics", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    docs = [json.loads(f.read_text()) for f in files]
    assert check_rows(document, ([docs[0]], [docs[1]])) >= 5
    rss = [row for row in document["rows"] if row["metric"] == "peak_rss_bytes"]
    assert rss and rss[0]["exact"] and rss[0]["ci95"] == [rss[0]["ratio"]] * 2
