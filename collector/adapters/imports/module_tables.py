"""The transformers `benchmark/` module's history: its PostgreSQL tables (`read_database`)
and their CSV exports (`recognises`, `read`), as the collector's points.

What the module keeps (huggingface/transformers, benchmark/: init_db.sql, the
MetricsRecorder of benchmarks_entrypoint.py, llama.py): one `benchmarks` row per run at a
commit, its `model_measurements` (one row of timings, written once at the end of the run)
and its `device_measurements` (the process and the GPU sampled every ~10 ms while it ran).
Three versions of the schema are read, told apart by the columns information_schema lists:

- one column per measurement in model_measurements, `gpu_name` in benchmarks (init_db.sql
  at 0e333a2876944b773a5612e524a070a8b3fbe26a);
- the measurements as a jsonb object, `gpu_name` in benchmarks (at
  44b004582dfe311edb96ed55fa66bcfee218b18a);
- jsonb measurements, a `repository` column and a jsonb `metadata` ({gpu_name, model_id})
  in place of `gpu_name` (2025).

The CSV exports (MetricsRecorder.export_to_csv, 2025-07) hold the same rows, one file per
table sharing a timestamp suffix: benchmarks_<stamp>.csv (metadata as JSON text),
model_measurements_<stamp>.csv (the measurements flattened into columns),
device_measurements_<stamp>.csv, and benchmark_summary_<stamp>.csv (benchmarks and model
measurements joined, the device samples aggregated: mean, max, std). A directory is read
whole; a benchmarks file reads its stamp's siblings; a summary is read only where no
benchmarks file of its stamp lies beside it (else the three files are, and the summary adds
nothing); model and device files are read through their benchmarks file (given alone,
beside it, they add nothing, so `collector import benchmark_results/*.csv` imports each run
once).

The mapping, decided here. The workload is what llama.py ran: metadata's `model_id`
(`model_name` in the module's mock benchmark; the older schemas have no metadata and ran
meta-llama/Llama-2-7b-hf, the only model llama.py ever benchmarked), text generation on
cuda in float16, batch 1, the prompt "Why dogs are so cute?" (sequence_length 7: BOS and
six pieces with Llama 2's tokenizer, our count, the tables do not record it) and greedy
generate() up to the prompt plus num_tokens_to_generate (new_tokens 100). One benchmark row
is one run of up to four series of its own (origin transformers-benchmark):

    series             backend  new_tokens  metric <- source measurement
    eager forward      eager    1           first_call <- first_eager_forward_pass_time_secs
                                            latency p50 <- second_eager_forward_pass_time_secs
                                            load_time <- model_load_time
                                            peak_rss (bytes) <- max mem_megabytes (MiB)
    eager generate     eager    100         first_call <- first_eager_generate_time_secs
                                            latency p50 <- second_eager_generate_time_secs
    compiled forward   compile  1           first_call <- first_compile_forward_pass_time_secs
    (oldest schema)                         latency p50, mean, min <- second/third/fourth_...
    compiled generate  compile  100         first_call <- first_compile_generate_time_secs
                                            latency p50, mean, min <- second/third/fourth_...
                                            time_to_first_token p50 <- time_to_first_token_secs
                                            inter_token_latency mean <- time_to_next_token_mean_secs

A forward pass of the prompt is a text-generation workload of one new token (what
generate() of one token costs, less generate's own overhead). Where there are several
steady calls, `latency_seconds` samples hold them; compile_time_seconds is the first call
less the steady median (at least 0), as the collector's own compile backend reports it. The
compiled series' settings are mode reduce-overhead with fullgraph: llama.py compiled its
decode step with them, and generate() with a StaticCache compiles the forward with
transformers' CompileConfig defaults, the same. TTFT and the next-token mean come from that
compiled decode loop: the first call of a freshly compiled step, so TTFT includes the
compilation of the prefill graph, and the mean over the 100 steady decode steps. (The later
benches/llama.py times them with eager forward calls; as published it calls
`model.setup_caches`, a gpt-fast method transformers models lack, before it records
anything, and its rows could not be told from the earlier ones anyway.)

The whole-process figures (load time, peak RSS) go with the eager forward series, which
every version of llama.py measured: one change is one finding, and their history runs
unbroken across the schema's versions. Left out: time_to_second_token_secs and
time_to_third_token_secs (single decode steps, the second compiling the decode graph; the
mean covers the steady state), cpu_util and gpu_util (no catalogue row), gpu_mem_megabytes
(nvidia-smi's memory.used: the whole GPU, the CUDA context and every process included, not
torch's max_memory_allocated/reserved, the catalogue's CUDA rows), commit_message and
repository. A measurement that is null (or an empty CSV cell) is absent; a benchmark with
no model measurements (llama.py records them at the end: its run raised) gives no point.

Environment: gpu_name from metadata (or the older `gpu_name` column); host from a
`host`/`hostname` in metadata where one is (the module writes none), else the GPU's name
(the module's runners are told apart by it, and its dashboard filters by it), else
'imported' (`collector import --host` names it); commit `branch@commit_id` (the detector
attributes a step to `main@a1b2c3d -> main@e4f5a6b`; a pull request's run, on its own
branch, shares the series and says so); time benchmarks.created_at (naive: UTC, as the
module writes it). The run (common.build_runs' group) is the benchmark_id with the commit
where the id is a UUID (the 2025 recorder writes one id to the database and the CSV alike,
so a run read either way is one run, though each stamps its own created_at), and with
created_at too where it is a serial (every database counts from 1).

Every read is bounded: the database in a read-only transaction with connect and statement
timeouts and a deadline on the whole read, at most `limit_rows` rows a table (device
samples are aggregated by the server), JSON values at most 1 MiB; files by common's
readers. Errors name the table and record (or file and line) in one line; the database URL
appears only redacted, and libpq's texts are scrubbed of its secrets.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import socket
import statistics
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector.adapters.imports.common import (
    UNKNOWN_HOST,
    ImportedPoint,
    benchmark_name,
    digest,
    number,
    parse_json,
    parse_time,
    read_csv,
    read_source,
)
from collector.adapters.redact import (
    database_url_problem,
    normalise_url,
    redact,
    remember_url,
)
from collector.adapters.store.pg_errors import classify
from collector.domain.errors import InputError, TemporaryStoreError
from collector.domain.workload import Origin

__all__ = ["MAX_ROWS", "read", "read_database", "recognises"]

ORIGIN = Origin.TRANSFORMERS_BENCHMARK
MAX_ROWS = 200_000  # a table's rows read at most (years of one run per commit)
MAX_JSON_BYTES = 1 << 20  # one metadata or measurements value
_TEXT_CHARS = 300  # commit, branch, GPU name, ids: varchar(255) at most in the module
_MAX_HOST_CHARS = 200  # as --host (collector.adapters.config.bounds.MAX_NAME_CHARS)
_HEADER_BYTES = 64 << 10  # what recognising a CSV file reads of it
_MAX_LISTED = 10_000  # directory entries looked at when recognising a directory

# What llama.py ran (see the module docstring).
DEFAULT_MODEL = "meta-llama/Llama-2-7b-hf"
PROMPT_TOKENS = 7
NEW_TOKENS = 100
COMPILE_SETTINGS = {"mode": "reduce-overhead", "fullgraph": True}
MIB = 1 << 20


@dataclass(frozen=True)
class _Workload:
    """One series a benchmark row gives: its backend and new tokens, and the source
    measurements its metrics come from."""

    backend: str
    new_tokens: int
    first: str  # the first (cold) call
    steady: tuple[str, ...]  # the calls after it
    ttft: str | None = None
    itl_mean: str | None = None
    whole_run: bool = False  # load time and peak RSS go here


WORKLOADS = (
    _Workload("eager", 1, "first_eager_forward_pass_time_secs",
              ("second_eager_forward_pass_time_secs",), whole_run=True),
    _Workload("eager", NEW_TOKENS, "first_eager_generate_time_secs",
              ("second_eager_generate_time_secs",)),
    _Workload("compile", 1, "first_compile_forward_pass_time_secs",
              ("second_compile_forward_pass_time_secs", "third_compile_forward_pass_time_secs",
               "fourth_compile_forward_pass_time_secs")),
    _Workload("compile", NEW_TOKENS, "first_compile_generate_time_secs",
              ("second_compile_generate_time_secs", "third_compile_generate_time_secs",
               "fourth_compile_generate_time_secs"),
              ttft="time_to_first_token_secs", itl_mean="time_to_next_token_mean_secs"),
)
LOAD_TIME = "model_load_time"
# Every model measurement the mapping reads (the others are left out).
MEASUREMENTS = frozenset(
    {LOAD_TIME} | {name for w in WORKLOADS for name in (w.first, *w.steady, w.ttft, w.itl_mean)
                   if name is not None})


# -- the rows, whichever way they came -------------------------------------------------------


@dataclass(frozen=True)
class _Benchmark:
    benchmark_id: str
    where: str  # `benchmarks.benchmark_id=3`, `benchmarks_<stamp>.csv:2`
    commit_id: str | None
    branch: str | None
    created_at: datetime
    metadata: Mapping[str, Any] | None  # None: the row has none (the older schemas)
    gpu_name: str | None = None  # the older schemas' column


@dataclass(frozen=True)
class _Measured:
    where: str
    benchmark_id: str
    values: Mapping[str, float]


@dataclass
class _Tables:
    benchmarks: dict[str, _Benchmark] = field(default_factory=dict)
    measured: list[_Measured] = field(default_factory=list)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)


def _duration(value: Any, where: str, what: str) -> float | None:
    """A measured time in seconds; None for a null or an empty cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seconds = number(value, where, what)
    if seconds < 0:
        raise InputError(f"{where}: {what}: expected a duration of 0 s or more, "
                         f"got {seconds:g}")
    return seconds


