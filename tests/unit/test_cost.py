"""Cost and carbon, derived (collector/analysis/cost.py): the arithmetic, per host; nothing
(never a zero, never NaN) where an input is missing; the config section and its errors; the
catalogue rows; how the table and the report show them."""

from __future__ import annotations

import math
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from collector.adapters.config import load_config
from collector.analysis.combine import combine
from collector.analysis.cost import Pricing, Rates, derive_costs, priced, with_costs
from collector.detect.detector import detectable
from collector.domain.catalogue import (
    COST_METRICS,
    CURRENCY,
    METRICS,
    SERVING_PANELS,
    Direction,
    Format,
    Profile,
    families,
    panels,
)
from collector.domain.errors import ConfigError
from collector.domain.history import ResultsOfRun
from collector.domain.model import BenchmarkResult, BenchmarkSpec, RunResult
from collector.present import markdown
from collector.present.html_report import render
from collector.present.table import results_table
from collector.usecases.report import report_data
from tests.helpers import make_run, spec_dict

PER_TOKENS = "cost_per_million_output_tokens"
PER_REQUESTS = "cost_per_thousand_requests"
CARBON = "co2e_grams_per_million_output_tokens"
# 3.6 an hour is 0.001 a second: the figures below are exact in decimal.
USD = Pricing(currency="USD", hourly_price=3.6, grid_carbon_g_per_kwh=500.0)
GENERATION = {"latency_p50_seconds": 0.016, "generated_tokens_per_second": 500.0,
              "energy_per_token_joules": 0.36}
UNDER_LOAD = {"output_throughput_tokens_per_second": 250.0,
              "request_throughput_per_second": 4.0}


# -- the arithmetic ---------------------------------------------------------------------------

def test_generation_cost_and_carbon_per_million_tokens() -> None:
    derived = derive_costs(GENERATION, USD, "any-host")
    # 0.001 a second / 500 tokens a second = 2e-6 a token; 0.36 J = 1e-7 kWh a token.
    assert derived == {PER_TOKENS: pytest.approx(2.0, rel=1e-12),
                       CARBON: pytest.approx(50.0, rel=1e-12)}


def test_under_load_cost_per_million_tokens_and_per_thousand_requests() -> None:
    derived = derive_costs(UNDER_LOAD, USD, "any-host")
    assert derived == {PER_TOKENS: pytest.approx(4.0, rel=1e-12),
                       PER_REQUESTS: pytest.approx(0.25, rel=1e-12)}
    # The completed requests' tokens are the rate under load, whatever else the result has.
    both = derive_costs({**UNDER_LOAD, "generated_tokens_per_second": 1000.0}, USD, "h")
    assert both[PER_TOKENS] == pytest.approx(4.0, rel=1e-12)


def test_every_sequence_of_the_batch_counts() -> None:
    """A batch of 8 sequences of 16 new tokens in 0.5 s: 256 tokens a second, so a
    million tokens take 3906.25 s, at 3.6 an hour 3.90625."""
    spec = BenchmarkSpec.model_validate(spec_dict("gpt2", batch_size=8, new_tokens=16))
    rate = spec.batch_size * spec.new_tokens / 0.5  # what the worker stores
    assert derive_costs({"generated_tokens_per_second": rate}, USD, "h") == {
        PER_TOKENS: pytest.approx(3.90625, rel=1e-12)}


def test_each_host_its_own_rates_field_by_field() -> None:
    pricing = Pricing(currency="EUR", hourly_price=3.6, grid_carbon_g_per_kwh=500.0,
                      hosts={"gpu-box-1": Rates(hourly_price=36.0),
                             "green-box": Rates(grid_carbon_g_per_kwh=50.0)})
    default = derive_costs(GENERATION, pricing, "cpu-box")
    gpu = derive_costs(GENERATION, pricing, "gpu-box-1")
    green = derive_costs(GENERATION, pricing, "green-box")
    assert default[PER_TOKENS] == pytest.approx(2.0) and default[CARBON] == pytest.approx(50)
    # the listed price, the default grid
    assert gpu[PER_TOKENS] == pytest.approx(20.0) and gpu[CARBON] == pytest.approx(50.0)
    # the default price, the listed grid
    assert green[PER_TOKENS] == pytest.approx(2.0) and green[CARBON] == pytest.approx(5.0)


