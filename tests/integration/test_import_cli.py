"""`collector import` as a user runs it, over every committed fixture of every format: 0
points lost, 0 duplicated (twice, or one run in two forms), a malformed file stops the
import before anything is written, with one line naming the file and record."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from collector.adapters.imports import read_points
from collector.adapters.imports.common import build_runs
from tests.helpers import run_collector

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
# Every fixture a user would hand over (the module's export as its directory).
SOURCES = [
    FIXTURES / "transformers-benchmark" / "export",
    *sorted((FIXTURES / "optimum-benchmark").glob("*/benchmark.json")),
    FIXTURES / "optimum-benchmark" / "tiny-llama-text-generation" / "benchmark_report.json",
    *sorted((FIXTURES / "benchmark_v2").glob("*.json*")),
    *sorted((FIXTURES / "vllm-bench-serve").glob("*.json")),
    *sorted((FIXTURES / "guidellm").glob("*.json")),
]


def _stored(db: Path) -> tuple[int, ...]:
    """(runs, results, measurements) in the local store."""
    with sqlite3.connect(db) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - our table names
                     for table in ("runs", "results", "measurements"))


def _import(db: Path, *paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    proc = run_collector("import", *map(str, paths), "--local-store", str(db), *extra,
                         timeout=180)
    return proc.returncode, proc.stdout, proc.stderr


def test_every_format_imports_with_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    expected = build_runs([p for source in SOURCES for p in read_points(source)])
    points = sum(len(run.results) for run in expected)
    values = sum(len(r.metrics) for run in expected for r in run.results)
    origins = {run.suite for run in expected}
    assert origins == {"transformers-benchmark", "optimum-benchmark", "benchmark_v2",
                       "vllm-bench-serve", "guidellm"}
    db = tmp_path / "local.db"
    code, out, err = _import(db, *SOURCES, extra=("--no-detect",))
    assert code == 0, err
    assert out.startswith(f"imported {points} point(s) of ")
    assert f"{len(expected)} new run(s), 0 already stored" in out
    assert _stored(db) == (len(expected), points, values)

    # Again, and with the other form of an optimum-benchmark run already given (its
    # benchmark.json: config and report in one file): nothing new.
    run = FIXTURES / "optimum-benchmark" / "tiny-llama-text-generation"
    combined = tmp_path / "benchmark.json"
    combined.write_text(json.dumps({
        "config": json.loads((run / "benchmark_config.json").read_text()),
        "report": json.loads((run / "benchmark_report.json").read_text())}))
    code, out, err = _import(db, *SOURCES, combined)
    assert code == 0, err
    assert f"0 new run(s), {len(expected)} already stored" in out
    assert _stored(db) == (len(expected), points, values)

    # Every imported series says where it came from, and reads like the collector's own.
    proc = run_collector("report", "--local-store", str(db), "suite=vllm-bench-serve",
                         "--format", "markdown", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "every result imported (their tools recorded neither" in proc.stdout
    assert "Nothing: every benchmark succeeded; all were imported (" in proc.stdout
    assert "measured clean" not in proc.stdout
    results = proc.stdout.split("## Results", 1)[1]
    rows = [line for line in results.splitlines() if line.startswith("| ") and "@" in line]
    assert rows and all("from vllm-bench-serve @ imported" in row for row in rows), rows


def test_a_malformed_file_keeps_nothing_and_names_its_record(tmp_path: Path) -> None:
    bad = tmp_path / "vllm-broken.json"
    good = FIXTURES / "vllm-bench-serve" / "serve-009e6d4a-concurrency8.json"
    document = json.loads(good.read_text())
    document["mean_ttft_ms"] = "fast"
    bad.write_text(json.dumps(document))
    db = tmp_path / "local.db"
    code, out, err = _import(db, *SOURCES[:3], bad)
    assert code == 2
    assert out == ""
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {bad}") and "mean_ttft_ms" in line, line
    assert "Traceback" not in err
    assert not db.exists() or _stored(db) == (0, 0, 0)


def test_nothing_to_import_and_an_unset_database_variable_are_usage_errors(
        tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    code, _, err = _import(db)
    assert code == 2 and "nothing to import" in err
    code, _, err = _import(db, extra=("--module-database-env", "NO_SUCH_VARIABLE_SET"))
    assert code == 2 and "$NO_SUCH_VARIABLE_SET is not set" in err
    code, out, err = _import(db, SOURCES[1], extra=("--dry-run",))
    assert out == ""
    assert code == 0 and "nothing written" in err
    assert not db.exists()