def _text(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _metadata(text: str | None, where: str, json_where: str,
              first_line: int = 1) -> Mapping[str, Any] | None:
    if text is None or not text.strip():
        return None
    value = parse_json(text, json_where, first_line)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{where}: metadata: expected a JSON object, got "
                         f"{type(value).__name__}")
    return value


def _model_id(benchmark: _Benchmark) -> str:
    if benchmark.metadata is None:
        return DEFAULT_MODEL
    for key in ("model_id", "model_name"):
        value = benchmark.metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise InputError(f"{benchmark.where}: metadata names no model (model_id)")


def _gpu_name(benchmark: _Benchmark) -> str | None:
    given = benchmark.metadata.get("gpu_name") if benchmark.metadata else None
    return _text(given) if given is not None else benchmark.gpu_name


def _host(benchmark: _Benchmark, gpu_name: str | None) -> str:
    metadata = benchmark.metadata or {}
    given = _text(metadata.get("host")) or _text(metadata.get("hostname"))
    host = given or gpu_name
    if host is None:
        return UNKNOWN_HOST
    if not host.isprintable() or len(host) > _MAX_HOST_CHARS:
        raise InputError(f"{benchmark.where}: the host (or GPU name) {host[:60]!r} is not a "
                         f"printable name of at most {_MAX_HOST_CHARS} characters")
    return host


