"""Grafana provisioning and dashboards, checked without a Grafana server: the JSON against
Grafana's vendored JSON schemas, every datasource reference against the provisioning, and
every query (panels, template variables, annotations) against real backends, with template
variables and macros substituted as Grafana does (tests/grafana_queries.py):

- SQL runs on a real PostgreSQL migrated and seeded through the collector's own store, as a
  member of the read-only role the Grafana datasource logs in with;
- PromQL runs on a real Prometheus scraping a real `/metrics` endpoint and a Pushgateway that
  a run was pushed to.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]  # ships no types
from ruamel.yaml import YAML

from collector.adapters.host import capture_host
from collector.adapters.http import serve_metrics
from collector.adapters.store import SQLiteStore
from collector.adapters.store.postgres import PostgresStore
from collector.analysis.cost import Pricing, Rates, with_costs
from collector.domain.catalogue import METRICS, P_COLD
from collector.domain.history import Baseline, DetectionState, Regression
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    Failure,
    FailureKind,
    MeasurementInfo,
    NoiseProbe,
    RunResult,
    Task,
)
from collector.domain.series import SERIES_DIMENSIONS, workload_label
from collector.domain.serving import SWEEP_SAMPLES
from collector.present.exposition import Exposition, ServiceCollector, push_run
from tests.fixtures_prom import PrometheusFactory
from tests.grafana_queries import (
    ALL,
    Selection,
    TimeRange,
    Variable,
    expand_promql,
    expand_sql,
    interpolate,
    parse_label_values,
    prometheus_formatter,
    sql_formatter,
)
from tests.helpers import make_run, spec_dict
from tests.prom_servers import PrometheusServer, PushgatewayServer, http_request

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
SCHEMAS = ROOT / "tests" / "schemas" / "grafana"
DASHBOARD_MOUNT = "/var/lib/grafana/dashboards/collector"  # see grafana/README.md
PANEL_SCHEMAS = {"timeseries", "stat", "table", "text", "barchart", "xychart"}
READER = "grafana_dashboards_reader"

Json = dict[str, Any]


# -- files -------------------------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def datasources() -> dict[str, Json]:
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "collector.yml")
    return {source["uid"]: source for source in config["datasources"]}


def dashboards() -> dict[str, Json]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def by_uid(uid: str) -> Json:
    (found,) = [d for d in dashboards().values() if d["uid"] == uid]
    return found


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel that is not a row, including panels nested in collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel["panels"]
        else:
            yield panel


def schema(name: str) -> Json:
    loaded: Json = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    return loaded


def definition_validator(schema_name: str, definition: str) -> Draft7Validator:
    """A validator for one definition of a vendored schema (the panel schemas have no root)."""
    document = schema(schema_name)
    return Draft7Validator({"$ref": f"#/definitions/{definition}",
                            "definitions": document["definitions"]})


def schema_errors(validator: Draft7Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(instance)]


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards",
                                                  GRAFANA / "build_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- provisioning and structure ----------------------------------------------------------------

def test_datasources_have_fixed_uids_env_credentials_and_the_readonly_login() -> None:
    sources = datasources()
    assert set(sources) == {"collector-postgres", "collector-prometheus"}
    postgres = sources["collector-postgres"]
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert postgres["url"] == "timescaledb:5432"
    assert postgres["jsonData"]["database"] == "collector"
    assert postgres["jsonData"]["timescaledb"] is True
    # Credentials only through environment interpolation: no secret in the file.
    assert postgres["user"] == "${COLLECTOR_GRAFANA_DB_USER}"
    assert postgres["secureJsonData"] == {"password": "${COLLECTOR_GRAFANA_DB_PASSWORD}"}
    assert "password" not in postgres and "password" not in postgres["jsonData"]
    prometheus = sources["collector-prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    # $__rate_interval is derived from the scrape interval Grafana is told.
    scrape = load_yaml(ROOT / "prometheus" / "prometheus.yml")["global"]["scrape_interval"]
    assert prometheus["jsonData"]["timeInterval"] == scrape
    assert sum(bool(source.get("isDefault")) for source in sources.values()) == 1


def test_dashboard_provider_loads_the_dashboards_folder_into_collector() -> None:
    config = load_yaml(GRAFANA / "provisioning" / "dashboards" / "collector.yml")
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Collector"
    assert provider["options"]["path"] == DASHBOARD_MOUNT
    assert provider["allowUiUpdates"] is False
    # The mount that makes grafana/dashboards that path is documented for the compose file.
    readme = (GRAFANA / "README.md").read_text()
    assert f"./grafana/dashboards:{DASHBOARD_MOUNT}" in readme
    assert "./grafana/provisioning:/etc/grafana/provisioning" in readme
    assert sorted(dashboards()) == ["collector-compare.json", "collector-health.json",
                                    "collector-overview.json", "collector-runs.json",
                                    "collector-serving.json", "collector-trends.json"]


def test_committed_dashboards_are_the_generators_output(tmp_path: Path) -> None:
    builder = load_builder()
    rendered: dict[str, str] = builder.render()
    assert {name: (DASHBOARDS / name).read_text() for name in rendered} == rendered
    assert list(builder.stale_files(DASHBOARDS)) == []
    # The check notices an edited file, a missing one and a stray one.
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "collector-runs.json").write_text(rendered["collector-runs.json"] + " ")
    (tmp_path / "collector-health.json").unlink()
    (tmp_path / "stray.json").write_text("{}")
    assert sorted(builder.stale_files(tmp_path)) == ["collector-health.json",
                                                     "collector-runs.json", "stray.json"]


def test_dashboards_validate_against_the_vendored_grafana_schemas() -> None:
    dashboard_validator = Draft7Validator(schema("dashboard"))
    prometheus_query = Draft7Validator(schema("prometheus"))
    common_query = definition_validator("common", "DataQuery")
    errors: list[str] = []
    checked_panels = 0
    for name, board in dashboards().items():
        errors += [f"{name}: {e}" for e in schema_errors(dashboard_validator, board)]
        for panel in panels(board):
            where = f"{name} panel {panel['title']!r}"
            kind = panel["type"]
            if kind not in PANEL_SCHEMAS:
                errors.append(f"{where}: no vendored schema for panel type {kind}")
                continue
            errors += [f"{where} options: {e}" for e in
                       schema_errors(definition_validator(kind, "Options"), panel["options"])]
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            if "FieldConfig" in schema(kind)["definitions"]:
                errors += [f"{where} fieldConfig.custom: {e}" for e in
                           schema_errors(definition_validator(kind, "FieldConfig"), custom)]
            elif custom:
                errors.append(f"{where}: {kind} panels have no custom field config")
            for target in panel["targets"]:
                if "expr" in target:
                    errors += [f"{where} target: {e}"
                               for e in schema_errors(prometheus_query, target)]
                else:  # no schema is vendored for the PostgreSQL query model
                    errors += [f"{where} target: {e}" for e in schema_errors(
                        common_query, {k: v for k, v in target.items()
                                       if k in {"refId", "hide", "queryType", "datasource"}})]
                    errors += sql_target_problems(where, target)
            checked_panels += 1
        for annotation in board["annotations"]["list"]:
            errors += sql_target_problems(f"{name} annotation {annotation['name']!r}",
                                          annotation["target"])
    assert errors == []
    assert checked_panels >= 40
    # The validators are live: a broken copy is rejected.
    broken = copy.deepcopy(by_uid("collector-trends"))
    del broken["templating"]
    broken["panels"][0]["gridPos"]["w"] = 25
    assert len(schema_errors(dashboard_validator, broken)) >= 2
    stat_panel = next(p for p in panels(by_uid("collector-runs")) if p["type"] == "stat")
    del stat_panel["options"]["reduceOptions"]
    assert schema_errors(definition_validator("stat", "Options"), stat_panel["options"])


def sql_target_problems(where: str, target: Json) -> list[str]:
    problems = []
    if set(target) != {"refId", "datasource", "editorMode", "format", "rawQuery", "rawSql"}:
        problems.append(f"{where}: unexpected SQL target keys {sorted(target)}")
    if target.get("format") not in {"table", "time_series"}:
        problems.append(f"{where}: format {target.get('format')!r}")
    if target.get("rawQuery") is not True or target.get("editorMode") != "code":
        problems.append(f"{where}: SQL must be raw code, not the builder")
    if not str(target.get("rawSql", "")).strip():
        problems.append(f"{where}: empty rawSql")
    return problems


def datasource_refs(board: Json) -> Iterator[tuple[str, Json | None]]:
    for panel in panels(board):
        yield f"panel {panel['title']!r}", panel.get("datasource")
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} target {target['refId']}", target.get("datasource")
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable.get("datasource")
    for annotation in board["annotations"]["list"]:
        yield f"annotation {annotation['name']!r}", annotation.get("datasource")
        yield (f"annotation {annotation['name']!r} target",
               annotation.get("target", {}).get("datasource"))


def test_every_datasource_reference_is_a_provisioned_uid() -> None:
    sources = datasources()
    problems = []
    references = 0
    for name, board in dashboards().items():
        for where, ref in datasource_refs(board):
            references += 1
            if not isinstance(ref, dict) or ref.get("uid") not in sources:
                problems.append(f"{name} {where}: {ref}")
            elif ref.get("type") != sources[ref["uid"]]["type"]:
                problems.append(f"{name} {where}: type {ref.get('type')} is not "
                                f"{sources[ref['uid']]['type']}")
        for panel in panels(board):
            uid = panel["datasource"]["uid"]
            kinds = {"expr" if "expr" in t else "rawSql" for t in panel["targets"]}
            expected = "expr" if uid == "collector-prometheus" else "rawSql"
            if kinds != {expected}:
                problems.append(f"{name} panel {panel['title']!r}: {kinds} on {uid}")
    assert problems == []
    assert references > 100


def test_dashboard_uids_are_unique_and_panels_do_not_overlap() -> None:
    boards = dashboards()
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids) == 6
    assert all(re.fullmatch(r"[a-z0-9-]{8,40}", uid) for uid in uids), uids
    for name, board in boards.items():
        assert board["id"] is None, name  # Grafana assigns ids; a fixed one would collide
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
        cells: dict[tuple[int, int], int] = {}
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, (name, panel["title"], cells[(x, y)])
                    cells[(x, y)] = panel["id"]


def test_the_dashboards_label_a_series_as_the_collector_does(
        seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    """One label for a workload: the SQL the dashboards write it with (generated from
    collector.domain.workload.LABEL_PARTS) gives what workload_label gives in Python."""
    seeded, runner = seeded_pg
    label = load_builder().SERIES_LABEL  # the generator's own SQL text, no data in it
    rows = runner.conn.execute(f"SELECT s.series_id, {label} FROM series s").fetchall()  # noqa: S608
    assert len(rows) == len(seeded.labels) >= 5
    assert dict(rows) == seeded.labels


def test_the_dashboards_say_a_results_quality_as_the_collector_does(
        seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    """One reading of a result: the overview's quality column (SQL generated from the
    catalogue's BUSY_CPU_FRACTION and exact metrics) reads a stored result as
    collector.analysis.reading does, on the same measurement and noise documents."""
    from collector.analysis.reading import read

    _, runner = seeded_pg
    builder = load_builder()
    assert builder.quality_sql("q", "k.metric") in json.dumps(by_uid("collector-overview"),
                                                               ensure_ascii=False)
    [base] = make_run(models=("bert",)).results
    cases = []
    for other, achieved, converged in ((0.03, 0.004, True), (0.55, 0.004, True),
                                       (0.03, 0.123, False), (0.249, 0.043, False),
                                       (0.25, 0.2, False), (None, None, False)):
        measurement = MeasurementInfo(iterations=10, warmup_iterations=1, duration_s=1.0,
                                      target_rel_ci=0.02, achieved_rel_ci=achieved,
                                      converged=converged, stop_reason="max_duration")
        noise = None if other is None else NoiseProbe(
            wall_s=1.0, self_cpu_s=1.0, other_cpu_s=other, other_cpu_fraction=other)
        result = base.model_copy(update={"measurement": measurement, "noise": noise})
        for metric in ("latency_p50_seconds", "peak_rss_bytes"):
            cases.append((result, metric))
    said_all = set()
    for result, metric in cases:
        noise_json = None if result.noise is None else result.noise.model_dump_json()
        quality = builder.quality_sql("q", "q.metric").replace("%", "%%")  # its '%' literals
        [(said,)] = runner.conn.execute(
            f"SELECT {quality} FROM (VALUES (%s::jsonb, %s::jsonb, %s)) "  # noqa: S608 - the generator's SQL
            "AS q(noise, measurement, metric)",
            (noise_json, result.measurement.model_dump_json(), metric)).fetchall()
        assert said == read(result, metric).quality_text, (result.noise, metric)
        said_all.add(said)
    assert {"clean", "busy 55%", "±12% > ±2.0%", "±4.3% > ±2.0%", "busy 25%",
            "unconverged"} <= said_all


def test_trends_cover_every_quantity_and_chain_their_variables() -> None:
    trends = by_uid("collector-trends")
    sql = " ".join(t["rawSql"] for p in panels(trends) for t in p["targets"])
    quoted = set(re.findall(r"'([a-z0-9_]+)'", sql))
    wanted = {"latency_p50_seconds", "latency_p90_seconds", "latency_p99_seconds",
              "throughput_samples_per_second", "throughput_input_tokens_per_second",
              "time_to_first_token_p50_seconds", "inter_token_latency_mean_seconds",
              "decode_tokens_per_second", "load_time_seconds", "peak_rss_bytes",
              "cuda_max_allocated_bytes", "cuda_max_reserved_bytes",
              "instructions_per_iteration", "instructions_per_token"}
    assert wanted <= quoted
    assert {name for name in quoted if name.endswith(("_seconds", "_second", "_bytes"))} <= set(
        METRICS)
    names = [v["name"] for v in trends["templating"]["list"]]
    assert names == [d.name for d in SERIES_DIMENSIONS]
    for index, variable in enumerate(trends["templating"]["list"]):
        assert variable["multi"] is True and variable["includeAll"] is True
        used = set(re.findall(r"\$(\w+)", variable["query"]))
        assert used == set(names[:index]), (variable["name"], used)
    for panel in panels(trends):
        (target,) = panel["targets"]
        assert set(names) <= set(re.findall(r"\$(\w+)", target["rawSql"])), panel["title"]
        if panel["type"] != "timeseries":
            continue  # the detector's learnt noise and MDE: one table of detection_state
        for source in ("FROM measurements ", "measurements_hourly", "measurements_daily"):
            assert source in target["rawSql"], (panel["title"], source)
    [detectable] = [p for p in panels(trends) if p["type"] == "table"]
    assert "detection_state" in detectable["targets"][0]["rawSql"]
    annotations = {a["name"]: a for a in trends["annotations"]["list"]}
    assert set(annotations) == {"Regressions", "Version changes"}
    assert "regression_annotations" in annotations["Regressions"]["target"]["rawSql"]


def test_outbox_quarantine_stat_is_red_above_zero_and_says_what_to_do() -> None:
    (panel,) = [p for p in panels(by_uid("collector-health"))
                if "collector_outbox_quarantined_runs" in p["targets"][0]["expr"]]
    assert panel["type"] == "stat" and panel["targets"][0]["instant"] is True
    backlog = next(p for p in panels(by_uid("collector-health"))
                   if p["title"] == "Outbox backlog" and p["type"] == "stat")
    # next to the backlog stat, on the same line
    assert panel["gridPos"]["y"] == backlog["gridPos"]["y"]
    assert panel["gridPos"]["x"] == backlog["gridPos"]["x"] + backlog["gridPos"]["w"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"value": None, "color": "green"}, {"value": 1, "color": "red"}]
    for words in ("`collector db status`", "fix", "`collector db retry-quarantined`"):
        assert words in panel["description"], words


# -- seeding PostgreSQL through the collector --------------------------------------------------

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(days=10)
STEP = timedelta(hours=6)
RUNS = 40
RANGE = TimeRange(NOW - timedelta(days=14), NOW + timedelta(hours=1))
RAW, HOURLY, DAILY = timedelta(minutes=30), timedelta(hours=2), timedelta(days=2)

SERVING_RUN = 2000  # host-a's serving runs are (host-a, SERVING_RUN + i) in Seeded.run_ids
TASKS = {"bert": Task.TEXT_CLASSIFICATION, "vit": Task.IMAGE_CLASSIFICATION,
         "gpt2": Task.TEXT_GENERATION}
BASE_LATENCY = {"bert": 0.010, "vit": 0.020, "gpt2": 0.080}


@dataclass
class Seeded:
    """What the seed wrote, for the assertions."""

    run_ids: dict[tuple[str, int], str] = field(default_factory=dict)  # (host, index) -> id
    run_times: dict[tuple[str, int], datetime] = field(default_factory=dict)
    series: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, model) -> id
    labels: dict[str, str] = field(default_factory=dict)  # series id -> workload label @ host
    baseline_since: datetime | None = None


def metrics_for(model: str, spec: BenchmarkSpec, latency: float) -> dict[str, float]:
    batch, seq = spec.batch_size, spec.sequence_length
    values = {"latency_p50_seconds": latency, "latency_p90_seconds": latency * 1.1,
              "latency_p99_seconds": latency * 1.3, "latency_mean_seconds": latency * 1.05,
              "latency_min_seconds": latency * 0.95,
              "throughput_samples_per_second": batch / latency,
              "load_time_seconds": 0.8, "first_call_seconds": 2 * latency + 0.05,
              "peak_rss_bytes": 3.0e8, "load_peak_rss_bytes": 2.5e8,
              "model_size_bytes": 4.0e6}
    if TASKS[model] is Task.TEXT_CLASSIFICATION:
        values["throughput_input_tokens_per_second"] = batch * seq / latency
    if TASKS[model] is Task.TEXT_GENERATION:
        values |= {"time_to_first_token_p50_seconds": 0.2 * latency,
                   "time_to_first_token_mean_seconds": 0.21 * latency,
                   "inter_token_latency_mean_seconds": 0.05 * latency,
                   "inter_token_latency_p90_seconds": 0.06 * latency,
                   "decode_tokens_per_second": (spec.new_tokens - 1) * batch / (0.8 * latency),
                   "generated_tokens_per_second": spec.new_tokens * batch / latency,
                   "prefill_tokens_per_second": seq * batch / (0.2 * latency)}
    if spec.device.startswith("cuda"):
        values |= {"cuda_max_allocated_bytes": 1.2e9, "cuda_max_reserved_bytes": 1.5e9,
                   "energy_per_iteration_joules": 250.0 * latency}  # NVML, ~250 W
        if TASKS[model] is Task.TEXT_GENERATION:
            values["energy_per_token_joules"] = 250.0 * latency / (spec.new_tokens * batch)
    if spec.backend == "compile":
        values["compile_time_seconds"] = 12.0
        # Its outputs against the eager float32 result of the same workload in the run.
        values |= {"output_max_abs_diff": 3e-6, "output_max_rel_diff_ratio": 1e-6,
                   "output_top1_agreement_ratio": 1.0}
        if TASKS[model] is Task.TEXT_GENERATION:
            values["output_token_agreement_ratio"] = 1.0
    if not spec.device.startswith("cuda"):  # as if measured in instructions mode too
        values["instructions_per_iteration"] = 8.07e6 * latency / BASE_LATENCY[model]
        if TASKS[model] is Task.TEXT_GENERATION:
            values["instructions_per_token"] = values["instructions_per_iteration"] / (
                spec.new_tokens * batch)
    return values


def build_run(host: str, suite: str, when: datetime, env: Environment,
              benches: dict[str, dict[str, Any]], *, latency_factor: float = 1.0,
              failures: dict[str, FailureKind] | None = None,
              aborted: bool = False) -> RunResult:
    """A RunResult as the engine produces it, without running a model: realistic metrics
    per task, the given environment, and failed results where asked."""
    results = []
    jitter = 1 + 0.005 * (when.hour % 5 - 2 + when.day % 3)  # deterministic noise: ±2%
    for offset, (model, overrides) in enumerate(benches.items()):
        spec = BenchmarkSpec.model_validate(spec_dict(model, suite=suite, **overrides))
        began = when + timedelta(seconds=30 * offset)
        common: dict[str, Any] = {"spec": spec, "series_id": spec.series_id(host),
                                  "started_at": began,
                                  "finished_at": began + timedelta(seconds=20),
                                  "environment": env}
        kind = (failures or {}).get(model)
        if kind is not None:
            results.append(BenchmarkResult(**common, status="failed", failure=Failure(
                kind=kind, message=f"{model}: {kind.value} in the test seed",
                exception_type="RuntimeError" if kind is FailureKind.EXCEPTION else None,
                traceback_tail="Traceback (most recent call last):\n  ...\nRuntimeError"
                if kind is FailureKind.EXCEPTION else None)))
            continue
        latency = BASE_LATENCY[model] * latency_factor * jitter
        results.append(BenchmarkResult(
            **common, status="ok", resolved_task=TASKS[model],
            metrics=metrics_for(model, spec, latency),
            samples={"latency_seconds": [latency * (1 + 0.01 * i) for i in range(5)]},
            measurement=MeasurementInfo(iterations=5, warmup_iterations=1, duration_s=0.2,
                                        target_rel_ci=0.01, achieved_rel_ci=0.005,
                                        converged=True, stop_reason="converged")))
    return RunResult(run_id=uuid.uuid4().hex, suite=suite, host=host, started_at=when,
                     finished_at=when + timedelta(seconds=30 * len(benches)),
                     collector_version="0.1.0", results=tuple(results), aborted=aborted)


def environment(host: str, *, transformers: str, torch: str, gpu: bool = False) -> Environment:
    update: dict[str, Any] = {"transformers_version": transformers, "torch_version": torch}
    if gpu:
        update |= {"cuda_version": "12.6", "gpu_name": "NVIDIA H100", "gpu_count": 1,
                   "gpu_driver": "560.35"}
    return capture_host(host).model_copy(update=update)


CPU_BENCHES: dict[str, dict[str, Any]] = {"bert": {}, "gpt2": {}}
LAB_BENCHES: dict[str, dict[str, Any]] = {"vit": {}, "bert": {"batch_size": 8}}
GPU_BENCHES: dict[str, dict[str, Any]] = {"gpt2": {"device": "cuda:0", "dtype": "float16",
                                                   "backend": "compile", "batch_size": 4}}

# Serving benchmarks of host-a (a load generator against an OpenAI-compatible endpoint):
# Poisson arrivals at 4 requests/s, and a sweep of 4 rates up to the saturated throughput.
_SERVING = {"endpoint": {"url": "http://127.0.0.1:8000/v1"},
            "input_tokens": {"mean": 64}, "output_tokens": {"mean": 16},
            "slos": {"ttft_ms": 500, "tpot_ms": 50}}
SERVING_BENCHES: dict[str, dict[str, Any]] = {
    "llama-serve": {"serving": {**_SERVING, "profile": {"kind": "poisson", "rate": 4}}},
    "llama-sweep": {"serving": {**_SERVING, "profile": {"kind": "sweep", "concurrency": 8}}},
}
# A sweep's curve, as the load generator stores it (collector.domain.serving.SWEEP_SAMPLES):
# offered rates 1..4/s; the server completes up to 3.2/s; p99 TTFT climbs once it queues.
SWEEP_RATES = [1.0, 2.0, 3.0, 4.0]
SWEEP_THROUGHPUT = [1.0, 2.0, 2.9, 3.2]
SWEEP_GOODPUT = [1.0, 1.96, 2.5, 1.1]
SWEEP_TTFT_P99 = [0.12, 0.15, 0.31, 0.92]
SWEEP_TPOT_P50 = [0.020, 0.022, 0.027, 0.035]
SWEEP_E2E_P99 = [0.45, 0.52, 0.80, 1.70]
GOODPUT_DIP = range(30, 36)  # runs whose goodput fell (a regression, resolved since)


def build_serving_run(host: str, when: datetime, env: Environment, index: int, *,
                      last: bool) -> RunResult:
    """A run of the serving benchmarks as the load generator reports them: latency
    percentiles over requests, throughput, goodput and the share of failed requests; the
    sweep adds its highest rate within the SLOs, its maximum throughput and its curve."""
    slow = 1.25 if index in GOODPUT_DIP else 1.0
    results = []
    for offset, (name, overrides) in enumerate(SERVING_BENCHES.items()):
        spec = BenchmarkSpec.model_validate(spec_dict(
            "llama", name=name, suite="nightly", sequence_length=64, new_tokens=16,
            **overrides))
        began = when + timedelta(seconds=60 * offset)
        ttft = 0.1 * slow
        metrics = {
            "time_to_first_token_p50_seconds": ttft, "time_to_first_token_p90_seconds":
            1.5 * ttft, "time_to_first_token_p99_seconds": 2.5 * ttft,
            "time_per_output_token_p50_seconds": 0.02 * slow,
            "time_per_output_token_p90_seconds": 0.025 * slow,
            "time_per_output_token_p99_seconds": 0.03 * slow,
            "inter_token_latency_p50_seconds": 0.02 * slow,
            "inter_token_latency_p99_seconds": 0.04 * slow,
            "request_latency_p50_seconds": 0.4 * slow, "request_latency_p90_seconds":
            0.5 * slow, "request_latency_p99_seconds": 0.6 * slow,
            "request_throughput_per_second": 3.9, "output_throughput_tokens_per_second": 62.4,
            "goodput_requests_per_second": 3.0 if slow > 1 else 3.8,
            "goodput_ratio": 0.77 if slow > 1 else 0.97,
            # the last run lost 8% of its requests (6% errors, 2% timeouts)
            "request_error_ratio": 0.06 if last else 0.01,
            "request_timeout_ratio": 0.02 if last else 0.0}
        samples: dict[str, list[float]] = {"time_to_first_token_seconds": [ttft] * 4}
        if name == "llama-sweep":
            metrics |= {"slo_max_rate_per_second": 2.0 if slow == 1 else 1.0,
                        "max_request_throughput_per_second": SWEEP_THROUGHPUT[-1]}
            # the newest sweep is the one the dashboard draws: its rates tell it apart
            scale = 1.0 if last else 0.5
            samples |= dict(zip(SWEEP_SAMPLES.values(), (
                [r * scale for r in SWEEP_RATES], [t * scale for t in SWEEP_THROUGHPUT],
                [g * scale for g in SWEEP_GOODPUT], SWEEP_TTFT_P99, SWEEP_TPOT_P50,
                SWEEP_E2E_P99), strict=True))
        results.append(BenchmarkResult(
            spec=spec, series_id=spec.series_id(host), started_at=began,
            finished_at=began + timedelta(seconds=50), environment=env, status="ok",
            resolved_task=Task.TEXT_GENERATION, metrics=metrics, samples=samples))
    return RunResult(run_id=uuid.uuid4().hex, suite="nightly", host=host,
                     started_at=when, finished_at=when + timedelta(minutes=2),
                     collector_version="0.1.0", results=tuple(results))


# The seed's cost section: host-a and gpu-1 priced, gpu-1's grid known (its energy is
# measured: carbon too); lab's-box has no price (no default): none of its series has a cost.
SEED_PRICING = Pricing(currency="USD", hosts={"host-a": Rates(hourly_price=2.5),
                                              "gpu-1": Rates(4.1, 400.0)})


def seed(store: PostgresStore, pg_url: str) -> Seeded:
    """Three hosts over ten days: host-a (bert, gpt2; transformers upgraded halfway, 20%
    slower from then and 10% more in the latest run; one run where everything failed; two
    runs in one hour), lab's-box (vit,
    bert at batch 8; torch upgraded; vit times out now and then; a quote in the host name),
    gpu-1 (gpt2 on CUDA, compiled; every 12 h; the last run aborted by a shutdown).
    host-a also runs two serving benchmarks after each of its runs (Poisson at 4/s and a
    sweep; goodput dipped for a while; the latest run lost 8% of its requests)."""
    seeded = Seeded()

    def record(run: RunResult, index: int) -> None:
        run = with_costs(run, SEED_PRICING)  # as the cycle does, from the config's rates
        assert store.record_run(run)
        seeded.run_ids[(run.host, index)] = run.run_id
        seeded.run_times[(run.host, index)] = run.started_at
        for result in run.results:
            seeded.series[(run.host, result.spec.name)] = result.series_id
            if result.status == "ok":  # a failed result knows no resolved task
                seeded.labels[result.series_id] = workload_label(result, host=True)

    for i in range(RUNS):
        when = START + i * STEP
        env_a = environment("host-a", transformers="5.23.0" if i < 20 else "5.24.0",
                            torch="2.13.0")
        failures = ({"bert": FailureKind.EXCEPTION, "gpt2": FailureKind.EXCEPTION}
                    if i == 33 else None)
        record(build_run("host-a", "nightly", when, env_a, CPU_BENCHES,
                         latency_factor=(1.0 if i < 20 else 1.2) * (1.1 if i == RUNS - 1
                                                                    else 1.0),
                         failures=failures), i)
        record(build_serving_run("host-a", when + timedelta(minutes=15), env_a, i,
                                 last=i == RUNS - 1), SERVING_RUN + i)
        env_lab = environment("lab's-box", transformers="5.24.0",
                              torch="2.12.0" if i < 28 else "2.13.0")
        record(build_run("lab's-box", "nightly", when + timedelta(minutes=5), env_lab,
                         LAB_BENCHES, failures={"vit": FailureKind.TIMEOUT} if i % 10 == 7
                         else None), i)
        if i % 2 == 0:
            env_gpu = environment("gpu-1", transformers="5.24.0", torch="2.13.0", gpu=True)
            last = i == RUNS - 2
            record(build_run("gpu-1", "gpu", when + timedelta(minutes=10), env_gpu,
                             GPU_BENCHES, failures={"gpt2": FailureKind.ABORTED} if last
                             else None, aborted=last), i)
    # A second host-a run in the hour of run 3: the hourly aggregate has one point less.
    extra = build_run("host-a", "nightly", START + 3 * STEP + timedelta(minutes=20),
                      environment("host-a", transformers="5.23.0", torch="2.13.0"),
                      CPU_BENCHES)
    record(extra, 1000)
    seeded.baseline_since = seeded.run_times[("gpu-1", 10)]
    _seed_regressions(store, seeded)
    _seed_baselines(store, seeded)
    store.save_detection_states([
        DetectionState(series_id, metric, RUNS, 0.012, 0.04, 0.05)
        for (_host, _model), series_id in sorted(seeded.series.items())
        for metric in ("latency_p50_seconds", "throughput_samples_per_second",
                       "peak_rss_bytes")])
    return seeded


# An automatic A/B's record (collector/usecases/cycle.py): ab_summary(...).as_dict() and its
# context.
SEEDED_AB: dict[str, Any] = {
    "metric": "latency_p50_seconds", "ratio": 1.2, "low": 1.15, "high": 1.25,
    "verdict": "worse",
    "text": "A/B: transformers==5.24.0 is 1.20x transformers==5.23.0, 95% CI 1.15-1.25 "
            "(worse)",
    "a": ["transformers==5.23.0"], "b": ["transformers==5.24.0"], "rounds": 3}


def _seed_regressions(store: PostgresStore, seeded: Seeded) -> None:
    """Regressions in every state, written through the store as the detector and the
    `collector regressions` commands write them."""
    def row(regression_id: str, host: str, model: str, metric: str, *, kind: str,
            status: str, start: int, before: float, after: float, attribution: str = "",
            resolved: int | None = None, acknowledged_by: str | None = None,
            ab: dict[str, Any] | None = None) -> Regression:
        detected = start + 2
        fields: dict[str, Any] = {
            "regression_id": regression_id, "series_id": seeded.series[(host, model)],
            "metric": metric, "kind": kind, "status": status,
            "start_run_id": seeded.run_ids[(host, start)],
            "start_time": seeded.run_times[(host, start)],
            "last_good_run_id": seeded.run_ids[(host, start - 2)],
            "last_good_time": seeded.run_times[(host, start - 2)],
            "detected_run_id": seeded.run_ids[(host, detected)],
            "detected_at": seeded.run_times[(host, detected)],
            "confirmed_at": (seeded.run_times[(host, detected)]
                             if status in {"open", "acknowledged", "resolved"} else None),
            "before_value": before, "after_value": after,
            "relative_change": after / before - 1, "statistic": 6.5, "p_value": 0.001,
            "method": "seeded-by-test",
            "environment_diff": ({"transformers_version": ["5.23.0", "5.24.0"]}
                                 if attribution else {}),
            "attribution": attribution,
            "resolved_at": seeded.run_times[(host, resolved)] if resolved else None,
            "resolved_run_id": seeded.run_ids[(host, resolved)] if resolved else None,
            "acknowledged_at": seeded.run_times[(host, detected)] if acknowledged_by else None,
            "acknowledged_by": acknowledged_by,
            "note": None,
            "ab": ab,
        }
        return Regression(**fields)

    rows = [
        row("reg-open", "host-a", "bert", "latency_p50_seconds", kind="regression",
            status="open", start=20, before=0.010, after=0.012,
            attribution="transformers 5.23.0 → 5.24.0", ab=SEEDED_AB),
        row("reg-ack", "lab's-box", "vit", "latency_p90_seconds", kind="regression",
            status="acknowledged", start=12, before=0.022, after=0.025,
            acknowledged_by="alice", ab={"failure": "no wheel for torch==2.99.0",
                                         "a": ["torch==2.13.0"], "b": ["torch==2.99.0"]}),
        row("reg-suspected", "host-a", "gpt2", "peak_rss_bytes", kind="regression",
            status="suspected", start=36, before=3.0e8, after=3.3e8),
        row("reg-resolved", "host-a", "gpt2", "decode_tokens_per_second", kind="regression",
            status="resolved", start=8, before=400.0, after=350.0, resolved=14),
        row("reg-dismissed", "lab's-box", "bert", "latency_p50_seconds", kind="regression",
            status="dismissed", start=30, before=0.010, after=0.011),
        row("imp-open", "gpu-1", "gpt2", "load_time_seconds", kind="improvement",
            status="open", start=16, before=0.9, after=0.8),
        row("reg-goodput", "host-a", "llama-serve", "goodput_requests_per_second",
            kind="regression", status="resolved", start=SERVING_RUN + GOODPUT_DIP.start,
            before=3.8, after=3.0, resolved=SERVING_RUN + GOODPUT_DIP.stop),
    ]
    for record in rows:
        store.save_regression(record)


def _seed_baselines(store: PostgresStore, seeded: Seeded) -> None:
    """An accepted baseline (a change marked as expected), as `collector regressions
    baseline` writes it."""
    assert seeded.baseline_since is not None
    store.add_baseline(Baseline(seeded.series[("gpu-1", "gpt2")], "decode_tokens_per_second",
                                seeded.baseline_since, seeded.run_ids[("gpu-1", 10)],
                                "new driver"))


# -- running dashboard SQL as Grafana would ----------------------------------------------------

@dataclass
class SqlRunner:
    """Runs dashboard SQL as the read-only Grafana login, the way Grafana sends it."""

    conn: psycopg.Connection[Any]
    time_range: TimeRange = RANGE
    executed: list[str] = field(default_factory=list)

    def table(self, raw_sql: str, variables: dict[str, Variable],
              selections: dict[str, Selection],
              interval: timedelta = RAW) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of one dashboard query."""
        text = interpolate(raw_sql, variables, selections, sql_formatter)
        text = expand_sql(text, self.time_range, interval)
        assert "$" not in text, f"unsubstituted: {text}"
        try:
            with self.conn.cursor() as cur:
                cur.execute(text.encode())  # as Grafana: one text, no parameters
                result = cur.fetchall()
                assert cur.description is not None
                names = [column.name for column in cur.description]
        except psycopg.Error as error:
            raise AssertionError(f"{error}\n--- query ---\n{text}") from error
        self.executed.append(raw_sql)
        return names, result

    def rows(self, raw_sql: str, variables: dict[str, Variable],
             selections: dict[str, Selection],
             interval: timedelta = RAW) -> list[tuple[Any, ...]]:
        return self.table(raw_sql, variables, selections, interval)[1]


