"""The transformers benchmark module's history (collector/adapters/imports/module_tables.py),
read from its tables in a real PostgreSQL (tests/fixtures_pg.py) created with the module's
own init_db.sql, and from its CSV exports: the same rows give the same runs and series
either way; malformed rows and unreachable or refusing servers give one line naming the
table and record (or file and line), never the URL's password.

`history` and `write_export` are the script behind the committed fixture export
(tests/fixtures/imports/transformers-benchmark/README.md)."""

from __future__ import annotations

import csv
import json
import random
import shutil
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from collector.adapters.imports import module_tables
from collector.adapters.imports.common import ImportedPoint, build_runs, read_source
from collector.adapters.imports.module_tables import read, read_database, recognises
from collector.domain.catalogue import METRICS
from collector.domain.errors import InputError, StoreError
from collector.domain.workload import Origin
from tests.pg_server import free_port

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports" / "transformers-benchmark"
STAMP = "20250312_091500"  # the committed export's suffix, as export_to_csv names files
GPU = "NVIDIA A10G"
MODEL = "meta-llama/Llama-2-7b-hf"
SECRET = "Qx7mod-secret"  # noqa: S105 - a made-up password the tests look for
T0 = datetime(2025, 3, 10, 9, 15, 0, 125000)  # naive UTC, as the module writes it

# The model measurements as llama.py records them (the jsonb era), in the export's column
# order (MetricsRecorder's model_measurements_df).
MEASURED = ("model_load_time", "first_eager_forward_pass_time_secs",
            "second_eager_forward_pass_time_secs", "first_eager_generate_time_secs",
            "second_eager_generate_time_secs", "time_to_first_token_secs",
            "time_to_second_token_secs", "time_to_third_token_secs",
            "time_to_next_token_mean_secs", "first_compile_generate_time_secs",
            "second_compile_generate_time_secs", "third_compile_generate_time_secs",
            "fourth_compile_generate_time_secs")
BENCHMARK_COLUMNS = ("benchmark_id", "repository", "branch", "commit_id", "commit_message",
                     "metadata", "created_at")
DEVICE_COLUMNS = ("cpu_util", "mem_megabytes", "gpu_util", "gpu_mem_megabytes")


@dataclass(frozen=True)
class Row:
    """One benchmark of the module: its benchmarks row, model measurements and device
    samples (cpu_util, mem_megabytes, gpu_util, gpu_mem_megabytes)."""

    benchmark_id: str
    branch: str
    commit_id: str
    commit_message: str
    created_at: datetime
    measurements: dict[str, float | None]
    device: list[tuple[float, float, float, float]]
    metadata: dict[str, Any] = field(default_factory=lambda: {"gpu_name": GPU,
                                                              "model_id": MODEL})
    repository: str = "huggingface/transformers"


def history(ids: Sequence[str]) -> list[Row]:
    """Llama-2-7b on an A10G at successive commits of main (and one pull request's branch),
    a day apart; from the fourth, eager generate() is 20% slower. Values are made up to look
    like the module's runs (seconds; MiB sampled every ~10 ms), not measured."""
    rng = random.Random(25)
    rows = []
    for index, benchmark_id in enumerate(ids):
        slow = 1.2 if index >= 3 else 1.0
        generate = 3.21 * slow * (1 + rng.gauss(0, 0.01))
        measurements: dict[str, float | None] = {
            "model_load_time": 8.4 + rng.gauss(0, 0.2),
            "first_eager_forward_pass_time_secs": 0.912 + rng.gauss(0, 0.02),
            "second_eager_forward_pass_time_secs": 0.0318 + rng.gauss(0, 0.0005),
            "first_eager_generate_time_secs": generate * 1.3,
            "second_eager_generate_time_secs": generate,
            "time_to_first_token_secs": 41.7 + rng.gauss(0, 1.0),
            "time_to_second_token_secs": 12.9 + rng.gauss(0, 0.5),
            "time_to_third_token_secs": 0.0291 + rng.gauss(0, 0.0005),
            "time_to_next_token_mean_secs": 0.0287 + rng.gauss(0, 0.0003),
            "first_compile_generate_time_secs": 58.3 + rng.gauss(0, 1.0),
            "second_compile_generate_time_secs": 2.95 + rng.gauss(0, 0.02),
            "third_compile_generate_time_secs": 2.93 + rng.gauss(0, 0.02),
            "fourth_compile_generate_time_secs": 2.94 + rng.gauss(0, 0.02),
        }
        if index == 1:  # a value the run did not record (None in the recorder's dict)
            measurements["time_to_first_token_secs"] = None
        device = [(rng.uniform(20, 100), 2900 + 40 * step + rng.uniform(0, 30),
                   rng.uniform(40, 99), 14000 + 60 * step + rng.uniform(0, 50))
                  for step in range(12)]
        sha = f"{rng.getrandbits(160):040x}"
        branch, message = ("main", f"Merge pull request #{36000 + index}")
        if index == 2:
            branch, message = "fix-static-cache", "Fix static cache warm-up"
        rows.append(Row(benchmark_id, branch, sha, message, T0 + timedelta(days=index),
                        measurements, device))
    return rows