def _group(benchmark: _Benchmark) -> str:
    try:
        uuid.UUID(benchmark.benchmark_id)
    except ValueError:  # a serial: every database counts from 1
        return digest(benchmark.benchmark_id, benchmark.commit_id,
                      benchmark.created_at.isoformat())
    return digest(benchmark.benchmark_id.lower(), benchmark.commit_id)


def _series_metrics(workload: _Workload, values: Mapping[str, float], peak_rss_mib: float | None,
                    ) -> tuple[dict[str, float], dict[str, list[float]]]:
    metrics: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    first = values.get(workload.first)
    steady = [values[name] for name in workload.steady if name in values]
    if first is not None:
        metrics["first_call_seconds"] = first
    if steady:
        median = statistics.median(steady)
        metrics["latency_p50_seconds"] = median
        samples["latency_seconds"] = steady
        if len(steady) > 1:
            metrics["latency_mean_seconds"] = statistics.fmean(steady)
            metrics["latency_min_seconds"] = min(steady)
        if first is not None and workload.backend == "compile":
            metrics["compile_time_seconds"] = max(first - median, 0.0)
    if workload.ttft is not None and workload.ttft in values:
        metrics["time_to_first_token_p50_seconds"] = values[workload.ttft]
    if workload.itl_mean is not None and workload.itl_mean in values:
        metrics["inter_token_latency_mean_seconds"] = values[workload.itl_mean]
    if workload.whole_run:
        if LOAD_TIME in values:
            metrics["load_time_seconds"] = values[LOAD_TIME]
        if peak_rss_mib is not None:
            metrics["peak_rss_bytes"] = peak_rss_mib * MIB
    return metrics, samples