@pytest.fixture
def seeded_pg(pg_url: str) -> Iterator[tuple[Seeded, SqlRunner]]:
    with seeded_reader(pg_url) as seeded:
        yield seeded


@contextmanager
def seeded_reader(pg_url: str) -> Iterator[tuple[Seeded, SqlRunner]]:
    """The database at `pg_url` migrated and seeded through the store, and a runner logged in
    as a `collector_readonly` member (also used on TimescaleDB by timescaledb_by_hand.py)."""
    store = PostgresStore(pg_url)
    seeded = seed(store, pg_url)
    store.create_reader(READER, "reader-pw")
    store.close()
    reader_url = pg_url.replace("postgres@", f"{READER}:reader-pw@", 1)
    with psycopg.connect(reader_url, autocommit=True) as conn:
        role = conn.execute("SELECT current_user, pg_has_role('collector_readonly', 'MEMBER'), "
                            "has_table_privilege('runs', 'INSERT')").fetchone()
        assert role == (READER, True, False)
        yield seeded, SqlRunner(conn)


def variable_defs(board: Json) -> dict[str, Variable]:
    return {v["name"]: Variable.from_json(v) for v in board["templating"]["list"]}


def resolve_sql_variables(board: Json, runner: SqlRunner,
                          choose: Mapping[str, Selection] | None = None,
                          ) -> tuple[dict[str, Variable], dict[str, Selection],
                                     dict[str, list[str]]]:
    """Resolve the variables in order as Grafana does: each query variable's query runs with
    the variables before it already chosen. `choose` picks values by variable name; the
    others keep their saved value (All, or a custom variable's default)."""
    defs = variable_defs(board)
    selections: dict[str, Selection] = {}
    options: dict[str, list[str]] = {}
    for model in board["templating"]["list"]:
        name = model["name"]
        if model["type"] == "query":
            assert model["datasource"]["uid"] == "collector-postgres", name
            rows = runner.rows(model["query"], defs, selections)
            found = [str(r[0]) for r in rows]
        else:
            assert model["type"] == "custom", name
            found = [item.strip() for item in model["query"].split(",")]
        assert found, f"variable {name} has no options"
        options[name] = found
        picked = (choose or {}).get(name)
        if picked is None:
            saved = model["current"]["value"]
            if isinstance(saved, str):  # a single-value variable (no multi, no All)
                saved = [saved]
            picked = (Selection(tuple(found), is_all=True) if saved == [ALL]
                      else Selection(tuple(saved)))
        selections[name] = picked
    return defs, selections, options


