"""The Python API (`import collector`, collector/api.py) end to end on a tiny synthetic BERT
through the real worker isolation: the README's example run as a script, the package
import staying light, runs kept in and read back from a local store, compare, the results
file, the DataFrame rows and the errors a caller sees."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import collector
from collector.domain.errors import OutputError, SelectionError
from collector.domain.model import RunResult
from tests.helpers import TINY_MODELS

ROOT = Path(__file__).resolve().parents[2]
FAST: dict[str, Any] = {"warmup_iterations": 1, "min_iterations": 3, "min_duration_s": 0.0,
                        "max_duration_s": 0.2, "repetitions": 1}
LATENCY = ("latency_p50_seconds", "latency_p90_seconds", "latency_min_seconds",
           "throughput_samples_per_second")


def _python(code_or_path: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    args = [str(code_or_path)] if isinstance(code_or_path, Path) else ["-c", code_or_path]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240, check=False)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- api-example -->\n```python\n(.*?)```\n<!-- /api-example -->",
                      text, re.S)
    assert found, "README.md has no <!-- api-example --> python block"
    return found.group(1)


def test_the_readme_example_runs_as_a_script(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example(), encoding="utf-8")
    proc = _python(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    first = re.fullmatch(r"(\S+) (\S+) +p50 (\S+) s", lines[0])
    assert first, lines[0]
    assert first.group(1, 2) == ("bert", "ok")
    assert 0 < float(first.group(3)) < 1
    assert re.fullmatch(r"bert float32 eager cpu bs=1 seq=8 latency_p50_seconds "
                        r"B/A \d+\.\d\d (slower|faster|same)", lines[1]), lines[1]


def test_import_collector_loads_no_torch(tmp_path: Path) -> None:
    proc = _python(
        "import sys, collector\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'pydantic', 'collector.api')"
        " if m in sys.modules)\n"
        "import importlib, pkgutil\n"
        "for m in pkgutil.iter_modules(collector.__path__):\n"
        "    importlib.import_module('collector.' + m.name)\n"
        "print(heavy, callable(collector.compare_runs), callable(collector.read_history),"
        " all(callable(getattr(collector, n)) for n in collector.__all__ if n != '__version__'))\n",
        tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Nothing heavy until an API name is used; every exported name stays callable after
    # each of the package's modules is imported (a module of the same name would replace it).
    assert proc.stdout.split() == ["[]", "True", "True", "True"]


def _bert(**fields: Any) -> Any:
    return collector.spec(name="bert", suite="api", model=TINY_MODELS["bert"],
                          sequence_length=8, threads=1, measurement=FAST, **fields)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RunResult]]:
    """Two runs of the same benchmark kept in one local store."""
    path = tmp_path_factory.mktemp("api") / "local.sqlite"
    runs = [run for _ in range(2) for run in collector.run([_bert()], store=path)]
    return path, runs


def test_run_gives_ok_results_with_latency(stored: tuple[Path, list[RunResult]]) -> None:
    _, runs = stored
    assert [run.suite for run in runs] == ["api", "api"]
    for run in runs:
        assert run.status == "ok"
        [result] = run.results
        assert result.status == "ok" and result.failure is None
        for metric in LATENCY:
            assert math.isfinite(result.metrics[metric]) and result.metrics[metric] > 0
        assert result.metrics["latency_min_seconds"] <= result.metrics["latency_p50_seconds"]
    assert runs[0].run_id != runs[1].run_id
    assert runs[0].results[0].series_id == runs[1].results[0].series_id


def test_history_reads_both_runs_from_the_store(stored: tuple[Path, list[RunResult]]) -> None:
    path, runs = stored
    store = collector.open_store(path)
    try:
        series_id = runs[0].results[0].series_id
        points = collector.read_history(store, series_id, "latency_p50_seconds")
        assert [p.run_id for p in points] == [r.run_id for r in runs]
        assert [p.value for p in points] == [
            r.results[0].metrics["latency_p50_seconds"] for r in runs]
        [info] = store.list_series(benchmark="bert")
        assert info.series_id == series_id
    finally:
        store.close()


def test_compare_two_runs_gives_rows(stored: tuple[Path, list[RunResult]]) -> None:
    _, (a, b) = stored
    text = collector.report_markdown([a, b])
    assert text.startswith("# Benchmark report") and "## Findings" in text
    comparison = collector.compare_runs(a, b)
    metrics = {row.metric for row in comparison.rows}
    assert {"latency_p50_seconds", "throughput_samples_per_second"} <= metrics
    row = next(r for r in comparison.rows if r.metric == "latency_p50_seconds")
    assert row.a == a.results[0].metrics["latency_p50_seconds"]
    assert row.b == b.results[0].metrics["latency_p50_seconds"]
    assert row.ratio == pytest.approx(row.b / row.a, rel=0.05)
    assert row.verdict in ("better", "worse", "same")
    assert comparison.only_a == [] and comparison.only_b == []


def test_write_results_is_the_results_document(stored: tuple[Path, list[RunResult]],
                                               tmp_path: Path) -> None:
    _, runs = stored
    path = collector.write_results(runs, tmp_path / "results.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert (document["format"], document["format_version"]) == ("collector-results", 1)
    assert [r["run_id"] for r in document["runs"]] == [r.run_id for r in runs]
    with pytest.raises(OutputError, match="cannot write results"):
        collector.write_results(runs, tmp_path / "missing" / "results.json")


def test_dataframe_rows_carry_the_series_labels(stored: tuple[Path, list[RunResult]]) -> None:
    _, runs = stored
    rows = collector.api._rows(collector.results_of(runs))
    result = runs[0].results[0]
    assert len(rows) == sum(len(r.metrics) for run in runs for r in run.results)
    first = next(r for r in rows if r["metric"] == "latency_p50_seconds")
    assert first["value"] == result.metrics["latency_p50_seconds"]
    assert (first["series_id"], first["benchmark"], first["suite"], first["architecture"],
            first["batch_size"], first["sequence_length"], first["status"]) == (
        result.series_id, "bert", "api", "BertForSequenceClassification", 1, 8, "ok")
    assert first["model"].startswith("BertForSequenceClassification@")


def test_to_dataframe_without_pandas_names_the_install(
        stored: tuple[Path, list[RunResult]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install pandas"):
        collector.to_dataframe(stored[1])


def test_a_bad_spec_field_raises_the_config_error() -> None:
    with pytest.raises(collector.ConfigError) as caught:
        _bert(batch_size=0, colour="red")
    problems = {p.field: p.message for p in caught.value.problems}
    assert set(problems) == {"batch_size", "colour"}
    assert "greater than or equal to 1" in problems["batch_size"]
    assert problems["colour"] == "unknown key"
    assert all(str(p).startswith("<spec>: ") for p in caught.value.problems)


def test_a_bad_config_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("version: 1\nsuites:\n  s:\n    benchmarks:\n      - name: b\n"
                    "        model: {source: synthetic, architecture: BertModel}\n"
                    "        dtype: float64\n", encoding="utf-8")
    with pytest.raises(collector.ConfigError) as caught:
        collector.load_config(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == (str(path), 7)
    assert problem.field.endswith("dtype")


def test_run_refuses_an_unknown_selection_and_nothing_to_run() -> None:
    with pytest.raises(SelectionError, match="unknown suite"):
        collector.run([_bert()], suites=["nope"])
    with pytest.raises(ValueError, match="nothing to run"):
        collector.run([])


def test_write_report_is_the_html_report_with_the_stores_view(
        stored: tuple[Path, list[RunResult]], tmp_path: Path) -> None:
    path, runs = stored
    store = collector.open_store(path)
    try:
        out = collector.write_report(runs, tmp_path / "report.html", store=store)
    finally:
        store.close()
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and ">Trends</h2>" in text
    # Two runs of one series: its trend is drawn (one headline and one memory chart).
    assert "p50 latency (ms) over time" in text
    assert "the store has none for these series" in text
    # With a baseline, the report leads with what changed from it.
    out = collector.write_report(runs[1], tmp_path / "ab.html", baseline=runs[0])
    text = out.read_text(encoding="utf-8")
    assert text.index(">What changed</h2>") < text.index(">What needs a look</h2>")
    markdown = collector.report_markdown(runs[1], baseline=runs[0])
    assert markdown.index("## What changed") < markdown.index("## What needs a look")