def _points(tables: _Tables) -> list[ImportedPoint]:
    points: list[ImportedPoint] = []
    for measured in tables.measured:
        benchmark = tables.benchmarks[measured.benchmark_id]
        model_id = _model_id(benchmark)
        gpu_name = _gpu_name(benchmark)
        commit = (f"{benchmark.branch}@{benchmark.commit_id}"
                  if benchmark.branch and benchmark.commit_id else benchmark.commit_id)
        environment = {"gpu_name": gpu_name, "commit": commit}
        host = _host(benchmark, gpu_name)
        group = _group(benchmark)
        for workload in WORKLOADS:
            metrics, samples = _series_metrics(
                workload, measured.values, tables.peak_rss_mib.get(measured.benchmark_id))
            if not metrics or not (set(metrics) - {"peak_rss_bytes"}):
                continue  # no measurement of this workload (peak RSS alone is no series)
            spec: dict[str, Any] = {
                "name": benchmark_name(model_id),
                "model": {"source": "hub", "id": model_id},
                "task": "text-generation", "backend": workload.backend, "device": "cuda",
                "dtype": "float16", "batch_size": 1, "sequence_length": PROMPT_TOKENS,
                "new_tokens": workload.new_tokens}
            if workload.backend == "compile":
                spec["compile"] = dict(COMPILE_SETTINGS)
            points.append(ImportedPoint(
                ORIGIN, measured.where, group, spec, benchmark.created_at, metrics, samples,
                host=host, environment=environment))
    return points


def _check_references(tables: _Tables, where_of: Mapping[str, str], what: str) -> None:
    """Every measurement names a benchmark of the tables (else InputError naming it)."""
    for measured in tables.measured:
        if measured.benchmark_id not in tables.benchmarks:
            raise InputError(f"{measured.where}: benchmark_id {measured.benchmark_id!r:.60} is "
                             f"not in {what}")
    for benchmark_id, where in where_of.items():
        if benchmark_id not in tables.benchmarks:
            raise InputError(f"{where}: benchmark_id {benchmark_id!r:.60} is not in {what}")


def _values(pairs: Iterable[tuple[str, Any]], where: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, raw in pairs:
        if name in MEASUREMENTS:
            seconds = _duration(raw, where, name)
            if seconds is not None:
                values[name] = seconds
    return values


# -- the database -------------------------------------------------------------------------

_TABLES = ("benchmarks", "model_measurements", "device_measurements")
# TCP-level bounds for a server that goes silent (a key=value of the URL wins), as the
# history store sets them (collector/adapters/store/postgres.py).
_TCP_BOUNDS = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
               "keepalives_count": "3", "tcp_user_timeout": "30000"}
_STATEMENTS = 5  # what one read runs, for the deadline on the whole of it
_MARGIN_S = 5.0


class _Deadline:
    """Shuts the connection's socket down when the whole read outlasts `seconds`: a server
    that stopped answering (a stopped process, a host whose kernel still acknowledges)
    enforces no statement_timeout of its own."""

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done or self._conn.closed:
                return
            self.fired = True
            with contextlib.suppress(OSError, psycopg.Error):
                duplicate = socket.socket(fileno=os.dup(self._conn.pgconn.socket))
                try:
                    duplicate.shutdown(socket.SHUT_RDWR)
                finally:
                    duplicate.close()