def all_of(values: list[str]) -> Selection:
    return Selection(tuple(values), is_all=True)


def sql_targets(board: Json) -> Iterator[tuple[str, Json]]:
    for panel in panels(board):
        for target in panel["targets"]:
            if "rawSql" in target:
                yield panel["title"], target


def run_every_sql_query(board: Json, runner: SqlRunner, defs: dict[str, Variable],
                        selections: dict[str, Selection],
                        interval: timedelta = RAW) -> dict[str, list[tuple[Any, ...]]]:
    """Every SQL panel and annotation query; each must return rows."""
    results: dict[str, list[tuple[Any, ...]]] = {}
    for title, target in sql_targets(board):
        results[title] = runner.rows(target["rawSql"], defs, selections, interval)
    for annotation in board["annotations"]["list"]:
        results["annotation " + annotation["name"]] = runner.rows(
            annotation["target"]["rawSql"], defs, selections, interval)
    empty = [title for title, rows in results.items() if not rows]
    assert empty == [], f"queries that returned no rows: {empty}"
    return results


def every_sql(board: Json) -> set[str]:
    """The SQL of every panel, variable and annotation of a dashboard."""
    texts = {target["rawSql"] for _, target in sql_targets(board)}
    texts |= {v["query"] for v in board["templating"]["list"]
              if v.get("datasource", {}).get("uid") == "collector-postgres"}
    texts |= {a["target"]["rawSql"] for a in board["annotations"]["list"]}
    return texts