@pytest.mark.parametrize(("metrics", "pricing", "host", "expected"), [
    (GENERATION, None, "h", set()),  # no cost section
    # listed hosts only, no default: another host has no rates
    (GENERATION, Pricing(currency="USD", hosts={"gpu-box-1": Rates(4.1, 400.0)}), "h", set()),
    # a price without a currency names nothing: no cost; the grid still gives carbon
    (GENERATION, Pricing(hourly_price=3.6, grid_carbon_g_per_kwh=500.0), "h", {CARBON}),
    (GENERATION, Pricing(currency="USD", hourly_price=3.6), "h", {PER_TOKENS}),  # no grid
    ({"generated_tokens_per_second": 500.0}, USD, "h", {PER_TOKENS}),  # no energy counter
    ({"latency_p50_seconds": 0.01, "throughput_samples_per_second": 100.0}, USD, "h",
     set()),  # a forward pass: no tokens generated, no requests
    ({"generated_tokens_per_second": 0.0, "energy_per_token_joules": 0.0}, USD, "h", set()),
    ({"generated_tokens_per_second": math.nan, "energy_per_token_joules": math.inf}, USD,
     "h", set()),
    ({"output_throughput_tokens_per_second": -1.0, "request_throughput_per_second": 4.0},
     USD, "h", {PER_REQUESTS}),
    # every request failed: no rate under load; generation's rate is not a stand-in
    ({"output_throughput_tokens_per_second": 0.0, "generated_tokens_per_second": 500.0},
     USD, "h", set()),
])
def test_missing_inputs_give_no_metric(metrics: dict[str, float], pricing: Pricing | None,
                                       host: str, expected: set[str]) -> None:
    derived = derive_costs(metrics, pricing, host)
    assert set(derived) == expected
    assert all(math.isfinite(v) and v > 0 for v in derived.values())


# -- applied to results -----------------------------------------------------------------------

def _result(metrics: dict[str, float], **spec: Any) -> BenchmarkResult:
    result: BenchmarkResult = make_run(models=("gpt2",), host="box", metrics=metrics).results[0]
    if spec:
        fields = spec_dict("gpt2", suite="s", **spec)
        del fields["sequence_length"], fields["new_tokens"]  # the load's
        new = BenchmarkSpec.model_validate(fields)
        result = result.model_copy(update={"spec": new})
    return result


def test_a_priced_result_records_the_rates_it_was_priced_at() -> None:
    result = priced(_result(GENERATION), USD, "box")
    assert result.metrics[PER_TOKENS] == pytest.approx(2.0)
    env = result.environment
    assert (env.cost_currency, env.hourly_price, env.grid_carbon_g_per_kwh) == (
        "USD", 3.6, 500.0)
    # carbon only: no price recorded, no currency
    carbon = priced(_result(GENERATION), Pricing(grid_carbon_g_per_kwh=500.0), "box")
    assert set(carbon.metrics) & set(COST_METRICS) == {CARBON}
    assert (carbon.environment.cost_currency, carbon.environment.hourly_price) == (None, None)
    # nothing derived: the result as it was, its environment untouched
    plain = _result({"throughput_samples_per_second": 10.0})
    assert priced(plain, USD, "box") is plain


def test_an_external_endpoint_is_priced_at_its_own_host_or_not_at_all() -> None:
    serving = {"endpoint": {"url": "http://vllm-box:8000/v1"},
               "profile": {"kind": "poisson", "rate": 4}}
    remote = _result(UNDER_LOAD, serving=serving)
    # The default is the collector hosts' price, not the server's: no cost.
    assert set(priced(remote, USD, "box").metrics) & set(COST_METRICS) == set()
    listed = Pricing(currency="USD", hourly_price=3.6,
                     hosts={"vllm-box": Rates(hourly_price=36.0)})
    assert priced(remote, listed, "box").metrics[PER_REQUESTS] == pytest.approx(2.5)
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1",
                "http://[::1]:8000/v1"):
        local = _result(UNDER_LOAD, serving={**serving, "endpoint": {"url": url}})
        assert priced(local, USD, "box").metrics[PER_REQUESTS] == pytest.approx(0.25), url