def serial_history() -> list[Row]:
    return history([str(n) for n in range(1, 5)])


def uuid_history() -> list[Row]:
    rng = random.Random(2025)
    return history([str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(4)])


def insert(url: str, rows: Sequence[Row], schema: str = "init_db.sql") -> None:
    """Create the module's tables and insert the rows as its MetricsRecorder does."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((FIXTURES / schema).read_text())
        for row in rows:
            conn.execute(
                "INSERT INTO benchmarks (benchmark_id, repository, branch, commit_id, "
                "commit_message, metadata, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (int(row.benchmark_id), row.repository, row.branch, row.commit_id,
                 row.commit_message, Jsonb(row.metadata), row.created_at))
            for step, sample in enumerate(row.device):
                conn.execute(
                    "INSERT INTO device_measurements (benchmark_id, cpu_util, mem_megabytes, "
                    "gpu_util, gpu_mem_megabytes, time) VALUES (%s, %s, %s, %s, %s, %s)",
                    (int(row.benchmark_id), *sample,
                     row.created_at + timedelta(milliseconds=10 * step)))
            conn.execute(
                "INSERT INTO model_measurements (benchmark_id, measurements, time) "
                "VALUES (%s, %s, %s)",
                (int(row.benchmark_id), Jsonb(row.measurements),
                 row.created_at + timedelta(minutes=4)))


def _cell(value: Any) -> str:
    """A value as pandas' to_csv writes it: floats by repr, None empty."""
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_cell(v) for v in row] for row in rows)


def write_export(directory: Path, stamp: str, rows: Sequence[Row]) -> None:
    """The four files MetricsRecorder.export_to_csv writes (benchmark/benchmarks_entrypoint.py,
    2025-07): the same columns, in its order, and its summary's aggregates (pandas: mean,
    max, sample std rounded to 3 places; the count of samples)."""
    directory.mkdir(parents=True, exist_ok=True)
    benchmarks = [(r.benchmark_id, r.repository, r.branch, r.commit_id, r.commit_message,
                   json.dumps(r.metadata), r.created_at.isoformat()) for r in rows]
    _write(directory / f"benchmarks_{stamp}.csv", BENCHMARK_COLUMNS, benchmarks)
    _write(directory / f"device_measurements_{stamp}.csv",
           ("benchmark_id", *DEVICE_COLUMNS, "time"),
           [(r.benchmark_id, *sample,
             (r.created_at + timedelta(milliseconds=10 * step)).isoformat())
            for r in rows for step, sample in enumerate(r.device)])
    _write(directory / f"model_measurements_{stamp}.csv", ("benchmark_id", "time", *MEASURED),
           [(r.benchmark_id, (r.created_at + timedelta(minutes=4)).isoformat(),
             *(r.measurements[name] for name in MEASURED)) for r in rows])
    aggregates: list[str] = []
    for column in DEVICE_COLUMNS:
        aggregates += [f"{column}_mean", f"{column}_max", f"{column}_std"]
        if column == "cpu_util":
            aggregates.append("device_measurement_count")
    summary = []
    for row, bench in zip(rows, benchmarks, strict=True):
        values: list[Any] = [row.measurements[name] for name in MEASURED]
        for index, column in enumerate(DEVICE_COLUMNS):
            samples = [sample[index] for sample in row.device]
            values += [round(statistics.fmean(samples), 3), round(max(samples), 3),
                       round(statistics.stdev(samples), 3)]
            if column == "cpu_util":
                values.append(len(samples))
        summary.append((*bench, *values))
    _write(directory / f"benchmark_summary_{stamp}.csv",
           (*BENCHMARK_COLUMNS, *MEASURED, *aggregates), summary)