def target_sql(board: Json, title: str) -> str:
    (target,) = next(p for p in panels(board) if p["title"] == title)["targets"]
    sql: str = target["rawSql"]
    return sql


# -- SQL: Overview ------------------------------------------------------------------------------

def test_overview_sql_runs_as_the_reader_and_returns_rows(
        seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    seeded, runner = seeded_pg
    board = by_uid("collector-overview")
    defs, selections, options = resolve_sql_variables(board, runner)
    assert options["host"] == ["gpu-1", "host-a", "lab's-box"]
    assert selections["metric"].values == ("latency_p50_seconds",
                                           "throughput_samples_per_second",
                                           "decode_tokens_per_second", "peak_rss_bytes")
    results = run_every_sql_query(board, runner, defs, selections)
    assert results["Open regressions"] == [(2,)]  # open + acknowledged; not suspected
    active = results["Active regressions"]
    assert [r[1] for r in active] == ["open", "acknowledged", "suspected"]
    assert {r[2] for r in active} == {"regression"}
    assert active[0][14] == "transformers 5.23.0 → 5.24.0"
    assert [r[-1] for r in active] == [SEEDED_AB["text"],
                                       "A/B failed: no wheel for torch==2.99.0", None]
    quiet = results["What a quiet panel means"]
    assert {(r[1], r[4]) for r in quiet} == {("latency_p50_seconds", 5.0),
                                             ("throughput_samples_per_second", 5.0),
                                             ("peak_rss_bytes", 5.0)}
    last_runs = {r[0]: r for r in results["Last run per host"]}
    assert set(last_runs) == {"gpu-1", "host-a", "lab's-box"}
    assert last_runs["gpu-1"][3] == "aborted" and last_runs["gpu-1"][5] < last_runs["gpu-1"][1]
    assert {r[5] for r in results["Recent failures"]} == {"exception", "timeout", "aborted"}

    # Latest vs baseline with every metric: the accepted baseline of gpu-1's decode rate
    # starts the window at its `since`; elsewhere the window is the 20 previous runs.
    selections["metric"] = all_of(options["metric"])
    names, rows = runner.table(target_sql(board, "Latest value vs baseline"), defs,
                               selections)
    table = [dict(zip(names, r, strict=True)) for r in rows]
    decode = next(r for r in table if r["host"] == "gpu-1"
                  and r["metric"] == "decode_tokens_per_second")
    gpu_runs = sorted(t for (h, _), t in seeded.run_times.items() if h == "gpu-1")
    ok_gpu_runs = gpu_runs[:-1]  # the last one was aborted: no measurements
    assert decode["baseline since"] == seeded.baseline_since
    assert decode["baseline runs"] == sum(
        1 for t in ok_gpu_runs[:-1] if t >= decode["baseline since"])
    bert = next(r for r in table if r["host"] == "host-a" and r["benchmark"] == "bert"
                and r["metric"] == "latency_p50_seconds")
    assert bert["baseline runs"] == 20 and bert["baseline since"] is None
    assert bert["latest"].endswith(" ms") and 5 < bert["change %"] < 15
    # "worse by %" is the change in the metric's bad direction: latency up, throughput down.
    throughput = next(r for r in table if r["host"] == "host-a" and r["benchmark"] == "bert"
                      and r["metric"] == "throughput_samples_per_second")
    assert bert["worse by %"] == bert["change %"]
    assert throughput["change %"] < 0 and throughput["worse by %"] == -throughput["change %"]
    cuda = [r for r in table if r["metric"] == "cuda_max_reserved_bytes"]
    assert [r["host"] for r in cuda] == ["gpu-1"] and cuda[0]["latest"] == "1431 MB"
    # Costs with three significant digits (a small one never reads 0.00), only where the
    # seed priced the host: 2.5/h over 3.9 requests/s is 0.178 per 1k requests.
    per_request = [r for r in table if r["metric"] == "cost_per_thousand_requests"]
    assert {(r["host"], r["latest"]) for r in per_request} == {
        ("host-a", "0.178 currency/1k requests")}
    assert {r["host"] for r in table if r["metric"] == "cost_per_million_output_tokens"} == {
        "host-a", "gpu-1"}
    worse = [r["worse by %"] for r in table if r["worse by %"] is not None]
    assert worse == sorted(worse, reverse=True) and len(set(worse)) > 2  # worst first

    # A multi-value host selection with a quote in a name: Grafana's quoting keeps it SQL.
    selections["host"] = Selection(("lab's-box", "gpu-1"))
    latest = runner.rows(target_sql(board, "Latest value vs baseline"), defs, selections)
    assert {r[0] for r in latest} == {"lab's-box", "gpu-1"}
    assert every_sql(board) <= set(runner.executed)


# -- SQL: Trends --------------------------------------------------------------------------------

def test_trends_sql_runs_with_all_single_and_multi_values_at_every_resolution(
        seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    seeded, runner = seeded_pg
    board = by_uid("collector-trends")
    defs, selections, options = resolve_sql_variables(board, runner)
    assert options["device"] == ["cpu", "cuda:0"]
    assert options["batch_size"] == ["1", "4", "8"]
    counts: dict[timedelta, dict[str, int]] = {}
    for interval in (RAW, HOURLY, DAILY):
        results = run_every_sql_query(board, runner, defs, selections, interval)
        counts[interval] = {title: len(rows) for title, rows in results.items()}
        for title, rows in results.items():
            if title.startswith("annotation") or title == "What the detector can see":
                continue  # (not a time series: one row per series and metric)
            assert all(RANGE.start <= r[0] <= RANGE.end for r in rows), title
    # Raw points, then hourly buckets (two host-a runs share an hour), then daily ones.
    latency = {interval: counts[interval]["Latency"] for interval in counts}
    assert latency[RAW] > latency[HOURLY] > latency[DAILY] > 0
    host_a = 2 * (RUNS + 1 - 1)  # bert and gpt2: 40 runs + the extra one - the failed one
    lab = (RUNS - 4) + RUNS  # vit timed out in 4 runs; bert
    gpu = RUNS // 2 - 1  # every 12 h; the last run was aborted
    assert latency[RAW] == 3 * (host_a + lab + gpu)  # p50, p90, p99

    # Annotations: every detected change but the dismissed one; one version change per host.
    results = run_every_sql_query(board, runner, defs, selections)
    assert len(results["annotation Regressions"]) == 6
    texts = {r[2] for r in results["annotation Regressions"]}
    assert any(t.endswith("transformers 5.23.0 → 5.24.0; " + SEEDED_AB["text"]) for t in texts)
    assert any(t.endswith("; A/B failed: no wheel for torch==2.99.0") for t in texts)
    assert sum("A/B" in t for t in texts) == 2
    changes = sorted(r[1] for r in results["annotation Version changes"])
    assert changes == ["torch 2.12.0 → 2.13.0 on lab's-box",
                       "transformers 5.23.0 → 5.24.0 on host-a"]
    assert {r[0] for r in results["annotation Version changes"]} == {
        seeded.run_times[("host-a", 20)], seeded.run_times[("lab's-box", 28)]}

    # Chained variables: each is filtered by the ones before it.
    _, _, gpu_options = resolve_sql_variables(board, runner, {"host": Selection(("gpu-1",))})
    assert gpu_options["device"] == ["cuda:0"] and gpu_options["backend"] == ["compile"]
    assert gpu_options["dtype"] == ["float16"] and gpu_options["batch_size"] == ["4"]
    _, _, lab_options = resolve_sql_variables(board, runner,
                                              {"host": Selection(("lab's-box",))})
    assert lab_options["task"] == ["image-classification", "text-classification"]
    assert lab_options["device"] == ["cpu"]

    # One series picked with single values: only its lines, in every panel it has data for.
    picked = {"host": "lab's-box", "device": "cpu", "benchmark": "bert",
              "architecture": "BertForSequenceClassification",
              "task": "text-classification", "backend": "eager", "dtype": "float32",
              "quantization": "none", "attn_implementation": "auto",
              "batch_size": "8", "sequence_length": "8"}
    # The dimensions left are determined by those: one option each once the others are set.
    _, _, narrowed = resolve_sql_variables(
        board, runner, {name: Selection((value,)) for name, value in picked.items()})
    for name in {d.name for d in SERIES_DIMENSIONS} - set(picked):
        (picked[name],) = narrowed[name]
    defs_1, single, _ = resolve_sql_variables(
        board, runner, {name: Selection((value,)) for name, value in picked.items()})
    assert all(not s.is_all for s in single.values())
    for title, target in sql_targets(board):
        rows = runner.rows(target["rawSql"], defs_1, single)
        if title in {"Latency", "Throughput", "Tokens per second (input, prefill)", "Peak RSS",
                     P_COLD.title, "Instructions"}:
            assert rows, title
            assert {r[1].split(" @ ")[1].split(" ")[0] for r in rows} == {"lab's-box"}, title
            assert len(rows) < counts[RAW][title], title
        elif title == "What the detector can see":
            assert {r[0].split(" @ ")[1] for r in rows} == {"lab's-box"}, title
        else:  # generation and CUDA panels: bert has none of those
            assert rows == [], title
    annotations = {a["name"]: a["target"]["rawSql"] for a in board["annotations"]["list"]}
    assert runner.rows(annotations["Regressions"], defs_1, single) == []  # dismissed only
    (change,) = runner.rows(annotations["Version changes"], defs_1, single)
    assert change[1] == "torch 2.12.0 → 2.13.0 on lab's-box"

    # Several hosts at once.
    defs_m, multi, _ = resolve_sql_variables(board, runner,
                                             {"host": Selection(("host-a", "gpu-1"))})
    rows = runner.rows(target_sql(board, "Latency"), defs_m, multi)
    assert {r[1].split(" @ ")[1].split(" ")[0] for r in rows} == {"host-a", "gpu-1"}
    assert runner.rows(target_sql(board, "CUDA memory"), defs_m, multi)
    assert every_sql(board) <= set(runner.executed)


# -- Compare ------------------------------------------------------------------------------------

COMPARE_GROUPS = ["model", "backend", "dtype", "device", "batch_size", "quantization",
                  "attn_implementation"]


def test_compare_has_the_trend_filters_a_metric_and_a_group_by() -> None:
    compare, trends = by_uid("collector-compare"), by_uid("collector-trends")
    variables = compare["templating"]["list"]
    trend_variables = trends["templating"]["list"]
    # The same chained series filters as Trends, then one metric and one grouping column.
    assert variables[:len(trend_variables)] == trend_variables
    metric, group_by = variables[len(trend_variables):]
    assert metric["name"] == "metric" and group_by["name"] == "group_by"
    for single in (metric, group_by):
        assert single["type"] == "custom"
        assert single["multi"] is False and single["includeAll"] is False
    assert metric["query"].split(",") == sorted(METRICS)
    assert metric["current"] == {"text": "latency_p50_seconds", "value": "latency_p50_seconds"}
    assert group_by["query"].split(",") == COMPARE_GROUPS
    assert group_by["current"]["value"] == "model"
    kinds = [p["type"] for p in panels(compare)]
    assert kinds == ["barchart", "barchart", "table"]
    names = [v["name"] for v in variables]
    for panel in panels(compare):
        (target,) = panel["targets"]
        sql = target["rawSql"]
        assert set(re.findall(r"\$(\w+)", sql)) - {"__timeFilter"} == set(names), panel["title"]
        # single-value variables are inserted unquoted: only ever inside a literal
        assert "'$metric'" in sql and "'$group_by'" in sql
        assert not re.search(r"[^']\$(metric|group_by)\b|\$(metric|group_by)[^']", sql)
        assert "FROM measurements m" in sql and "ORDER BY m.time DESC LIMIT 1" in sql
        if panel["type"] == "barchart":
            assert panel["options"]["xField"] == "series"
    # The vendored barchart schema is live: a bar chart without its orientation is rejected.
    bars = copy.deepcopy(next(iter(panels(compare))))
    del bars["options"]["orientation"]
    assert schema_errors(definition_validator("barchart", "Options"), bars["options"])
    ratio = next(p for p in panels(compare) if p["title"].startswith("Ratio"))
    steps = ratio["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0] == {"value": None, "color": "green"} and steps[1]["value"] > 1


def latest_values(runner: SqlRunner, metric: str) -> dict[tuple[str, str, str, int], float]:
    """(host, name, model, batch size) -> the newest stored value of `metric`, read directly
    from the table (the reference the dashboard's answers are checked against)."""
    rows = runner.conn.execute(
        "SELECT DISTINCT ON (m.series_id) s.host, s.name, s.model, s.batch_size, m.value "
        "FROM measurements m JOIN series s USING (series_id) WHERE m.metric = %s "
        "ORDER BY m.series_id, m.time DESC", (metric,)).fetchall()
    return {(host, name, model, batch): value for host, name, model, batch, value in rows}


def compare_table(runner: SqlRunner, board: Json, defs: dict[str, Variable],
                  selections: dict[str, Selection]) -> list[dict[str, Any]]:
    names, rows = runner.table(target_sql(board, "Latest values"), defs, selections)
    return [dict(zip(names, r, strict=True)) for r in rows]


def test_compare_sql_returns_rows_for_all_single_and_multi_values(
        seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    _, runner = seeded_pg
    board = by_uid("collector-compare")
    defs, selections, options = resolve_sql_variables(board, runner)
    assert selections["metric"] == Selection(("latency_p50_seconds",))
    assert selections["group_by"] == Selection(("model",))
    assert options["host"] == ["gpu-1", "host-a", "lab's-box"]
    latest = latest_values(runner, "latency_p50_seconds")
    assert len(latest) == 5
    results = run_every_sql_query(board, runner, defs, selections)
    assert {title: len(rows) for title, rows in results.items()} == {
        "Latest $metric": 5, "Ratio to the best in its group": 5, "Latest values": 5}
    # The bars: label (group first, then the series label) and the latest value.
    values = results["Latest $metric"]
    assert {label.split(" | ")[0].split("@")[0] for label, _ in values} == {
        "BertForSequenceClassification", "GPT2LMHeadModel", "ViTForImageClassification"}
    assert sorted(v for _, v in values) == sorted(latest.values())
    table = compare_table(runner, board, defs, selections)
    assert [r["series"] for r in table] == [label.split(" | ", 1)[1]
                                            for label, _ in results["Ratio to the best in "
                                                                    "its group"]]
    assert all(r["value"].endswith(" ms") and r["unit"] == "seconds" for r in table)
    assert {r["host"] for r in table} == {"gpu-1", "host-a", "lab's-box"}

    # Every metric, every grouping: the queries run; neutral metrics have values, no ratio.
    for metric in ("throughput_samples_per_second", "peak_rss_bytes", "model_size_bytes",
                   "decode_tokens_per_second", "cuda_max_reserved_bytes"):
        for group in COMPARE_GROUPS:
            chosen = selections | {"metric": Selection((metric,)),
                                   "group_by": Selection((group,))}
            rows = compare_table(runner, board, defs, chosen)
            assert len(rows) == len(latest_values(runner, metric)) > 0, (metric, group)
            ratios = [r["ratio to best"] for r in rows]
            if metric == "model_size_bytes":
                assert ratios == [None] * len(rows)
            else:
                assert min(ratios) == 1 and all(r >= 1 for r in ratios), (metric, group)
            for title, target in sql_targets(board):
                assert len(runner.rows(target["rawSql"], defs, chosen)) == len(rows), title
    cuda = compare_table(runner, board, defs, selections | {
        "metric": Selection(("cuda_max_reserved_bytes",))})
    assert [(r["host"], r["value"]) for r in cuda] == [("gpu-1", "1431 MB")]

    # One series, picked with single values (a quote in the host name).
    picked = {"host": "lab's-box", "device": "cpu", "benchmark": "bert",
              "architecture": "BertForSequenceClassification",
              "task": "text-classification", "backend": "eager", "dtype": "float32",
              "quantization": "none", "attn_implementation": "auto",
              "batch_size": "8", "sequence_length": "8"}
    # The dimensions left are determined by those: one option each once the others are set.
    _, _, narrowed = resolve_sql_variables(
        board, runner, {name: Selection((value,)) for name, value in picked.items()})
    for name in {d.name for d in SERIES_DIMENSIONS} - set(picked):
        (picked[name],) = narrowed[name]
    defs_1, single, _ = resolve_sql_variables(
        board, runner, {name: Selection((value,)) for name, value in picked.items()})
    assert all(not single[name].is_all for name in picked)
    results_1 = run_every_sql_query(board, runner, defs_1, single)
    assert all(len(rows) == 1 for rows in results_1.values()), results_1
    assert results_1["Ratio to the best in its group"][0][1] == 1  # alone in its group
    assert results_1["Latest $metric"][0][1] == next(
        value for (host, name, _, batch), value in latest.items()
        if (host, name, batch) == ("lab's-box", "bert", 8))

    # Several hosts at once.
    defs_m, multi, _ = resolve_sql_variables(board, runner,
                                             {"host": Selection(("host-a", "gpu-1"))})
    rows = compare_table(runner, board, defs_m, multi)
    assert {r["host"] for r in rows} == {"host-a", "gpu-1"} and len(rows) == 3
    # A metric value that is not a catalogue name, with a quote, finds nothing and breaks
    # nothing: single-value variables are only ever written inside a literal.
    hostile = selections | {"metric": Selection(("x' OR 'a'='a",)),
                            "group_by": Selection(("model' --",))}
    for _, target in sql_targets(board):
        assert runner.rows(target["rawSql"], defs, hostile) == []

    # Only points in the time range: ending before host-a's upgrade, its bert is faster.
    before = START + 10 * STEP + timedelta(hours=1)
    early = SqlRunner(runner.conn, TimeRange(RANGE.start, before))
    bert_early = next(r for r in compare_table(early, board, defs, selections)
                      if r["host"] == "host-a" and r["series"].startswith("bert"))
    assert bert_early["measured at"] <= before
    bert_now = next(r for r in table if r["host"] == "host-a" and r["series"].startswith("bert"))
    assert bert_now["measured at"] > before
    assert bert_early["ratio to best"] < bert_now["ratio to best"]  # 20% + 10% slower since
    assert every_sql(board) <= set(runner.executed)


@pytest.mark.parametrize(("metric", "best"), [("latency_p50_seconds", min),
                                             ("throughput_samples_per_second", max)])
def test_compare_ratio_to_best_is_one_for_the_best_and_above_one_for_the_rest(
        seeded_pg: tuple[Seeded, SqlRunner], metric: str,
        best: Any) -> None:  # min or max, by the metric's direction
    _, runner = seeded_pg
    board = by_uid("collector-compare")
    defs, selections, _ = resolve_sql_variables(board, runner,
                                                {"metric": Selection((metric,))})
    latest = latest_values(runner, metric)
    for group, column in (("model", 2), ("batch_size", 3), ("backend", None)):
        rows = compare_table(runner, board, defs, selections | {"group_by": Selection((group,))})
        assert len(rows) == len(latest) == 5
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(r["group"], []).append(r)
        if column is not None:
            assert set(groups) == {str(key[column]) for key in latest}
        else:
            assert set(groups) == {"eager", "compile"}
        for name, members in groups.items():
            ratios = sorted(float(m["ratio to best"]) for m in members)
            assert ratios[0] == 1.0 and all(r > 1 for r in ratios[1:]), (group, name, ratios)
            # The reference: value / best (latency) or best / value (throughput).
            values = {}
            for m in members:
                (key,) = [k for k in latest
                          if (k[0], k[1]) == (m["host"], m["series"].split(" ")[0])]
                values[id(m)] = latest[key]
            top = best(values.values())
            for m in members:
                want = (values[id(m)] / top if best is min else top / values[id(m)])
                assert float(m["ratio to best"]) == pytest.approx(want, abs=1e-4)
                if m["ratio to best"] == 1:
                    assert values[id(m)] == top
    # The fastest per model, at a glance: lab's-box's bert at batch 8 and the compiled
    # float16 gpt2 on the GPU, whether read by latency (lowest) or throughput (highest).
    rows = compare_table(runner, board, defs, selections)
    # A synthetic model's identity is its architecture and a digest of its config.
    winners = {r["group"].split("@")[0]: r["host"] for r in rows if r["ratio to best"] == 1}
    assert winners == {"BertForSequenceClassification": "lab's-box",
                       "GPT2LMHeadModel": "gpu-1", "ViTForImageClassification": "lab's-box"}
    losers = [r for r in rows if r["ratio to best"] != 1]
    assert {r["host"] for r in losers} == {"host-a"} and len(losers) == 2


# -- SQL: Serving -------------------------------------------------------------------------------

def test_serving_reads_only_series_under_load_from_the_catalogue() -> None:
    from collector.domain.catalogue import SERVING_PANELS

    board, trends = by_uid("collector-serving"), by_uid("collector-trends")
    kinds = [(p["type"], p["title"]) for p in panels(board)]
    assert [t for k, t in kinds if k == "timeseries"] == [p.title for p in SERVING_PANELS]
    assert [k for k, _ in kinds if k != "timeseries"] == ["xychart", "xychart", "table"]
    # The Trends filters, each limited to series under load; every panel reads them.
    variables = board["templating"]["list"]
    assert [v["name"] for v in variables] == [v["name"] for v in trends["templating"]["list"]]
    names = {v["name"] for v in variables}
    for variable in variables:
        assert variable["query"].startswith("SELECT DISTINCT s.")
        assert "WHERE s.load <> '' AND " in variable["query"], variable["name"]
    for panel in panels(board):
        (target,) = panel["targets"]
        assert "s.load <> ''" in target["rawSql"], panel["title"]
        assert names <= set(re.findall(r"\$(\w+)", target["rawSql"])), panel["title"]
    for chart in (p for p in panels(board) if p["type"] == "xychart"):
        assert chart["transformations"] == [{"id": "partitionByValues", "options": {
            "fields": ["series"], "keepFields": False}}]
    # The vendored xychart schema is live: an XY chart without its mapping is rejected.
    broken = copy.deepcopy(next(p for p in panels(board) if p["type"] == "xychart"))
    del broken["options"]["mapping"]
    assert schema_errors(definition_validator("xychart", "Options"), broken["options"])


def test_serving_sql_shows_latency_goodput_errors_and_the_latest_sweep(
        seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    seeded, runner = seeded_pg
    board = by_uid("collector-serving")
    defs, selections, options = resolve_sql_variables(board, runner)
    # Only the series under load are choices, each load once.
    assert options["host"] == ["host-a"]
    assert options["benchmark"] == ["llama-serve", "llama-sweep"]
    assert options["load"] == ["poisson 4/s", "sweep x4"]
    assert options["task"] == ["text-generation"]
    results = run_every_sql_query(board, runner, defs, selections)
    serve = seeded.labels[seeded.series[("host-a", "llama-serve")]]
    sweep = seeded.labels[seeded.series[("host-a", "llama-sweep")]]
    assert serve == ("llama-serve float32 eager cpu bs=1 seq=64 new=16 [poisson 4/s] "
                     "@ host-a")
    assert sweep.endswith(" [sweep x4] @ host-a")

    # Over time, per series and load: a line per series and percentile, a point per run.
    ttft = results["Time to first token"]
    assert {r[1] for r in ttft} == {f"{label} {p}" for label in (serve, sweep)
                                    for p in ("p50", "p90", "p99")}
    assert len(ttft) == 2 * 3 * RUNS
    assert {r[1] for r in results["Request latency"]} == {
        f"{label} {p}" for label in (serve, sweep) for p in ("p50", "p90", "p99")}
    assert {r[1] for r in results["Time per output token"]} >= {f"{serve} p99"}
    rates = results["Requests per second under load"]
    goodput = sorted((r[0], r[2]) for r in rates if r[1] == f"{serve} goodput")
    # (a measurement's time is its result's end: 50 s after its run started)
    dip = {seeded.run_times[("host-a", SERVING_RUN + i)] + timedelta(seconds=50)
           for i in GOODPUT_DIP}
    assert len(goodput) == RUNS
    assert {v for t, v in goodput if t in dip} == {3.0}
    assert {v for t, v in goodput if t not in dip} == {3.8}
    assert {r[1] for r in rates if r[1].startswith(sweep)} == {
        f"{sweep} {legend}" for legend in ("completed", "goodput",
                                           "highest rate within SLOs", "max throughput")}
    # Errors and timeouts as shares; the latest run lost 6% + 2%.
    errors = [r for r in results["Request errors"] if r[1].startswith(serve)]
    latest = max(r[0] for r in errors)
    assert sorted((r[1], r[2]) for r in errors if r[0] == latest) == [
        (f"{serve} errors", 0.06), (f"{serve} timeouts", 0.02)]
    assert {r[2] for r in errors if r[0] < latest} == {0.01, 0.0}

    # The latest sweep's curve: its 4 points in order, as stored, x then y.
    assert results["p99 TTFT against throughput"] == [
        (sweep, x, y) for x, y in zip(SWEEP_THROUGHPUT, SWEEP_TTFT_P99, strict=True)]
    assert results["Goodput against offered rate"] == [
        (sweep, x, y) for x, y in zip(SWEEP_RATES, SWEEP_GOODPUT, strict=True)]
    names, rows = runner.table(target_sql(board, "Points of the latest sweep"), defs,
                               selections)
    points = [dict(zip(names, r, strict=True)) for r in rows]
    assert [p["point"] for p in points] == [1, 2, 3, 4]
    assert [float(p["p99 TTFT (ms)"]) for p in points] == [120.0, 150.0, 310.0, 920.0]
    assert [float(p["throughput (req/s)"]) for p in points] == SWEEP_THROUGHPUT
    assert {p["swept at"] for p in points} == {
        seeded.run_times[("host-a", SERVING_RUN + RUNS - 1)] + timedelta(seconds=60)}
    # An earlier time range draws the sweep that was latest then (half the rates).
    early = SqlRunner(runner.conn, TimeRange(RANGE.start, START + 5 * STEP))
    assert [r[1] for r in early.rows(target_sql(board, "Goodput against offered rate"),
                                     defs, selections)] == [r / 2 for r in SWEEP_RATES]

    # The goodput dip as an annotation (resolved: from its first run to its resolution).
    [(start, end, text, tags)] = results["annotation Regressions"]
    assert start == seeded.run_times[("host-a", SERVING_RUN + GOODPUT_DIP.start)]
    assert end == seeded.run_times[("host-a", SERVING_RUN + GOODPUT_DIP.stop)]
    assert text.startswith("llama-serve goodput_requests_per_second -21.1% (3.8 → 3")
    assert tags.startswith("regression,resolved,goodput_requests_per_second")

    # One load picked: only that series' lines; the sweep panels have nothing to draw.
    defs_1, one, _ = resolve_sql_variables(board, runner,
                                           {"load": Selection(("poisson 4/s",))})
    rows = runner.rows(target_sql(board, "Request latency"), defs_1, one)
    assert rows and {r[1].rsplit(" ", 1)[0] for r in rows} == {serve}
    assert runner.rows(target_sql(board, "p99 TTFT against throughput"), defs_1, one) == []
    assert every_sql(board) <= set(runner.executed)

    # The Trends dashboard lists the loads too ('' is every benchmark not under load).
    _, _, trend_options = resolve_sql_variables(by_uid("collector-trends"), runner)
    assert trend_options["load"] == ["", "poisson 4/s", "sweep x4"]


# -- SQL: Runs ----------------------------------------------------------------------------------

def test_runs_sql_runs_and_filters_by_status(seeded_pg: tuple[Seeded, SqlRunner]) -> None:
    seeded, runner = seeded_pg
    board = by_uid("collector-runs")
    defs, selections, options = resolve_sql_variables(board, runner)
    assert options["suite"] == ["gpu", "nightly"]
    assert selections["status"] == Selection(("ok", "partial", "failed", "aborted"))
    results = run_every_sql_query(board, runner, defs, selections)
    assert results["Runs"] == [(len(seeded.run_ids),)]
    names, history = runner.table(target_sql(board, "Run history"), defs, selections)
    runs = [dict(zip(names, r, strict=True)) for r in history]
    assert {r["status"] for r in runs} == {"ok", "partial", "failed", "aborted"}
    aborted = next(r for r in runs if r["status"] == "aborted")
    assert aborted["failed"] == 1 and "gpt2 (aborted): gpt2: aborted" in aborted["failures"]
    failed = next(r for r in runs if r["status"] == "failed")
    assert failed["failures"].count("(exception)") == 2 and failed["transformers"] == "5.24.0"
    assert all(r["torch"] in {"2.12.0", "2.13.0"} for r in runs)

    selections["status"] = Selection(("partial",))
    partial = runner.rows(target_sql(board, "Run history"), defs, selections)
    assert {r[3] for r in partial} == {"partial"} and {r[1] for r in partial} == {"lab's-box"}
    assert len(runner.rows(target_sql(board, "Failures"), defs, selections)) == len(partial)
    assert every_sql(board) <= set(runner.executed)


# -- PromQL --------------------------------------------------------------------------------------

SCRAPE = timedelta(seconds=1)
PROM_INTERVAL = timedelta(seconds=2)
BUILD = {"version": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"}


def prom_api(prometheus: PrometheusServer, path: str, params: dict[str, str]) -> Any:
    url = f"{prometheus.url}{path}?{urllib.parse.urlencode(params)}"
    status, body = http_request("GET", url)
    answer = json.loads(body)
    assert status == 200 and answer.get("status") == "success", (url, body)
    return answer["data"]


def prom_targets(boards: list[Json]) -> Iterator[tuple[str, Json]]:
    for board in boards:
        for panel in panels(board):
            for target in panel["targets"]:
                if "expr" in target:
                    yield f"{board['uid']}: {panel['title']}", target


def resolve_prom_variables(prometheus: PrometheusServer, board: Json, time_range: TimeRange,
                           choose: dict[str, Selection]) -> tuple[dict[str, Variable],
                                                                  dict[str, Selection],
                                                                  dict[str, list[str]]]:
    defs = variable_defs(board)
    selections: dict[str, Selection] = {}
    options: dict[str, list[str]] = {}
    for model in board["templating"]["list"]:
        assert model["datasource"]["uid"] == "collector-prometheus"
        query = interpolate(model["query"], defs, selections, prometheus_formatter)
        selector, label = parse_label_values(query)
        params = {"start": str(time_range.start.timestamp()),
                  "end": str(time_range.end.timestamp())}
        if selector is not None:
            params["match[]"] = selector
        found = sorted(prom_api(prometheus, f"/api/v1/label/{label}/values", params))
        assert found, f"variable {model['name']} has no values"
        options[model["name"]] = found
        selections[model["name"]] = choose.get(model["name"], all_of(found))
    return defs, selections, options


def run_promql(prometheus: PrometheusServer, target: Json, expr: str,
               time_range: TimeRange) -> list[dict[str, Any]]:
    if target["instant"]:
        data = prom_api(prometheus, "/api/v1/query",
                        {"query": expr, "time": str(time_range.end.timestamp())})
    else:
        data = prom_api(prometheus, "/api/v1/query_range",
                        {"query": expr, "start": str(time_range.start.timestamp()),
                         "end": str(time_range.end.timestamp()),
                         "step": str(PROM_INTERVAL.total_seconds())})
    result: list[dict[str, Any]] = data["result"]
    return result


def test_every_promql_query_returns_series_from_real_collector_metrics(
        tmp_path: Path, pushgateway: PushgatewayServer,
        prometheus_factory: PrometheusFactory) -> None:
    now = datetime.now(timezone.utc)
    store = SQLiteStore(tmp_path / "local.db")
    store.record_run(make_run(host="host-a", when=now - timedelta(hours=2), latency=0.05))
    store.record_run(make_run(host="gpu-1.lab", when=now - timedelta(hours=1), fail="vit"))
    _active_regression(store)
    exposition = Exposition(store, ServiceCollector(
        BUILD, outbox_pending=lambda: 3,
        next_runs=lambda: {"s": now + timedelta(hours=1)}, intervals={"s": 3600.0}))
    server = serve_metrics(exposition.render, lambda: (True, "ok"), port=0)
    try:
        push_run(make_run(host="bench-7", suite="adhoc", when=now - timedelta(minutes=30),
                          fail="bert"),
                 pushgateway.url, build_info=BUILD)
        host, port = server.address
        prometheus = prometheus_factory([
            {"job_name": "collector", "targets": [f"{host}:{port}"]},
            {"job_name": "pushgateway", "honor_labels": True,
             "targets": [pushgateway.address]}])
        prometheus.wait_for('collector_runs_total{host="bench-7"}')
        # rate() needs two samples of the counters in its window.
        prometheus.wait_for('count_over_time(collector_benchmark_failures_total{job="collector"}'
                            '[10s]) >= 3')
        scraped = server_metrics(f"http://{host}:{port}/metrics") + pushgateway.metrics_text()
        check_every_promql(prometheus, scraped)
    finally:
        server.stop()
        store.close()


def _active_regression(store: SQLiteStore) -> None:
    """Open regressions of bert on both scraped hosts, through the store as the detector
    writes them."""
    for info in [i for i in store.list_series() if i.benchmark == "bert"]:
        [run] = store.series_history(info.series_id, 1).runs
        store.save_regression(Regression(
            regression_id=f"r-{info.host}", series_id=info.series_id,
            metric="latency_p50_seconds", kind="regression", status="open",
            start_run_id=run.run_id, start_time=run.time, last_good_run_id=None,
            last_good_time=None, detected_run_id=run.run_id, detected_at=run.time,
            confirmed_at=run.time, before_value=0.04, after_value=0.05, relative_change=0.25,
            statistic=7.0, p_value=1e-9, method="test", environment_diff={},
            attribution="torch_version 2.12.0 -> 2.13.0"))


def server_metrics(url: str) -> str:
    status, body = http_request("GET", url)
    assert status == 200
    return body.decode()


def check_every_promql(prometheus: PrometheusServer, scraped: str) -> None:
    for family in ("collector_regression_relative_change",
                   "collector_suite_schedule_interval_seconds",
                   "collector_outbox_quarantined_runs"):
        assert re.search(rf"^{family}[{{ ]", scraped, re.M), f"{family} is not scraped"
    boards = [by_uid("collector-health"), by_uid("collector-overview")]
    # Every outbox gauge a collector exports has a Health stat panel (so the query check
    # below runs it): a quarantined run is invisible otherwise.
    outbox = set(re.findall(r"^(collector_outbox_\w+)[{ ]", scraped, re.M))
    stats = " ".join(t["expr"] for p in panels(boards[0]) if p["type"] == "stat"
                     for t in p["targets"])
    assert len(outbox) >= 2 and {f for f in outbox if f not in stats} == set()
    now = datetime.now(timezone.utc)
    time_range = TimeRange(now - timedelta(minutes=5), now)
    health = boards[0]
    defs, selections, options = resolve_prom_variables(prometheus, health, time_range, {})
    assert options["job"] == ["collector", "pushgateway"]
    assert options["host"] == ["bench-7", "gpu-1.lab", "host-a"]

    variants = {
        "all": selections,
        # a single host whose name has a regex metacharacter, and both jobs listed by name
        "single host": {"job": Selection(("collector", "pushgateway")),
                        "host": Selection(("gpu-1.lab",))},
        "two hosts": {"job": selections["job"], "host": Selection(("bench-7", "host-a"))},
    }
    problems: list[str] = []
    checked = 0
    host_filtered = 0  # results of $host-filtered queries that carry a host label
    for variant, chosen in variants.items():
        for where, target in prom_targets(boards):
            expr = expand_promql(interpolate(target["expr"], defs, chosen,
                                             prometheus_formatter),
                                 time_range, PROM_INTERVAL, SCRAPE)
            assert "$" not in expr, expr
            result = run_promql(prometheus, target, expr, time_range)
            checked += 1
            if not result:
                problems.append(f"{variant} {where}: no series for {expr}")
                continue
            hosts = {series["metric"].get("host") for series in result} - {None}
            if variant != "all" and "$host" in target["expr"]:
                host_filtered += bool(hosts)
                wanted = set(chosen["host"].values)
                if not hosts <= wanted:
                    problems.append(f"{variant} {where}: hosts {hosts} not in {wanted}")
    assert problems == []
    assert checked == 3 * len(list(prom_targets(boards)))
    assert host_filtered >= 6
