"""prometheus/: the Prometheus config, the rules and their promtool unit tests, and the
Alertmanager config, checked by the real promtool and amtool and loaded into a real
Prometheus (scraping the real exporter) and a real Alertmanager."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.adapters.config import ServeSettings
from collector.adapters.http import MetricsServer, serve_metrics
from collector.adapters.store import SQLiteStore
from collector.domain.history import Regression
from collector.domain.series import SERIES_LABELS
from collector.present.exposition import Exposition, ServiceCollector, push_run
from tests.fixtures_prom import AlertmanagerFactory, PrometheusFactory
from tests.helpers import make_run
from tests.prom_servers import (
    AlertmanagerServer,
    PrometheusServer,
    PushgatewayServer,
    ScrapeJob,
    http_request,
)

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
PROMETHEUS_YML = PROM / "prometheus.yml"
ALERTMANAGER_YML = PROM / "alertmanager.yml"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))

SEVERITIES = {"page", "warning", "info"}
# Metrics the rules use that the exporter does not produce yet: the lead is adding them
# (issue 6). Remove a name from here once collector/ exports it.


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def run_tool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in load_yaml(path)["groups"]
            for rule in group["rules"]]


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


# -- static checks with promtool and amtool ------------------------------------------------

def test_there_are_rule_and_test_files() -> None:
    assert [path.name for path in RULE_FILES] == ["collector.rules.yml"]
    assert TEST_FILES, "no promtool unit tests in prometheus/tests/"


def test_promtool_check_config_finds_every_rule_file(promtool: str) -> None:
    proc = run_tool(promtool, "check", "config", PROMETHEUS_YML)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in proc.stdout, proc.stdout


def test_prometheus_yml_targets_match_the_stack() -> None:
    config = load_yaml(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: [t for static in job["static_configs"] for t in static["targets"]]
               for name, job in jobs.items()}
    # The collector's default serve port, as `collector serve` listens by default.
    assert targets["collector"] == [f"collector:{ServeSettings().port}"]
    assert not jobs["collector"].get("honor_labels", False)
    # Pushed series keep the job/instance/suite labels run-once pushed them with.
    assert targets["pushgateway"] == ["pushgateway:9091"]
    assert jobs["pushgateway"]["honor_labels"] is True
    assert [t for am in config["alerting"]["alertmanagers"]
            for static in am["static_configs"] for t in static["targets"]] == [
        "alertmanager:9093"]
    assert config["rule_files"] == ["rules/*.yml"]


def test_promtool_check_rules(promtool: str) -> None:
    proc = run_tool(promtool, "check", "rules", *RULE_FILES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout, proc.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    proc = run_tool(promtool, "test", "rules", *TEST_FILES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(TEST_FILES), proc.stdout


def test_amtool_check_config(amtool: str) -> None:
    proc = run_tool(amtool, "check-config", ALERTMANAGER_YML)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for found in ("2 inhibit rules", "3 receivers", "1 templates"):
        assert found in proc.stdout, proc.stdout


# -- what the rules promise ------------------------------------------------------------------

def test_every_alert_has_a_severity_summary_description_and_runbook() -> None:
    alerts = alert_rules()
    assert set(alerts) == {
        "BenchmarkRegression", "BenchmarkRegressionSuspected", "BenchmarkHostDrift",
        "BenchmarkOutputsChanged",
        "BenchmarkRegressionAcknowledged", "BenchmarkFailingRepeatedly", "BenchmarkStale",
        "BenchmarkGoodputRegression", "BenchmarkTTFTRegression", "BenchmarkRequestErrors",
        "CollectorDown", "CollectorOutboxBacklogGrowing", "CollectorOutboxQuarantine",
        "CollectorSchedulerStuck"}
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        for annotation in ("summary", "description", "runbook"):
            assert rule["annotations"].get(annotation, "").strip(), f"{name}: {annotation}"
    # Only confirmed regressions (goodput and p99 TTFT under load as their own) and a
    # collector that is down page.
    assert {name for name, rule in alerts.items() if rule["labels"]["severity"] == "page"} == {
        "BenchmarkRegression", "BenchmarkGoodputRegression", "BenchmarkTTFTRegression",
        "CollectorDown"}


def test_the_regression_alert_carries_the_series_labels_change_and_attribution() -> None:
    rule = alert_rules()["BenchmarkRegression"]
    assert 'kind="regression"' in rule["expr"] and 'status="open"' in rule["expr"]
    description = rule["annotations"]["description"]
    for label in (*SERIES_LABELS, "metric", "regression_id", "attribution"):
        assert f"$labels.{label}" in description, label
    assert rule["annotations"]["attribution"] == "{{ $labels.attribution }}"
    assert "$value" in rule["annotations"]["relative_change"]


def _exported_metric_names(tmp_path: Path) -> set[str]:
    """Every metric name the real exporter writes for a store with an ok and a failed
    result, with the outbox and scheduler parts on."""
    store = SQLiteStore(tmp_path / "names.db")
    try:
        store.record_run(make_run(fail="vit"))
        # A result under load: its request error and timeout shares.
        store.record_run(make_run(suite="serving", models=("llama",), metrics={
            "request_error_ratio": 0.02, "request_timeout_ratio": 0.01}))
        [bert] = [info for info in store.list_series() if info.benchmark == "bert"]
        _seed_regressions(store, bert.series_id)
        exposition = Exposition(store, ServiceCollector(
            {"version": "0"}, outbox_pending=lambda: 0,
            next_runs=lambda: {"s": datetime.now(timezone.utc)}, intervals={"s": 3600.0}))
        text = exposition.render().decode()
    finally:
        store.close()
    return {re.split(r"[{ ]", line, maxsplit=1)[0]
            for line in text.splitlines() if line and not line.startswith("#")}


def test_rules_use_only_metrics_the_exporter_writes(tmp_path: Path) -> None:
    exported = _exported_metric_names(tmp_path)
    used = {name for rule in rules()
            for name in re.findall(r"\b(collector_[a-z0-9_]+|up)\b", rule["expr"])}
    assert used, "no metric names found in the rules"
    assert used - exported - {"up"} == set()


def _tests_by_alert() -> tuple[dict[str, int], dict[str, int]]:
    """(alert -> cases where it must fire, alert -> cases where it must stay silent),
    counted over every promtool unit test file."""
    fires: dict[str, int] = {}
    silent: dict[str, int] = {}
    for path in TEST_FILES:
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                target = fires if case.get("exp_alerts") else silent
                target[case["alertname"]] = target.get(case["alertname"], 0) + 1
            for case in test.get("promql_expr_test", []):
                for name in re.findall(r'ALERTS\{alertname="(\w+)"', case["expr"]):
                    target = fires if case.get("exp_samples") else silent
                    target[name] = target.get(name, 0) + 1
    return fires, silent


def test_every_alert_has_unit_tests_that_fire_and_that_stay_silent() -> None:
    fires, silent = _tests_by_alert()
    for name in alert_rules():
        assert fires.get(name), f"{name}: no promtool case where it fires"
        assert silent.get(name), f"{name}: no promtool case where it stays silent"


# Changes to the rules that break a promise, and the unit test file that must catch each:
# name -> (prometheus/tests/<file>.test.yml, text in the rules, its replacement).
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "a quarantined run never warns": (
        "collector",
        "expr: collector_outbox_quarantined_runs > 0",
        "expr: collector_outbox_quarantined_runs > 1"),
    "suspected regressions page": (
        "regression",
        'expr: collector_regression_relative_change{kind="regression", status="open"}',
        'expr: collector_regression_relative_change{kind="regression", status!="acknowledged"}'),
    "acknowledged regressions page": (
        "regression",
        'expr: collector_regression_relative_change{kind="regression", status="open"}',
        'expr: collector_regression_relative_change{kind="regression", status!="suspected"}'),
    "host drift pages": (
        "regression",
        'expr: collector_regression_relative_change{kind="regression", status="open"}',
        'expr: collector_regression_relative_change{kind=~"regression|host_drift", '
        'status="open"}'),
    "improvements page": (
        "regression",
        'expr: collector_regression_relative_change{kind="regression", status="open"}',
        'expr: collector_regression_relative_change{status="open"}'),
    "a single failure alerts": (
        "failing",
        'increase(collector_benchmark_results_total{status="failed"}[2d]) >= 1.5',
        'increase(collector_benchmark_results_total{status="failed"}[2d]) >= 0.5'),
    "a single failure of a new series alerts": (
        "failing",
        'collector_benchmark_results_total{status="failed"} >= 2',
        'collector_benchmark_results_total{status="failed"} >= 1'),
    "failures followed by a success alert": (
        "failing",
        "              > on (job, instance, series_id)\n"
        "              collector_benchmark_last_success_timestamp_seconds\n"
        "            )\n"
        "          )\n",
        "              >= on (job, instance, series_id)\n"
        "              collector_benchmark_last_success_timestamp_seconds\n"
        "            )\n"
        "          )\n"),
    "stale after two intervals": (
        "stale",
        "group_left ()\n            3 * collector_suite_schedule_interval_seconds",
        "group_left ()\n            2 * collector_suite_schedule_interval_seconds"),
    "stale at exactly three intervals": (
        "stale",
        "collector_benchmark_last_success_timestamp_seconds\n"
        "              > on (job, instance, suite)",
        "collector_benchmark_last_success_timestamp_seconds\n"
        "              >= on (job, instance, suite)"),
    "benchmarks dropped from their suite go stale": (
        "stale",
        "collector_benchmark_last_run_timestamp_seconds\n"
        "              < on (job, instance, suite)",
        "collector_benchmark_last_run_timestamp_seconds\n"
        "              > on (job, instance, suite)"),
    "goodput regressions page twice": (
        "serving",
        'unless collector_regression_relative_change{metric=~"goodput_requests_per_second|'
        'slo_max_rate_per_second|time_to_first_token_p99_seconds"}',
        'unless collector_regression_relative_change{metric=~"time_to_first_token_p99_seconds"}'),
    "suspected goodput regressions page": (
        "serving",
        'status="open", metric=~"goodput_requests_per_second|slo_max_rate_per_second"}',
        'status=~"open|suspected", metric=~"goodput_requests_per_second|'
        'slo_max_rate_per_second"}'),
    "acknowledged TTFT regressions page": (
        "serving",
        'status="open", metric="time_to_first_token_p99_seconds"}',
        'status=~"open|acknowledged", metric="time_to_first_token_p99_seconds"}'),
    "5% lost requests warn": (
        "serving",
        "sum without (outcome) (collector_benchmark_request_error_ratio) > 0.05",
        "sum without (outcome) (collector_benchmark_request_error_ratio) >= 0.05"),
    "timeouts are not lost requests": (
        "serving",
        "sum without (outcome) (collector_benchmark_request_error_ratio) > 0.05",
        'max without (outcome) (collector_benchmark_request_error_ratio{outcome="error"}) '
        "> 0.05"),
    "collector down at once": ("collector", "        for: 10m\n", "        for: 1m\n"),
    "any job down is a collector down": (
        "collector", 'expr: up{job="collector"} == 0', "expr: up == 0"),
    "an outbox that empties alerts": (
        "collector",
        "min_over_time(collector_outbox_pending_runs[1h]) > 0",
        "min_over_time(collector_outbox_pending_runs[1h]) >= 0"),
    "a draining outbox alerts": (
        "collector",
        "collector_outbox_pending_runs >= max_over_time(collector_outbox_pending_runs[1h])",
        "collector_outbox_pending_runs > 0"),
    "scheduler stuck after 10 minutes": (
        "collector",
        "time() - collector_scheduler_next_run_timestamp_seconds > 900",
        "time() - collector_scheduler_next_run_timestamp_seconds > 600"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_unit_tests_catch_a_broken_rule(mutation: str, promtool: str,
                                            tmp_path: Path) -> None:
    test_file, old, new = MUTATIONS[mutation]
    copy = tmp_path / "prometheus"
    shutil.copytree(PROM, copy)
    rules_file = copy / "rules" / "collector.rules.yml"
    text = rules_file.read_text()
    assert text.count(old) == 1, f"the rule to mutate changed: {old!r}"
    rules_file.write_text(text.replace(old, new))
    assert run_tool(promtool, "check", "rules", rules_file).returncode == 0  # still valid
    proc = run_tool(promtool, "test", "rules", copy / "tests" / f"{test_file}.test.yml")
    assert proc.returncode != 0, f"promtool tests pass although {mutation}:\n{proc.stdout}"
    assert "FAILED" in proc.stdout + proc.stderr


# -- Alertmanager routing, examples and templates --------------------------------------------

@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=page", "alertname=BenchmarkRegression"], "page"),
    (["severity=warning", "alertname=BenchmarkStale"], "warning"),
    (["severity=info", "alertname=BenchmarkRegressionSuspected"], "info"),
    (["alertname=SomethingElse"], "warning"),
])
def test_alertmanager_routes_by_severity(amtool: str, labels: list[str],
                                         receiver: str) -> None:
    proc = run_tool(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}",
                    f"--verify.receivers={receiver}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receiver


_EXAMPLE_LINE = re.compile(r"^(?P<indent> *)# (?P<body> *(?:- )?[A-Za-z_]+:(?: .*)?)$")


def uncomment_examples(text: str) -> str:
    """alertmanager.yml with its commented-out settings (`# key: value` lines, not prose)
    switched on."""
    lines = []
    for line in text.splitlines():
        match = _EXAMPLE_LINE.match(line)
        lines.append(match["indent"] + match["body"] if match else line)
    return "\n".join(lines) + "\n"


def test_the_documented_email_slack_and_token_examples_are_valid(amtool: str,
                                                                 tmp_path: Path) -> None:
    copy = tmp_path / "prometheus"
    shutil.copytree(PROM, copy)
    config_path = copy / "alertmanager.yml"
    config_path.write_text(uncomment_examples(ALERTMANAGER_YML.read_text()))
    config = load_yaml(config_path)
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    # The examples are really switched on, and take their secrets from files.
    assert config["global"]["smtp_auth_password_file"].startswith("/run/secrets/")
    assert config["global"]["slack_api_url_file"].startswith("/run/secrets/")
    assert receivers["page"]["slack_configs"][0]["api_url_file"].startswith("/run/secrets/")
    assert receivers["page"]["email_configs"][0]["to"]
    assert receivers["warning"]["email_configs"][0]["to"]
    webhook = receivers["page"]["webhook_configs"][0]
    assert webhook["http_config"]["authorization"]["credentials_file"].startswith(
        "/run/secrets/")
    text = config_path.read_text()
    for secret in ("smtp_auth_password:", "api_url:", "credentials:", "bearer_token:"):
        assert secret not in text, f"an inline secret setting {secret!r} in the examples"
    proc = run_tool(amtool, "check-config", config_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_notification_template_renders_an_alert(amtool: str, tmp_path: Path) -> None:
    alert = {"status": "firing",
             "labels": {"alertname": "BenchmarkRegression", "severity": "page",
                        "model": "synthetic/gpt2", "metric": "latency_p50_seconds",
                        "host": "bench-1"},
             "annotations": {"summary": "synthetic/gpt2 latency_p50_seconds +25% on bench-1",
                             "description": "Confirmed regression 17.",
                             "attribution": "transformers_version 5.23.0 -> 5.24.0",
                             "runbook": "Look at the Trends dashboard."},
             "startsAt": "2026-05-01T10:00:00Z"}
    data = tmp_path / "data.json"
    data.write_text(json.dumps({
        "receiver": "page", "status": "firing", "alerts": [alert], "groupLabels": {},
        "commonLabels": alert["labels"], "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093"}))
    proc = run_tool(amtool, "template", "render",
                    f"--template.glob={PROM / 'templates' / '*.tmpl'}",
                    '--template.text={{ template "collector.title" . }}\n'
                    '{{ template "collector.text" . }}',
                    f"--template.data={data}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[:6] == [
        "[FIRING:1] page BenchmarkRegression synthetic/gpt2 latency_p50_seconds on bench-1",
        "synthetic/gpt2 latency_p50_seconds +25% on bench-1",
        "Confirmed regression 17.",
        "What changed: transformers_version 5.23.0 -> 5.24.0",
        "Runbook: Look at the Trends dashboard.",
        "Since: 2026-05-01 10:00 UTC"]


# -- live: a real Prometheus and Alertmanager ------------------------------------------------

def _rule_groups(prometheus: PrometheusServer) -> list[dict[str, Any]]:
    status, body = http_request("GET", f"{prometheus.url}/api/v1/rules")
    assert status == 200, body
    groups: list[dict[str, Any]] = json.loads(body)["data"]["groups"]
    return groups


def _wait(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s; last: {result!r}")
        time.sleep(0.25)


def _all_rules_evaluated_ok(prometheus: PrometheusServer) -> list[dict[str, Any]]:
    groups = _rule_groups(prometheus)
    evaluated = all(rule["health"] == "ok" and not rule.get("lastError")
                    for group in groups for rule in group["rules"])
    return groups if evaluated else []


def test_the_rule_files_load_in_a_real_prometheus(
        prometheus_factory: PrometheusFactory) -> None:
    prometheus = prometheus_factory(rule_files=RULE_FILES)
    groups = _wait(lambda: _all_rules_evaluated_ok(prometheus),
                   "every rule evaluated with health ok")
    expected = {(str(path), group["name"]): [rule.get("record") or rule["alert"]
                                             for rule in group["rules"]]
                for path in RULE_FILES for group in load_yaml(path)["groups"]}
    assert {(group["file"], group["name"]): [rule["name"] for rule in group["rules"]]
            for group in groups} == expected


def _seed_regressions(store: SQLiteStore, series_id: str) -> None:
    """Three active changes of bert, written through the store as the detector does: an
    open regression with attribution (pages), a suspected one (info), an improvement."""
    [run_id] = [run.run_id for run in store.series_history(series_id, 1).runs]
    when = datetime.now(timezone.utc)
    for reg_id, metric, kind, status, change, why in (
            ("7", "latency_p50_seconds", "regression", "open", 0.25,
             "transformers_version 5.23.0 -> 5.24.0"),
            ("8", "peak_rss_bytes", "regression", "suspected", 0.4, ""),
            ("9", "latency_p90_seconds", "improvement", "open", -0.3, "")):
        store.save_regression(Regression(
            regression_id=reg_id, series_id=series_id, metric=metric, kind=kind,  # type: ignore[arg-type]  # literals from the table above
            status=status, start_run_id=run_id, start_time=when,  # type: ignore[arg-type]  # literals from the table above
            last_good_run_id=None, last_good_time=None, detected_run_id=run_id,
            detected_at=when, confirmed_at=when if status == "open" else None,
            before_value=1.0, after_value=1.0 + change, relative_change=change,
            statistic=6.0, p_value=1e-9, method="test", environment_diff={},
            attribution=why))


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[MetricsServer, dict[str, str]]]:
    """The real exporter over real HTTP: suite `s` on host-a, bert ok 4 h ago (so stale at
    one run per hour), vit failed twice and never succeeded; suite `s` runs next in an
    hour, suite `t` was due two hours ago. Returns the server and bert's series labels."""
    now = datetime.now(timezone.utc)
    store = SQLiteStore(tmp_path / "local.db")
    store.record_run(make_run(when=now - timedelta(hours=5), fail="vit", latency=0.02))
    store.record_run(make_run(when=now - timedelta(hours=4), fail="vit", latency=0.02))
    [bert] = [info for info in store.list_series() if info.benchmark == "bert"]
    # Prometheus keeps no empty label (`load` is '' for a benchmark not under load).
    series = {label: value for label in SERIES_LABELS if (value := str(getattr(bert, label)))}
    _seed_regressions(store, bert.series_id)
    exposition = Exposition(store, ServiceCollector(
        {"version": "0"}, outbox_pending=lambda: 0,
        next_runs=lambda: {"s": now + timedelta(hours=1), "t": now - timedelta(hours=2)},
        intervals={"s": 3600.0}))
    exposition.render()  # the first render is the slow one: not in Prometheus' 1 s scrape
    server = serve_metrics(exposition.render, lambda: (True, "ok"), port=0)
    try:
        yield server, series
    finally:
        server.stop()
        store.close()