def test_costs_follow_the_combined_repetitions_and_skip_failures() -> None:
    """The stored point is the best repetition (collector.analysis.combine): its rate is
    the one priced, after combining, not a repetition's own."""
    fast = _result({"latency_p50_seconds": 0.016, "generated_tokens_per_second": 500.0})
    slow = fast.model_copy(update={"metrics": {"latency_p50_seconds": 0.032,
                                               "generated_tokens_per_second": 250.0},
                                   "finished_at": fast.finished_at + timedelta(seconds=1)})
    combined = combine([slow, fast])
    run = RunResult(run_id="a" * 32, suite="s", host="box", started_at=fast.started_at,
                    finished_at=slow.finished_at, collector_version="0.1.0",
                    results=(combined, make_run(models=("gpt2",), fail="gpt2").results[0]))
    priced_run = with_costs(run, USD)
    ok, failed = priced_run.results
    assert ok.metrics[PER_TOKENS] == pytest.approx(2.0)
    assert failed.status == "failed" and not failed.metrics
    assert with_costs(run, None) is run


# -- the config section -----------------------------------------------------------------------

SUITES = """\
suites:
  s:
    benchmarks:
      - name: b
        model: {source: synthetic, architecture: GPT2LMHeadModel}
"""


def _config(tmp_path: Path, cost: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text("version: 1\n" + textwrap.dedent(cost) + SUITES)
    return path


def test_the_cost_section_becomes_the_pricing(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, """\
        cost:
          currency: USD
          hourly_price: 2.5
          grid_carbon_g_per_kwh: 400
          hosts:
            gpu-box-1: {hourly_price: 4.1}
            hydro-box: {grid_carbon_g_per_kwh: 20}
        """))
    assert config.pricing == Pricing(currency="USD", hourly_price=2.5,
                                     grid_carbon_g_per_kwh=400.0,
                                     hosts={"gpu-box-1": Rates(4.1, None),
                                            "hydro-box": Rates(None, 20.0)})
    assert load_config(_config(tmp_path, "")).pricing is None


@pytest.mark.parametrize(("cost", "expected"), [
    ("cost:\n  hourly_price: 2.5\n",
     ":3: cost: a price needs its currency: set cost.currency"),
    ("cost:\n  currency: USD\n  hosts:\n    gpu-box-1: {hourly_price: 4.1}\n"
     "    cpu-box: {}\n",
     ":6: cost.hosts.cpu-box: set hourly_price, grid_carbon_g_per_kwh or both"),
    ("cost:\n  currency: USD\n  hosts:\n    gpu-box-1: {hourly_price: -1}\n",
     ":5: cost.hosts.gpu-box-1.hourly_price: Input should be greater than 0 (got -1)"),
    ("cost:\n  grid_carbon_g_per_kwh: 0.4\n",
     ":3: cost.grid_carbon_g_per_kwh: expected grams CO2e per kWh, at least 1"),
    ("cost:\n  currency: US$\n  hourly_price: 1\n",
     ":3: cost.currency: expected a currency code such as USD or EUR"),
    ("cost:\n  currency: USD\n  hourly_price: '2.5'\n",
     ":4: cost.hourly_price: Input should be a valid number (got '2.5')"),
    ("cost:\n  currency: USD\n  hourly_price: 2.5\n  colour: red\n",
     ":5: cost.colour: unknown key; expected one of: currency, grid_carbon_g_per_kwh, hosts, "
     "hourly_price"),
    ("cost: {}\n", ":2: cost: set hourly_price or grid_carbon_g_per_kwh"),
])
def test_config_errors_name_the_line_and_the_field(tmp_path: Path, cost: str,
                                                   expected: str) -> None:
    path = _config(tmp_path, cost)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}{expected}" in str(caught.value)


# -- the catalogue ----------------------------------------------------------------------------