def read_database(url: str, *, limit_rows: int = MAX_ROWS, connect_timeout_s: float = 10.0,
                  statement_timeout_s: float = 60.0) -> list[ImportedPoint]:
    """The points of the module's database at `url` (a postgresql:// URL or libpq
    key=value pairs), read in one read-only transaction. InputError for what is not the
    module's database or holds a malformed record (naming table and record), a store error
    (temporary: unreachable; permanent: refused, authentication) for the server; no message
    holds the URL's password."""
    remember_url(url)  # scrubbed from whatever this process shows from now on
    conninfo = normalise_url(url)
    shown = redact(conninfo)
    problem = database_url_problem(conninfo)
    if problem is not None:
        raise InputError(f"cannot read the benchmark module's database: its URL {problem}")
    bound = connect_timeout_s + _STATEMENTS * statement_timeout_s + _MARGIN_S
    deadline: _Deadline | None = None
    try:
        given = conninfo_to_dict(conninfo)
        extra = {k: v for k, v in _TCP_BOUNDS.items() if k not in given}
        extra.setdefault("fallback_application_name", "collector-import")
        with psycopg.connect(make_conninfo(conninfo, **extra), autocommit=False,
                             connect_timeout=max(1, math.ceil(connect_timeout_s))) as conn:
            conn.read_only = True
            with _Deadline(conn, bound) as deadline, conn.transaction():
                conn.execute("SELECT set_config('statement_timeout', %s, true)",
                             (f"{int(statement_timeout_s * 1000)}ms",))
                tables = _read_tables(conn, shown, limit_rows)
    except psycopg.Error as exc:
        if deadline is not None and deadline.fired:
            raise TemporaryStoreError(f"{shown} did not answer within {bound:g} s; the "
                                      "import gave the connection up") from None
        raise classify(exc, conninfo) from None
    return _points(tables)


def _columns(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT table_name::text, column_name::text FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        (list(_TABLES),)).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def _bounded_rows(conn: psycopg.Connection[Any], query: sql.Composed, limit: int, shown: str,
                  what: str) -> list[tuple[Any, ...]]:
    """The query's rows (its one parameter: the LIMIT), InputError past `limit`."""
    rows = conn.execute(query, [limit + 1]).fetchall()
    if len(rows) > limit:
        raise InputError(f"{shown}: {what} has more than {limit:,} rows; the import reads at "
                         "most that many")
    return rows


def _text_column(name: str, columns: set[str]) -> sql.Composable:
    if name not in columns:
        return sql.SQL("NULL::text")
    return sql.SQL("left({}::text, {})").format(sql.Identifier(name), sql.Literal(_TEXT_CHARS))


def _json_column(name: str, columns: set[str]) -> sql.Composable:
    """The JSON text (NULL past MAX_JSON_BYTES) and its length in bytes."""
    if name not in columns:
        return sql.SQL("NULL::text, 0")
    return sql.SQL("CASE WHEN octet_length({0}::text) <= {1} THEN {0}::text END, "
                   "coalesce(octet_length({0}::text), 0)").format(
        sql.Identifier(name), sql.Literal(MAX_JSON_BYTES))


def _json_text(text: str | None, size: int, where: str, column: str) -> str | None:
    if size > MAX_JSON_BYTES:
        raise InputError(f"{where}: {column} is {size:,} bytes of JSON, more than the "
                         f"{MAX_JSON_BYTES:,} the import reads")
    return text