def _live_jobs(targets: dict[str, list[str]]) -> list[ScrapeJob]:
    """prometheus.yml's scrape jobs (name, honor_labels) with the stack's targets replaced
    by local ones; jobs not in `targets` are left out."""
    jobs: list[ScrapeJob] = []
    for job in load_yaml(PROMETHEUS_YML)["scrape_configs"]:
        if job["job_name"] in targets:
            scrape: ScrapeJob = {"job_name": job["job_name"],
                                 "targets": targets[job["job_name"]]}
            if "honor_labels" in job:
                scrape["honor_labels"] = job["honor_labels"]
            jobs.append(scrape)
    return jobs


def _alerts(prometheus: PrometheusServer) -> list[dict[str, Any]]:
    status, body = http_request("GET", f"{prometheus.url}/api/v1/alerts")
    assert status == 200, body
    alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
    return alerts


def _named(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [alert for alert in alerts if alert["labels"]["alertname"] == name]


def test_rules_fire_on_the_real_exporter_and_reach_alertmanager(
        exporter: tuple[MetricsServer, dict[str, str]], pushgateway: PushgatewayServer,
        prometheus_factory: PrometheusFactory, alertmanager_factory: AlertmanagerFactory,
        request: pytest.FixtureRequest) -> None:
    server, series = exporter
    collector_address = f"127.0.0.1:{server.address[1]}"
    # A port held but not listening: connections are refused, and nothing else can take it.
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    request.addfinalizer(held.close)
    held.bind(("127.0.0.1", 0))
    dead_collector = f"127.0.0.1:{held.getsockname()[1]}"
    # A run-once push from another host, the way `collector run-once --push` sends it.
    push_run(make_run(host="host-b", latency=0.03), pushgateway.url)

    alertmanager = alertmanager_factory(ALERTMANAGER_YML)
    prometheus = prometheus_factory(
        _live_jobs({"collector": [collector_address, dead_collector],
                    "pushgateway": [pushgateway.address]}),
        RULE_FILES,
        extra_config={"alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [alertmanager.address]}]}]}})

    prometheus.wait_for('up{job="pushgateway"} == 1')
    prometheus.wait_for(f'up{{job="collector", instance="{collector_address}"}} == 1')
    _wait(lambda: _all_rules_evaluated_ok(prometheus), "every rule evaluated with health ok")

    # Recording rules on the real exporter's series, and on the pushed ones (honor_labels
    # keeps the job and instance run-once pushed them with).
    p50 = prometheus.wait_for('collector:benchmark_latency_p50_seconds{benchmark="bert"}',
                              lambda result: len(result) == 2)
    by_instance = {sample["metric"]["instance"]: sample for sample in p50}
    assert set(by_instance) == {collector_address, "host-b"}
    assert float(by_instance[collector_address]["value"][1]) == pytest.approx(0.02)
    assert by_instance["host-b"]["metric"]["job"] == "collector"
    assert float(by_instance["host-b"]["value"][1]) == pytest.approx(0.03)
    # vit never succeeded here: no latency from this collector
    assert [sample["metric"]["instance"] for sample in prometheus.query(
        'collector:benchmark_latency_p50_seconds{benchmark="vit"}')] == ["host-b"]
    stale_after = prometheus.wait_for("collector:suite_stale_after_seconds")
    assert [float(sample["value"][1]) for sample in stale_after] == [3 * 3600]

    expected = {"BenchmarkRegression", "BenchmarkRegressionSuspected",
                "BenchmarkFailingRepeatedly", "BenchmarkStale", "CollectorDown",
                "CollectorSchedulerStuck"}

    def all_expected() -> list[dict[str, Any]]:
        alerts = _alerts(prometheus)
        return alerts if {a["labels"]["alertname"] for a in alerts} >= expected else []

    alerts = _wait(all_expected, "all expected alerts")

    [regression] = _named(alerts, "BenchmarkRegression")
    assert regression["state"] == "firing"
    assert regression["labels"] == {
        **series, "alertname": "BenchmarkRegression", "job": "collector",
        "instance": collector_address, "severity": "page",
        "metric": "latency_p50_seconds", "kind": "regression", "status": "open",
        "regression_id": "7", "attribution": "transformers_version 5.23.0 -> 5.24.0"}
    annotations = regression["annotations"]
    assert annotations["attribution"] == "transformers_version 5.23.0 -> 5.24.0"
    assert annotations["relative_change"] == "0.2500"
    assert annotations["summary"] == (f"{series['model']} latency_p50_seconds +25% on "
                                      f"{series['host']} ({series['device']}, "
                                      f"{series['dtype']}, {series['backend']})")
    for label in series:  # the labels it has (no load: it is not under load)
        assert f"{label}={series[label]}" in annotations["description"], label
    assert "load=" not in annotations["description"]
    assert "transformers_version 5.23.0 -> 5.24.0" in annotations["description"]

    [suspected] = _named(alerts, "BenchmarkRegressionSuspected")
    assert suspected["labels"]["metric"] == "peak_rss_bytes"  # and the improvement: nothing
    [failing] = _named(alerts, "BenchmarkFailingRepeatedly")
    assert failing["labels"]["benchmark"] == "vit" and failing["state"] == "firing"
    [stale] = _named(alerts, "BenchmarkStale")
    assert stale["labels"]["series_id"] == series["series_id"]
    [down] = [alert for alert in _named(alerts, "CollectorDown")
              if alert["labels"]["instance"] == dead_collector]
    assert down["state"] == "pending"
    [stuck] = _named(alerts, "CollectorSchedulerStuck")
    assert (stuck["labels"]["suite"], stuck["state"]) == ("t", "pending")
    assert not _named(alerts, "CollectorOutboxBacklogGrowing")

    # Prometheus sends the firing alerts to Alertmanager, which routes them by severity
    # and groups them by series.
    def routed() -> dict[str, list[str]]:
        found = {alert["labels"]["alertname"]: [r["name"] for r in alert["receivers"]]
                 for alert in alertmanager.alerts()}
        wanted = {"BenchmarkRegression", "BenchmarkRegressionSuspected",
                  "BenchmarkFailingRepeatedly", "BenchmarkStale"}
        return found if wanted <= set(found) else {}

    receivers = _wait(routed, "the firing alerts in Alertmanager")
    assert receivers["BenchmarkRegression"] == ["page"]
    assert receivers["BenchmarkRegressionSuspected"] == ["info"]
    assert receivers["BenchmarkFailingRepeatedly"] == ["warning"]
    assert receivers["BenchmarkStale"] == ["warning"]
    status, body = http_request("GET", f"{alertmanager.url}/api/v2/alerts/groups")
    assert status == 200, body
    [group] = [group for group in json.loads(body)
               if group["labels"].get("alertname") == "BenchmarkRegression"]
    assert group["labels"] == {"alertname": "BenchmarkRegression",
                               "instance": collector_address,
                               "series_id": series["series_id"],
                               "metric": "latency_p50_seconds"}


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, "job": "collector", **labels},
            "annotations": {"summary": name}}


def _states(alertmanager: AlertmanagerServer) -> dict[tuple[str, str, str], str]:
    return {(alert["labels"]["alertname"], alert["labels"]["instance"],
             alert["labels"].get("series_id", "")): alert["status"]["state"]
            for alert in alertmanager.alerts()}


def test_alertmanager_inhibits_series_alerts_of_a_collector_that_is_down(
        alertmanager_factory: AlertmanagerFactory) -> None:
    alertmanager = alertmanager_factory(ALERTMANAGER_YML)
    alertmanager.post_alerts([
        _alert("CollectorDown", "page", instance="a:9464"),
        _alert("BenchmarkRegression", "page", instance="a:9464", series_id="1",
               metric="latency_p50_seconds"),
        _alert("BenchmarkStale", "warning", instance="a:9464", series_id="2"),
        _alert("CollectorSchedulerStuck", "warning", instance="a:9464", suite="s"),
        # another collector is up: its alerts stand
        _alert("BenchmarkRegression", "page", instance="b:9464", series_id="3",
               metric="latency_p50_seconds"),
        # a failing series is stale as well: only the failure alert stands
        _alert("BenchmarkFailingRepeatedly", "warning", instance="b:9464", series_id="4"),
        _alert("BenchmarkStale", "warning", instance="b:9464", series_id="4"),
        _alert("BenchmarkStale", "warning", instance="b:9464", series_id="5"),
    ])
    expected = {
        ("CollectorDown", "a:9464", ""): "active",
        ("BenchmarkRegression", "a:9464", "1"): "suppressed",
        ("BenchmarkStale", "a:9464", "2"): "suppressed",
        ("CollectorSchedulerStuck", "a:9464", ""): "suppressed",
        ("BenchmarkRegression", "b:9464", "3"): "active",
        ("BenchmarkFailingRepeatedly", "b:9464", "4"): "active",
        ("BenchmarkStale", "b:9464", "4"): "suppressed",
        ("BenchmarkStale", "b:9464", "5"): "active",
    }
    _wait(lambda: _states(alertmanager) == expected, "the inhibition states", timeout=15)
    suppressed = [alert for alert in alertmanager.alerts()
                  if alert["status"]["state"] == "suppressed"]
    assert all(alert["status"]["inhibitedBy"] for alert in suppressed)

