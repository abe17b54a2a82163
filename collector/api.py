"""The Python API for notebooks and scripts: a thin layer over what the CLI uses.

    import collector
    spec = collector.spec(name="bert", model={...}, sequence_length=16)
    [run] = collector.run([spec])                 # same worker isolation as run-once
    collector.to_dataframe(run.results)           # needs pandas (optional)

Everything here wraps an existing module (config, runs, store, compare, model); nothing
is computed differently from `collector run-once` / `collector compare`. Configuration
problems raise `ConfigError` (file, line, field); benchmark failures are results with
status "failed", never exceptions. `write_results` writes the versioned results JSON
(docs/results-format.md); `write_report` the self-contained HTML report.

This module imports no torch: benchmarks run in worker processes, as from the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from collector.adapters.config import Config, Suite
from collector.adapters.config import load_config as _load_config
from collector.domain.errors import ConfigError, ConfigProblem
from collector.domain.history import ResultsOfRun
from collector.domain.model import BenchmarkResult, BenchmarkSpec, RunResult
from collector.present.documents import results_document

if TYPE_CHECKING:
    from collector.analysis.compare import Comparison
    from collector.analysis.findings import Thresholds
    from collector.domain.history import Point, Store
    from collector.domain.series import SeriesInfo

__all__ = ["ConfigError", "compare_runs", "load_config", "open_store", "read_history",
           "report_markdown", "results_of", "run", "spec", "to_dataframe", "write_report",
           "write_results"]

DEFAULT_SUITE = "api"


def load_config(path: str | Path) -> Config:
    """Read, validate and expand a configuration file (as `collector check-config`).
    Raises ConfigError listing every problem with file, line and field."""
    return _load_config(path)


def spec(*, name: str = "benchmark", suite: str = DEFAULT_SUITE,
         source: str = "<spec>", **fields: Any) -> BenchmarkSpec:
    """A BenchmarkSpec from plain fields, as a config benchmark entry would give them
    (`model`, `batch_size`, `sequence_length`, `measurement`, ...; no `matrix`).
    A bad field raises ConfigError whose problems name the field (`source` stands in for
    the file name; there is no line)."""
    try:
        return BenchmarkSpec.model_validate({"suite": suite, "name": name, **fields})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif "input" in error and not isinstance(error["input"], dict):
                message = f"{message} (got {error['input']!r})"
            problems.append(ConfigProblem(source, None, field, message))
        raise ConfigError(problems) from None


def _as_config(specs_or_config: Config | BenchmarkSpec | Iterable[BenchmarkSpec]) -> Config:
    if isinstance(specs_or_config, Config):
        return specs_or_config
    specs = ([specs_or_config] if isinstance(specs_or_config, BenchmarkSpec)
             else list(specs_or_config))
    if not specs:
        raise ValueError("nothing to run: no benchmark spec given")
    suites: dict[str, list[BenchmarkSpec]] = {}
    for item in specs:
        if not isinstance(item, BenchmarkSpec):
            raise TypeError(f"expected BenchmarkSpec (see collector.spec), got "
                            f"{type(item).__name__}")
        suites.setdefault(item.suite, []).append(item)
    return Config("<api>", tuple(Suite(name, None, tuple(group))
                                 for name, group in suites.items()))


def run(specs_or_config: Config | BenchmarkSpec | Iterable[BenchmarkSpec], *,
        store: str | Path | None = None, isolation: str = "forkserver",
        suites: Sequence[str] | None = None, benchmarks: Sequence[str] | None = None,
        host: str | None = None) -> list[RunResult]:
    """Run specs (grouped into one run per suite) or a loaded config through the same
    runner as `collector run-once`: one isolated worker process per repetition, hard
    timeouts, interleaved repetitions combined into one result per benchmark.

    `store`: a local SQLite store path to keep the runs in (and run regression detection
    over, as run-once does); None keeps nothing. `suites`/`benchmarks` select as
    `--suite`/`--benchmark` (globs). Returns one RunResult per suite; each result's
    `status` is "ok" or "failed" (with `failure`). Raises SelectionError for an unknown
    selection, StoreError when the store cannot keep the runs."""
    from collector.adapters.measure import WorkerPool
    from collector.adapters.store import Stores
    from collector.domain.errors import StoreError
    from collector.usecases.cycle import run_once
    from collector.usecases.select import Selection

    config = _as_config(specs_or_config)
    stores = Stores.open(store, None) if store is not None else None
    pool = WorkerPool(isolation)
    try:
        outcome = run_once(config, selection=Selection(suites, benchmarks), stores=stores,
                           pool=pool, host=host, start_method=isolation, confirm=False)
    finally:
        pool.close()
        if stores is not None:
            stores.close()
    if outcome.store_error is not None:
        raise StoreError(outcome.store_error)
    return outcome.runs


def results_of(runs: RunResult | Iterable[RunResult | BenchmarkResult]) -> list[BenchmarkResult]:
    """The BenchmarkResults of runs (results passed through as they are)."""
    if isinstance(runs, RunResult):
        return list(runs.results)
    out: list[BenchmarkResult] = []
    for item in runs:
        out.extend(item.results if isinstance(item, RunResult) else [item])
    return out


def open_store(path_or_url: str | Path) -> Store:
    """The history store at a SQLite path or a `postgresql://` URL (its schema migrated
    when needed, as the CLI does). Close it with `.close()`."""
    text = str(path_or_url)
    if text.startswith(("postgresql://", "postgres://")):
        from collector.adapters.store.postgres import PostgresStore

        return PostgresStore(text)
    from collector.adapters.store import SQLiteStore

    return SQLiteStore(path_or_url)


def read_history(store: Store, series_id: str, metric: str) -> list[Point]:
    """A series' stored values of one metric, oldest first (Point: time, value, run_id).
    Find series with `store.list_series(**labels)` or `result.series_id`."""
    return store.history(series_id, metric)


def compare_runs(a: RunResult | Iterable[RunResult | BenchmarkResult],
            b: RunResult | Iterable[RunResult | BenchmarkResult], *,
            metrics: Sequence[str] | None = None, threshold: float | None = None,
            all_metrics: bool = False) -> Comparison:
    """`collector compare` on two sides of runs or results: workloads matched by identity
    (host left out), per metric B/A with a 95% interval and a verdict (Comparison.rows;
    Row.as_dict() for plain data)."""
    from collector.analysis.compare import compare as _compare

    return _compare(results_of(a), results_of(b), metrics=metrics, threshold=threshold,
                    all_metrics=all_metrics)


def _runs_of(runs: RunResult | Iterable[RunResult | BenchmarkResult]) -> list[ResultsOfRun]:
    """Runs as the reports read them (results given loose make one run of their own)."""
    items = [runs] if isinstance(runs, RunResult) else list(runs)
    out = [ResultsOfRun(r.run_id, r.suite, r.host, r.started_at, tuple(r.results))
           for r in items if isinstance(r, RunResult)]
    loose = [r for r in items if not isinstance(r, RunResult)]
    if loose:
        out.append(ResultsOfRun("(results)", "-", ", ".join(sorted(
            {r.environment.host for r in loose})), min(r.started_at for r in loose),
            tuple(loose)))
    return out


def report_markdown(runs: RunResult | Iterable[RunResult | BenchmarkResult], *,
                    baseline: RunResult | Iterable[RunResult | BenchmarkResult] | None = None,
                    thresholds: Thresholds | None = None) -> str:
    """`collector report` as Markdown: with `baseline`, what changed from it first; what
    needs a look, the fastest variant of each model, the bottleneck findings run by run
    (collector/analysis/findings.py) and the latest result of each workload."""
    from collector.present import markdown
    from collector.usecases.report import report_data

    return markdown.report(report_data(
        _runs_of(runs), ["(Python API)"], thresholds=thresholds,
        baseline_runs=_runs_of(baseline) if baseline is not None else None,
        baseline=["(baseline)"] if baseline is not None else ()))


def write_report(runs: RunResult | Iterable[RunResult | BenchmarkResult], path: str | Path,
                 *, baseline: RunResult | Iterable[RunResult | BenchmarkResult] | None = None,
                 store: Store | None = None, thresholds: Thresholds | None = None) -> Path:
    """`collector report --format html`: one self-contained HTML file. With `baseline`, it
    leads with what changed from it; with `store`, the stored regressions of these series
    are shown and marked on the trends. Raises OutputError when the file cannot be
    written."""
    from collector.adapters.files import write_atomic
    from collector.present.html_report import render
    from collector.usecases.report import report_data

    target = Path(path)
    data = report_data(_runs_of(runs), ["(Python API)"], store=store, thresholds=thresholds,
                       baseline_runs=_runs_of(baseline) if baseline is not None else None,
                       baseline=["(baseline)"] if baseline is not None else ())
    write_atomic(target, render(data), what="the report")
    return target


def write_results(runs: RunResult | Iterable[RunResult], path: str | Path) -> Path:
    """Write the versioned results JSON (`collector run-once --output`, readable by
    `collector compare`). Raises OutputError when it cannot be written."""
    from collector.adapters.files import write_atomic
    from collector.present.documents import dumps

    run_list = [runs] if isinstance(runs, RunResult) else list(runs)
    target = Path(path)
    write_atomic(target, dumps(results_document(run_list)))
    return target


def _rows(results: list[BenchmarkResult]) -> list[dict[str, Any]]:
    from collector.domain.series import series_info

    rows: list[dict[str, Any]] = []
    for result in results:
        info: SeriesInfo = series_info(result)
        labels: Mapping[str, Any] = vars(info)
        common = {**labels, "status": result.status, "started_at": result.started_at}
        if not result.metrics:
            rows.append({**common, "metric": None, "value": None})
        rows.extend({**common, "metric": metric, "value": value}
                    for metric, value in sorted(result.metrics.items()))
    return rows


def to_dataframe(results: RunResult | Iterable[RunResult | BenchmarkResult]) -> Any:
    """A pandas DataFrame, one row per result and metric (a failed result: one row with
    no metric), with the series labels (collector.domain.series.series_info), status and
    start time. pandas is optional: raises ImportError naming `pip install pandas`.
    Typed Any: pandas (and its stubs) need not be installed."""
    try:
        pandas = importlib.import_module("pandas")  # optional, and untyped
    except ImportError:
        raise ImportError("collector.to_dataframe needs pandas, which is not installed: "
                          "pip install pandas") from None
    return pandas.DataFrame(_rows(results_of(results)))