def _read_tables(conn: psycopg.Connection[Any], shown: str, limit: int) -> _Tables:
    columns = _columns(conn)
    for table, required in (("benchmarks", {"benchmark_id", "commit_id", "created_at"}),
                            ("model_measurements", {"measurement_id", "benchmark_id"})):
        if table not in columns:
            raise InputError(f"{shown}: no table {table} (in its current schema): not the "
                             "transformers benchmark module's database (benchmark/init_db.sql)")
        missing = sorted(required - columns[table])
        if missing:
            raise InputError(f"{shown}: table {table} has no column {', '.join(missing)}: not "
                             "the benchmark module's schema")
    tables = _Tables()
    bench_columns = columns["benchmarks"]
    query = sql.SQL(
        "SELECT left(benchmark_id::text, {n}), {commit}, created_at, {branch}, {gpu}, {meta} "
        "FROM benchmarks ORDER BY created_at, benchmark_id LIMIT %s").format(
        n=sql.Literal(_TEXT_CHARS), commit=_text_column("commit_id", bench_columns),
        branch=_text_column("branch", bench_columns),
        gpu=_text_column("gpu_name", bench_columns),
        meta=_json_column("metadata", bench_columns))
    for benchmark_id, commit_id, created_at, branch, gpu_name, meta, meta_size in \
            _bounded_rows(conn, query, limit, shown, "table benchmarks"):
        where = f"{shown}: benchmarks.benchmark_id={benchmark_id}"
        if benchmark_id in tables.benchmarks:
            raise InputError(f"{where}: the id is not unique")
        text = _json_text(meta, meta_size, where, "metadata")
        tables.benchmarks[benchmark_id] = _Benchmark(
            benchmark_id, where, _text(commit_id), _text(branch),
            parse_time(created_at, where, "created_at"),
            _metadata(text, where, f"{where}: metadata"), _text(gpu_name))
    tables.measured = _read_measurements(conn, columns["model_measurements"], shown, limit)
    orphans: dict[str, str] = {}
    if "device_measurements" in columns:  # every version has it; a run without is no error
        tables.peak_rss_mib, orphans = _read_device_peaks(
            conn, columns["device_measurements"], shown, limit)
    _check_references(tables, orphans, "table benchmarks")
    return tables


def _read_measurements(conn: psycopg.Connection[Any], columns: set[str], shown: str,
                       limit: int) -> list[_Measured]:
    known = sorted(MEASUREMENTS & columns)
    if "measurements" in columns:
        picked: sql.Composable = _json_column("measurements", columns)
    elif known:  # the oldest schema: a column per measurement
        picked = sql.SQL(", ").join(
            sql.SQL("left({}::text, 64)").format(sql.Identifier(name)) for name in known)
    else:
        raise InputError(f"{shown}: table model_measurements has neither a measurements "
                         "column nor any of the module's measurement columns")
    query = sql.SQL(
        "SELECT left(measurement_id::text, {n}), left(benchmark_id::text, {n}), {picked} "
        "FROM model_measurements ORDER BY measurement_id LIMIT %s").format(
        n=sql.Literal(_TEXT_CHARS), picked=picked)
    measured = []
    for row in _bounded_rows(conn, query, limit, shown, "table model_measurements"):
        measurement_id, benchmark_id = row[0], row[1]
        where = f"{shown}: model_measurements.measurement_id={measurement_id}"
        if benchmark_id is None:
            raise InputError(f"{where}: no benchmark_id")
        if "measurements" in columns:
            text = _json_text(row[2], row[3], where, "measurements")
            value = parse_json(text, f"{where}: measurements") if text else None
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise InputError(f"{where}: measurements: expected a JSON object, got "
                                 f"{type(value).__name__}")
            pairs: Iterable[tuple[str, Any]] = value.items()
        else:
            pairs = zip(known, row[2:], strict=True)
        measured.append(_Measured(where, benchmark_id, _values(pairs, where)))
    return measured


def _read_device_peaks(conn: psycopg.Connection[Any], columns: set[str], shown: str,
                       limit: int) -> tuple[dict[str, float], dict[str, str]]:
    """Peak RSS (MiB) by benchmark, aggregated by the server (a run has thousands of
    samples), and where the groups of unknown benchmarks are."""
    if "benchmark_id" not in columns or "mem_megabytes" not in columns:
        return {}, {}
    query = sql.SQL(
        "SELECT left(benchmark_id::text, {n}), max(mem_megabytes::float8) "
        "FROM device_measurements WHERE benchmark_id IS NOT NULL GROUP BY benchmark_id "
        "ORDER BY 1 LIMIT %s").format(n=sql.Literal(_TEXT_CHARS))
    peaks: dict[str, float] = {}
    where_of: dict[str, str] = {}
    for benchmark_id, peak in _bounded_rows(
            conn, query, limit, shown, "device_measurements (grouped by benchmark)"):
        where = f"{shown}: device_measurements.benchmark_id={benchmark_id}"
        where_of[benchmark_id] = where
        if peak is not None:
            peaks[benchmark_id] = number(peak, where, "mem_megabytes")
    return peaks, where_of


