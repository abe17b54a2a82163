"""Cost and carbon end to end: `collector run-once` of a tiny synthetic generation benchmark
and a continuous-batching one, with and without a cost section, through the real worker
isolation; the stored figures against the stored throughput, the table, `/metrics` (checked
by the real promtool) and the report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.adapters.store import SQLiteStore
from collector.domain.catalogue import Format
from collector.domain.history import Store
from collector.present import markdown
from collector.present.exposition import Exposition, ServiceCollector
from collector.present.html_report import render
from collector.usecases.report import report_data
from collector.usecases.select import load_sides
from tests.helpers import TINY_MODELS, run_collector

BUILD = {"version": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"}
HOST = "cost-box"
PRICE = 3.6  # an hour: 0.001 a second
GRID = 400.0  # grams CO2e per kWh
COST_SECTION = f"""\
cost:
  currency: USD
  hourly_price: 1000       # any other host's: not this run's
  grid_carbon_g_per_kwh: {GRID}
  hosts:
    {HOST}: {{hourly_price: {PRICE}}}
"""
# The batch of a generation benchmark: its tokens per second count both sequences.
BATCHING = {"requests": 4, "input_tokens": {"mean": 12}, "output_tokens": {"mean": 4},
            "num_blocks": 32, "max_batch_tokens": 128}


def _config(tmp_path: Path, cost: str) -> Path:
    fast = {"warmup_iterations": 1, "min_iterations": 3, "min_duration_s": 0.0,
            "max_duration_s": 0.3, "repetitions": 2}
    path = tmp_path / "config.yml"
    path.write_text(f"""\
version: 1
defaults: {{threads: 1, timeout_s: 120, measurement: {json.dumps(fast)}}}
{cost}
suites:
  costs:
    benchmarks:
      - name: gpt2-tiny
        model: {json.dumps(TINY_MODELS["gpt2"])}
        batch_size: 2
        sequence_length: 8
        new_tokens: 4
      - name: llama-cb
        model: {json.dumps(TINY_MODELS["llama"])}
        batching: {json.dumps(BATCHING)}
""", encoding="utf-8")
    return path


def _run_once(tmp_path: Path, cost: str) -> tuple[str, SQLiteStore, Path]:
    results = tmp_path / "results.json"
    proc = run_collector("run-once", "--config", str(_config(tmp_path, cost)), "--host", HOST,
                         "--local-store", str(tmp_path / "local.db"), "--wide",
                         "--no-progress", "--no-confirm", "-o", str(results), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, SQLiteStore(tmp_path / "local.db"), results


def _stored(store: SQLiteStore) -> dict[str, dict[str, float]]:
    """Benchmark name -> its stored metrics (the latest value of each)."""
    names = {s.series_id: s.benchmark for s in store.list_series()}
    found: dict[str, dict[str, float]] = {}
    for value in store.latest():
        found.setdefault(names[value.series_id], {})[value.metric] = value.value
    return found


def _report(results: Path, store: SQLiteStore) -> tuple[str, str]:
    def opened() -> Store:
        return store

    data = report_data(load_sides([str(results)], opened), [str(results)])
    return markdown.report(data), render(data)


def _exposition(store: SQLiteStore) -> str:
    return Exposition(store, ServiceCollector(BUILD)).render().decode()


def _gauge(text: str, family: str, benchmark: str) -> list[float]:
    return [s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == family and s.labels.get("benchmark") == benchmark]


def test_a_priced_run_stores_exports_and_reports_its_costs(tmp_path: Path) -> None:
    table, store, results = _run_once(tmp_path, COST_SECTION)
    stored = _stored(store)
    gen, cb = stored["gpt2-tiny"], stored["llama-cb"]
    per_second = PRICE / 3600
    # Generation: new tokens over both sequences of the batch per second of generate().
    assert gen["generated_tokens_per_second"] == pytest.approx(
        2 * 4 / gen["latency_p50_seconds"], rel=1e-9)
    assert gen["cost_per_million_output_tokens"] == pytest.approx(
        per_second / gen["generated_tokens_per_second"] * 1e6, rel=1e-9)
    assert "cost_per_thousand_requests" not in gen  # no requests outside a load
    # Under load: completed requests and their output tokens over the run.
    assert cb["cost_per_million_output_tokens"] == pytest.approx(
        per_second / cb["output_throughput_tokens_per_second"] * 1e6, rel=1e-9)
    assert cb["cost_per_thousand_requests"] == pytest.approx(
        per_second / cb["request_throughput_per_second"] * 1e3, rel=1e-9)
    # Carbon only where an energy counter measured the generation (none on a host without
    # RAPL or NVML): never a zero in its place.
    if "energy_per_token_joules" in gen:
        assert gen["co2e_grams_per_million_output_tokens"] == pytest.approx(
            gen["energy_per_token_joules"] * 1e6 / 3.6e6 * GRID, rel=1e-9)
    else:
        assert "co2e_grams_per_million_output_tokens" not in gen
    assert "co2e_grams_per_million_output_tokens" not in cb

    # Each result records the rates it was priced at (the host's, not the default).
    document: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    for result in document["runs"][0]["results"]:
        env = result["environment"]
        assert (env["host"], env["cost_currency"], env["hourly_price"]) == (HOST, "USD", PRICE)

    # The wide table: the cost columns and what they are in.
    assert "cost/1M tok" in table and "cost/1k req" in table
    assert "cost: in USD" in " ".join(table.split())

    # /metrics: a family each, the values stored; promtool has nothing to say about them.
    text = _exposition(store)
    assert _gauge(text, "collector_benchmark_cost_per_million_output_tokens", "gpt2-tiny") == [
        pytest.approx(gen["cost_per_million_output_tokens"])]
    assert _gauge(text, "collector_benchmark_cost_per_thousand_requests", "llama-cb") == [
        pytest.approx(cb["cost_per_thousand_requests"])]
    assert _gauge(text, "collector_benchmark_cost_per_thousand_requests", "gpt2-tiny") == []
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/bootstrap.sh --services")
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr)

    # The report: a cost section with currency and unit.
    text_report, html = _report(results, store)
    section = text_report.split("## Cost and carbon", 1)[1].split("\n## ", 1)[0]
    [gpt2_row] = [line for line in section.splitlines() if line.startswith("| gpt2-tiny")]
    figure = Format.SIGNIFICANT.render(gen["cost_per_million_output_tokens"])
    rates = f"{PRICE:g} USD/h" + (f", {GRID:g} gCO2e/kWh" if "energy_per_token_joules" in gen
                                  else "")
    assert f"| {figure} USD |" in gpt2_row and f"| {rates} |" in gpt2_row
    assert '<h2 id="costs">Cost and carbon</h2>' in html
    store.close()


def test_without_a_cost_section_no_cost_appears(tmp_path: Path) -> None:
    table, store, results = _run_once(tmp_path, "")
    stored = _stored(store)
    assert stored["gpt2-tiny"]["generated_tokens_per_second"] > 0  # the inputs are there
    for metrics in stored.values():
        assert not {"cost_per_million_output_tokens", "cost_per_thousand_requests",
                    "co2e_grams_per_million_output_tokens"} & set(metrics)
    assert "cost/1M tok" not in table and "cost:" not in table
    assert "collector_benchmark_cost_per" not in _exposition(store)
    text_report, html = _report(results, store)
    assert "Cost and carbon" not in text_report and "Cost and carbon" not in html
    document = json.loads(results.read_text(encoding="utf-8"))
    assert {r["environment"]["cost_currency"] for r in document["runs"][0]["results"]} == {None}
    store.close()