def test_the_rows_say_unit_direction_and_that_the_detector_leaves_them_alone() -> None:
    for name in COST_METRICS:
        row = METRICS[name]
        assert row.direction is Direction.LOWER_IS_BETTER
        # Derived from judged throughput and energy, and a price change is a config change.
        assert row.profile is Profile.NONE and not detectable(name)
        assert row.family is not None and row.family.full_name in families()
        assert row.column is not None and row.column.format is Format.SIGNIFICANT
        assert row.panel is not None
    assert [METRICS[n].unit.startswith(CURRENCY) for n in COST_METRICS] == [True, True, False]
    by_title = {panel.title: members for panel, members in panels()}
    assert all(by_title[METRICS[n].panel.title] == [METRICS[n]]  # type: ignore[union-attr]
               for n in COST_METRICS)
    assert {METRICS[PER_TOKENS].panel, METRICS[PER_REQUESTS].panel} <= set(SERVING_PANELS)


@pytest.mark.parametrize(("value", "text"), [
    (0.000123456, "0.000123"), (0.0177, "0.0177"), (2.0, "2.00"), (12.345, "12.3"),
    (123.4, "123"), (12345.6, "12,346"), (0.0, "0")])
def test_three_significant_digits_never_an_exponent(value: float, text: str) -> None:
    assert Format.SIGNIFICANT.render(value) == text


# -- the table and the report -----------------------------------------------------------------

def _priced_run(currency: str = "USD") -> RunResult:
    run = make_run(models=("gpt2", "bert"), host="box",
                   metrics={"throughput_samples_per_second": 125.0})
    gpt2, bert = run.results
    gpt2 = gpt2.model_copy(update={"metrics": {**gpt2.metrics, **GENERATION}})
    pricing = Pricing(currency=currency, hourly_price=3.6, grid_carbon_g_per_kwh=500.0)
    return with_costs(run.model_copy(update={"results": (gpt2, bert)}), pricing)


def _table(run: RunResult, *, wide: bool) -> str:
    console = Console(width=250, record=True)
    console.print(results_table([run], wide=wide))
    return console.export_text()


def test_the_wide_table_shows_costs_with_their_currency_the_compact_one_not() -> None:
    run = _priced_run()
    wide = _table(run, wide=True)
    assert "cost/1M tok" in wide and "gCO2e/1M tok" in wide
    assert "cost/1k req" not in wide  # no result under load: no empty column
    [gpt2] = [line for line in wide.splitlines() if "gpt2" in line and "│" in line]
    [bert] = [line for line in wide.splitlines() if "bert" in line and "│" in line]
    assert "2.00" in gpt2 and "50.0" in gpt2
    assert "2.00" not in bert and "50.0" not in bert
    assert "cost: in USD at the host's hourly price" in " ".join(wide.split())
    compact = _table(run, wide=False)
    assert "cost/1M tok" not in compact and "gCO2e" not in compact
    assert "cost:" not in _table(make_run(models=("gpt2",)), wide=True)


def _report(run: RunResult) -> tuple[str, str]:
    data = report_data([ResultsOfRun(run.run_id, run.suite, run.host, run.started_at,
                                     run.results)], ["results.json"])
    return markdown.report(data), render(data)


def test_the_report_shows_costs_with_currency_and_unit_only_where_present() -> None:
    text, html = _report(_priced_run())
    section = text.split("## Cost and carbon", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| gpt2")]
    assert len(rows) == 1 and "bert" not in section  # bert has no figure: no row
    assert "| 2.00 USD | 50.0 g | 3.6 USD/h, 500 gCO2e/kWh |" in rows[0]
    assert "cost per 1M output tokens" in section and "cost per 1k requests" not in section
    assert '<h2 id="costs">Cost and carbon</h2>' in html and "2.00 USD" in html
    plain_text, plain_html = _report(make_run(models=("gpt2", "bert")))
    assert "Cost and carbon" not in plain_text and "Cost and carbon" not in plain_html


def test_a_currency_from_the_data_is_escaped_in_the_report() -> None:
    run = _priced_run()
    hostile = run.model_copy(update={"results": tuple(
        r.model_copy(update={"environment": r.environment.model_copy(
            update={"cost_currency": "<b>X|Y</b>"})}) for r in run.results)})
    text, html = _report(hostile)
    assert "<b>X" not in html and "&lt;b&gt;X|Y&lt;/b&gt;" in html
    assert "\\<b\\>X\\|Y\\</b\\>" in text and "<b>" not in text