def with_password(url: str, password: str = SECRET) -> str:
    """A test database's URL (trust authentication: any password is let in) with one."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


def by_run(points: Sequence[ImportedPoint]) -> dict[str, dict[str, dict[str, float]]]:
    """run id -> series id -> metrics, as build_runs makes them."""
    return {run.run_id: {r.series_id: dict(r.metrics) for r in run.results}
            for run in build_runs(points)}


def one_line_without_secret(text: str) -> None:
    assert "\n" not in text
    assert SECRET not in text
    assert "Qx7mod" not in text


# -- the database ---------------------------------------------------------------------------


def test_the_tables_read_as_runs_of_their_own_series_with_commit_gpu_and_time(
        pg_url: str) -> None:
    rows = serial_history()
    insert(pg_url, rows)
    points = read_database(with_password(pg_url))
    # Per benchmark: eager forward, eager generate, compiled generate (no compiled forward
    # in the jsonb era).
    assert len(points) == 3 * len(rows)
    assert {p.origin for p in points} == {Origin.TRANSFORMERS_BENCHMARK}
    first = [p for p in points if p.where.endswith("model_measurements.measurement_id=1")]
    forward, generate, compiled = sorted(
        first, key=lambda p: (p.spec["backend"] == "compile", p.spec["new_tokens"]))
    measured, row = rows[0].measurements, rows[0]

    def seconds(name: str) -> float:
        value = measured[name]
        assert value is not None
        return value

    for point in first:
        assert point.spec["model"] == {"source": "hub", "id": MODEL}
        assert point.spec["name"] == "meta-llama_Llama-2-7b-hf"
        assert (point.spec["task"], point.spec["device"], point.spec["dtype"],
                point.spec["batch_size"], point.spec["sequence_length"]) == (
            "text-generation", "cuda", "float16", 1, 7)
        assert point.time == row.created_at.replace(tzinfo=timezone.utc)
        assert point.host == GPU
        assert point.environment == {"gpu_name": GPU, "commit": f"main@{row.commit_id}"}
    assert (forward.spec["backend"], forward.spec["new_tokens"]) == ("eager", 1)
    assert forward.metrics == {
        "first_call_seconds": measured["first_eager_forward_pass_time_secs"],
        "latency_p50_seconds": measured["second_eager_forward_pass_time_secs"],
        "load_time_seconds": measured["model_load_time"],
        "peak_rss_bytes": max(s[1] for s in row.device) * 2**20}
    assert METRICS["peak_rss_bytes"].unit == "bytes"
    assert (generate.spec["backend"], generate.spec["new_tokens"]) == ("eager", 100)
    assert generate.metrics == {
        "first_call_seconds": measured["first_eager_generate_time_secs"],
        "latency_p50_seconds": measured["second_eager_generate_time_secs"]}
    steady = [seconds(f"{n}_compile_generate_time_secs") for n in ("second", "third", "fourth")]
    assert (compiled.spec["backend"], compiled.spec["new_tokens"]) == ("compile", 100)
    assert compiled.spec["compile"] == {"mode": "reduce-overhead", "fullgraph": True}
    assert compiled.samples == {"latency_seconds": steady}
    first_call = seconds("first_compile_generate_time_secs")
    assert compiled.metrics == pytest.approx({
        "first_call_seconds": first_call,
        "latency_p50_seconds": statistics.median(steady),
        "latency_mean_seconds": statistics.fmean(steady),
        "latency_min_seconds": min(steady),
        "compile_time_seconds": first_call - statistics.median(steady),
        "time_to_first_token_p50_seconds": measured["time_to_first_token_secs"],
        "inter_token_latency_mean_seconds": measured["time_to_next_token_mean_secs"]})
    # A null measurement is absent; a pull request's run names its branch.
    second = [p for p in points if p.where.endswith("measurement_id=2")
              and p.spec["backend"] == "compile"]
    assert "time_to_first_token_p50_seconds" not in second[0].metrics
    third = next(p for p in points if p.where.endswith("measurement_id=3"))
    assert third.environment["commit"] == f"fix-static-cache@{rows[2].commit_id}"

    runs = build_runs(points)
    assert len(runs) == len(rows)  # one run per benchmark row, three series each
    assert all(len(run.results) == 3 for run in runs)
    assert len({r.series_id for run in runs for r in run.results}) == 3
    assert all(r.spec.origin is Origin.TRANSFORMERS_BENCHMARK for run in runs
               for r in run.results)
    assert all(r.environment.commit for run in runs for r in run.results)
    again = build_runs(read_database(pg_url))  # the same history: the same ids
    assert [run.run_id for run in again] == [run.run_id for run in runs]
    assert by_run(read_database(pg_url)) == by_run(points)


def test_the_first_schema_a_column_per_measurement_reads_too(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute((FIXTURES / "init_db_columns.sql").read_text())
        for day, (sha, load) in enumerate((("a1b2c3d", 9.1), ("e4f5a6b", 9.3))):
            conn.execute("INSERT INTO benchmarks (branch, commit_id, commit_message, gpu_name, "
                         "created_at) VALUES ('main', %s, 'msg', 'NVIDIA A10G', %s)",
                         (sha, T0 + timedelta(days=day)))
            conn.execute(
                "INSERT INTO model_measurements (benchmark_id, model_load_time, "
                "first_eager_forward_pass_time_secs, second_eager_forward_pass_time_secs, "
                "first_compile_forward_pass_time_secs, second_compile_forward_pass_time_secs, "
                "third_compile_forward_pass_time_secs, fourth_compile_forward_pass_time_secs) "
                "VALUES (%s, %s, 0.9, 0.031, 52.0, 0.012, 0.011, 0.013)", (day + 1, load))
    points = read_database(pg_url)
    assert len(points) == 4  # eager forward and compiled forward, per benchmark
    eager = [p for p in points if p.spec["backend"] == "eager"]
    compiled = [p for p in points if p.spec["backend"] == "compile"]
    assert [p.metrics["load_time_seconds"] for p in eager] == [9.1, 9.3]
    assert "peak_rss_bytes" not in eager[0].metrics  # no device samples in these runs
    assert all(p.spec["new_tokens"] == 1 and p.spec["model"]["id"] == MODEL for p in points)
    assert compiled[0].metrics == pytest.approx({
        "first_call_seconds": 52.0, "latency_p50_seconds": 0.012,
        "latency_mean_seconds": 0.012, "latency_min_seconds": 0.011,
        "compile_time_seconds": 52.0 - 0.012})
    assert [p.environment for p in compiled] == [
        {"gpu_name": GPU, "commit": "main@a1b2c3d"}, {"gpu_name": GPU, "commit": "main@e4f5a6b"}]
    assert len(build_runs(points)) == 2


def test_a_malformed_row_of_the_tables_is_named(pg_url: str) -> None:
    rows = serial_history()[:2]
    bad = replace(rows[1], measurements={**rows[1].measurements, "model_load_time": "fast"})  # type: ignore[dict-item] # a malformed row on purpose
    insert(pg_url, [rows[0], bad])
    with pytest.raises(InputError) as caught:
        read_database(with_password(pg_url))
    text = str(caught.value)
    one_line_without_secret(text)
    assert "model_measurements.measurement_id=2: model_load_time: expected a finite number" \
        in text


def test_a_database_without_the_modules_tables_or_with_too_many_rows_is_refused(
        pg_url: str) -> None:
    with pytest.raises(InputError, match="no table benchmarks") as caught:
        read_database(with_password(pg_url))
    one_line_without_secret(str(caught.value))
    insert(pg_url, serial_history())
    with pytest.raises(InputError, match="table benchmarks has more than 3 rows") as caught:
        read_database(with_password(pg_url), limit_rows=3)
    one_line_without_secret(str(caught.value))


def test_a_statement_that_waits_past_the_timeout_is_given_up(pg_url: str) -> None:
    insert(pg_url, serial_history()[:1])
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE benchmarks IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StoreError, match="did not finish a statement in time") as caught:
            read_database(with_password(pg_url), statement_timeout_s=0.5)
        holder.rollback()
    one_line_without_secret(str(caught.value))


@pytest.mark.parametrize("case", ["unknown role", "unreachable port", "password misread"])
def test_a_server_that_refuses_or_is_away_never_shows_the_password(
        case: str, pg_url: str) -> None:
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    database = pg_url.rsplit("/", 1)[1]
    url = {
        "unknown role": f"postgresql://nobody_{uuid.uuid4().hex[:6]}:{SECRET}@{host_port}/"
                        f"{database}",
        "unreachable port": f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/{database}",
        # An unencoded '/' in the password: libpq reads a host and a port out of it.
        "password misread": f"postgresql://postgres:{SECRET}/Qx7mod-tail@{host_port}/{database}",
    }[case]
    with pytest.raises(StoreError) as caught:
        read_database(url, connect_timeout_s=3)
    text = str(caught.value)
    one_line_without_secret(text)
    assert "Qx7mod" not in repr(caught.value)


# -- the CSV exports ------------------------------------------------------------------------


def test_the_export_reads_to_the_runs_and_series_of_the_database(
        pg_url: str, tmp_path: Path) -> None:
    rows = serial_history()
    insert(pg_url, rows)
    write_export(tmp_path / "export", STAMP, rows)
    from_database = by_run(read_database(pg_url))
    directory = read(tmp_path / "export", "")
    benchmarks_file = tmp_path / "export" / f"benchmarks_{STAMP}.csv"
    from_file = read(benchmarks_file, read_source(benchmarks_file))
    assert by_run(directory) == from_database  # one history, two ways in
    assert by_run(from_file) == from_database
    assert [p.time for p in directory] == [p.time for p in read_database(pg_url)]
    assert {p.where.rsplit(":", 1)[0] for p in directory} == {
        str(tmp_path / "export" / f"model_measurements_{STAMP}.csv")}
    # Through the benchmarks file, its siblings add nothing (a glob of the directory
    # imports each run once); the summary alone gives the same runs and series (its peak
    # RSS is the rounded maximum).
    for kind in ("model_measurements", "device_measurements", "benchmark_summary"):
        sibling = tmp_path / "export" / f"{kind}_{STAMP}.csv"
        assert recognises(sibling, read_source(sibling))
        assert read(sibling, read_source(sibling)) == []
    alone = tmp_path / "summary" / f"benchmark_summary_{STAMP}.csv"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "export" / alone.name, alone)
    assert recognises(alone.parent, "")
    summary = by_run(read(alone.parent, ""))
    assert summary.keys() == from_database.keys()
    for run_id, series in from_database.items():
        assert summary[run_id].keys() == series.keys()
        for series_id, metrics in series.items():
            assert summary[run_id][series_id] == pytest.approx(metrics, rel=1e-6)


def test_the_committed_export_is_the_scripts_and_reads_by_its_uuids(tmp_path: Path) -> None:
    committed = FIXTURES / "export"
    write_export(tmp_path, STAMP, uuid_history())
    for written in sorted(tmp_path.iterdir()):
        assert (committed / written.name).read_text() == written.read_text(), written.name
    assert recognises(committed, "")
    points = read(committed, "")
    assert len(points) == 12
    assert {p.spec["model"]["id"] for p in points} == {MODEL}
    runs = by_run(points)
    # A UUID names the run whatever its created_at says: the 2025 recorder stamps the
    # database's row and the CSV's each with its own clock.
    shifted = [replace(row, created_at=row.created_at + timedelta(milliseconds=3))
               for row in uuid_history()]
    write_export(tmp_path / "shifted", STAMP, shifted)
    assert by_run(read(tmp_path / "shifted", "")) == runs


def test_other_csv_files_and_directories_are_not_claimed(tmp_path: Path) -> None:
    other = tmp_path / "results.csv"
    other.write_text("benchmark_id,commit_id,created_at\n1,abc,2025-01-01T00:00:00\n")
    assert not recognises(other, read_source(other))
    named = tmp_path / f"benchmarks_{STAMP}.csv"
    named.write_text("name,value\nx,1\n")
    assert not recognises(named, read_source(named))
    assert not recognises(tmp_path, "")
    lonely = tmp_path / "only" / f"model_measurements_{STAMP}.csv"
    lonely.parent.mkdir()
    write_export(tmp_path / "full", STAMP, serial_history()[:1])
    shutil.copy(tmp_path / "full" / lonely.name, lonely)
    with pytest.raises(InputError, match=f"benchmarks_{STAMP}.csv, which is not beside it"):
        read(lonely, read_source(lonely))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _bad_number(directory: Path, rows: list[Row]) -> None:
    value = repr(rows[1].measurements["second_eager_generate_time_secs"])
    _edit(directory / f"model_measurements_{STAMP}.csv", value, "3.2 s")


@pytest.mark.parametrize(("case", "file", "line", "message"), [
    ("missing column", "benchmarks", 1, "missing column(s) created_at"),
    ("bad number", "model_measurements", 3,
     "second_eager_generate_time_secs: expected a finite number, got '3.2 s'"),
    ("unknown benchmark", "model_measurements", 2, "benchmark_id '99' is not in"),
    ("unknown benchmark, device", "device_measurements", 2, "benchmark_id '99' is not in"),
    ("bad JSON", "benchmarks", 2, "invalid JSON"),
    ("bad time", "benchmarks", 3, "created_at: expected an ISO 8601 time"),
])
def test_a_malformed_export_is_named_by_file_and_line(
        case: str, file: str, line: int, message: str, tmp_path: Path) -> None:
    rows = serial_history()[:2]
    write_export(tmp_path, STAMP, rows)
    benchmarks = tmp_path / f"benchmarks_{STAMP}.csv"
    if case == "missing column":
        _edit(benchmarks, ",created_at\n", "\n")
    elif case == "bad number":
        _bad_number(tmp_path, rows)
    elif case.startswith("unknown benchmark"):
        _edit(tmp_path / f"{file}_{STAMP}.csv", "\n1,", "\n99,")
    elif case == "bad JSON":
        _edit(benchmarks, '"{""gpu_name""', '"{""gpu_name"" ""')
    else:
        _edit(benchmarks, rows[1].created_at.isoformat(), "yesterday")
    with pytest.raises(InputError) as caught:
        read(tmp_path, "")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / f'{file}_{STAMP}.csv'}:{line}: "), text
    assert message in text


def test_the_mapping_names_only_catalogued_metrics() -> None:
    names = {"first_call_seconds", "latency_p50_seconds", "latency_mean_seconds",
             "latency_min_seconds", "compile_time_seconds", "load_time_seconds",
             "peak_rss_bytes", "time_to_first_token_p50_seconds",
             "inter_token_latency_mean_seconds"}
    assert names <= set(METRICS)
    assert {METRICS[n].unit for n in names} == {"seconds", "bytes"}
    # Of what llama.py records, only the single decode steps are left out (see the module).
    assert set(MEASURED) - module_tables.MEASUREMENTS == {
        "time_to_second_token_secs", "time_to_third_token_secs"}