# -- the CSV exports ----------------------------------------------------------------------

_EXPORT = re.compile(r"^(?P<kind>benchmarks|model_measurements|device_measurements|"
                     r"benchmark_summary)_(?P<stamp>[^/\\]+)\.csv$")
_BENCHMARK_COLUMNS = frozenset({"benchmark_id", "commit_id", "created_at"})
_REQUIRED = {
    "benchmarks": _BENCHMARK_COLUMNS,
    "model_measurements": frozenset({"benchmark_id"}),
    "device_measurements": frozenset({"benchmark_id", "mem_megabytes"}),
    "benchmark_summary": _BENCHMARK_COLUMNS,
}
_DEVICE_PEAK = "mem_megabytes_max"  # the summary's aggregate


def _kind(path: Path) -> tuple[str, str] | None:
    match = _EXPORT.match(path.name)
    return (match["kind"], match["stamp"]) if match else None


def _header(text: str) -> set[str]:
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        return {name.strip() for name in next(csv.reader(io.StringIO(first)), [])}
    except csv.Error:
        return set()


def _is_export(kind: str, header: set[str]) -> bool:
    if not _REQUIRED[kind] <= header:
        return False
    if kind in ("model_measurements", "benchmark_summary"):
        return bool(header & MEASUREMENTS)
    return True


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(_HEADER_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _exports(directory: Path) -> Iterator[tuple[str, str, Path]]:
    """(kind, stamp, path) of the export files of a directory (its first entries)."""
    try:
        entries = sorted(entry for _, entry in zip(range(_MAX_LISTED), directory.iterdir(),
                                                   strict=False))
    except OSError as exc:
        raise InputError(f"{directory}: cannot list: {exc.strerror or exc}") from None
    for entry in entries:
        found = _kind(entry)
        if found is not None and entry.is_file():
            yield found[0], found[1], entry


def recognises(path: Path, text: str) -> bool:
    """One of the module's CSV exports, or a directory holding a benchmarks (or summary)
    export: by its name and its header."""
    if path.is_dir():
        return any(kind in ("benchmarks", "benchmark_summary")
                   and _is_export(kind, _header(_head(entry)))
                   for kind, _, entry in _exports(path))
    found = _kind(path)
    return found is not None and _is_export(found[0], _header(text))


def read(path: Path, text: str) -> list[ImportedPoint]:
    if path.is_dir():
        exports = list(_exports(path))
        stamps = {stamp for kind, stamp, _ in exports if kind == "benchmarks"}
        points: list[ImportedPoint] = []
        for kind, stamp, entry in exports:
            if kind == "benchmarks":
                points += _read_set(entry, stamp, read_source(entry))
            elif kind == "benchmark_summary" and stamp not in stamps:
                points += _read_summary(entry, read_source(entry))
        if not points and not any(kind in ("benchmarks", "benchmark_summary")
                                  for kind, _, _ in exports):
            raise InputError(f"{path}: no benchmarks_<stamp>.csv (the benchmark module's CSV "
                             "export) in it")
        return points
    found = _kind(path)
    if found is None:
        raise InputError(f"{path}: not one of the benchmark module's CSV exports "
                         "(benchmarks_<stamp>.csv, or a directory of them)")
    kind, stamp = found
    sibling = path.with_name(f"benchmarks_{stamp}.csv")
    if kind == "benchmarks":
        return _read_set(path, stamp, text)
    if sibling.is_file():
        return []  # read through its benchmarks file (see the module docstring)
    if kind == "benchmark_summary":
        return _read_summary(path, text)
    raise InputError(f"{path}: its rows are read with its benchmarks file, "
                     f"{sibling.name}, which is not beside it")


def _header_of(path: Path, text: str, kind: str) -> None:
    missing = sorted(_REQUIRED[kind] - _header(text))
    if missing:
        raise InputError(f"{path}:1: missing column(s) {', '.join(missing)} (the benchmark "
                         f"module's {kind} export)")


def _benchmark_row(path: Path, line: int, row: Mapping[str, str]) -> _Benchmark:
    where = f"{path}:{line}"
    benchmark_id = row["benchmark_id"].strip()
    if not benchmark_id:
        raise InputError(f"{where}: benchmark_id is empty")
    if len(benchmark_id) > _TEXT_CHARS:
        raise InputError(f"{where}: benchmark_id is longer than {_TEXT_CHARS} characters")
    metadata = _metadata(row.get("metadata"), where, str(path), line)
    return _Benchmark(benchmark_id, where, _text(row.get("commit_id")), _text(row.get("branch")),
                      parse_time(row["created_at"].strip(), where, "created_at"), metadata,
                      _text(row.get("gpu_name")))


def _read_benchmarks(path: Path, text: str) -> dict[str, _Benchmark]:
    _header_of(path, text, "benchmarks")
    benchmarks: dict[str, _Benchmark] = {}
    for line, row in read_csv(path, text):
        benchmark = _benchmark_row(path, line, row)
        if benchmark.benchmark_id in benchmarks:
            raise InputError(f"{path}:{line}: benchmark_id {benchmark.benchmark_id!r:.60} "
                             f"again (first at {benchmarks[benchmark.benchmark_id].where})")
        benchmarks[benchmark.benchmark_id] = benchmark
    return benchmarks


def _read_set(path: Path, stamp: str, text: str) -> list[ImportedPoint]:
    tables = _Tables(benchmarks=_read_benchmarks(path, text))
    what = str(path)
    model = path.with_name(f"model_measurements_{stamp}.csv")
    if not model.is_file():
        raise InputError(f"{path}: no {model.name} beside it (the export's model "
                         "measurements)")
    model_text = read_source(model)
    _header_of(model, model_text, "model_measurements")
    for line, row in read_csv(model, model_text):
        where = f"{model}:{line}"
        tables.measured.append(_Measured(where, row["benchmark_id"].strip(),
                                         _values(row.items(), where)))
    device = path.with_name(f"device_measurements_{stamp}.csv")
    where_of: dict[str, str] = {}
    if device.is_file():  # every export has it; a run without samples is no error
        device_text = read_source(device)
        _header_of(device, device_text, "device_measurements")
        for line, row in read_csv(device, device_text):
            where = f"{device}:{line}"
            benchmark_id = row["benchmark_id"].strip()
            where_of.setdefault(benchmark_id, where)
            value = row["mem_megabytes"]
            if value.strip():
                mib = number(value, where, "mem_megabytes")
                peak = tables.peak_rss_mib.get(benchmark_id)
                tables.peak_rss_mib[benchmark_id] = mib if peak is None else max(peak, mib)
    _check_references(tables, where_of, what)
    return _points(tables)


def _read_summary(path: Path, text: str) -> list[ImportedPoint]:
    """The summary export alone: each row a benchmark joined with its model measurements
    and its device samples' aggregates (the peak RSS from mem_megabytes_max)."""
    _header_of(path, text, "benchmark_summary")
    tables = _Tables()
    for line, row in read_csv(path, text):
        where = f"{path}:{line}"
        benchmark = _benchmark_row(path, line, row)
        seen = tables.benchmarks.setdefault(benchmark.benchmark_id, benchmark)
        if seen.created_at != benchmark.created_at or seen.commit_id != benchmark.commit_id:
            raise InputError(f"{where}: benchmark_id {benchmark.benchmark_id!r:.60} again, "
                             f"with another commit or time than at {seen.where}")
        tables.measured.append(_Measured(where, benchmark.benchmark_id,
                                         _values(row.items(), where)))
        peak = row.get(_DEVICE_PEAK, "")
        if peak.strip():
            tables.peak_rss_mib[benchmark.benchmark_id] = number(peak, where, _DEVICE_PEAK)
    return _points(tables)
