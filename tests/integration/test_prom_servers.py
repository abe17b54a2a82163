"""The throwaway Prometheus, Pushgateway and Alertmanager servers and their fixtures
(tests/prom_servers.py, tests/fixtures_prom.py) against the real binaries: scraping a pushed
metric, config reload, promtool and amtool checks, loopback-only listeners."""

from __future__ import annotations

import subprocess
import urllib.request

import psutil
import pytest

from tests.fixtures_prom import AlertmanagerFactory, PrometheusFactory
from tests.prom_servers import PushgatewayServer, ScrapeJob

PUSHED = """\
# HELP some_metric A gauge pushed by the test.
# TYPE some_metric gauge
some_metric 42.5
"""


def _scrape(pushgateway: PushgatewayServer, job_name: str = "pushgateway") -> ScrapeJob:
    return {"job_name": job_name, "targets": [pushgateway.address], "honor_labels": True}


def test_prometheus_sees_a_metric_pushed_to_the_pushgateway(
        pushgateway: PushgatewayServer, prometheus_factory: PrometheusFactory) -> None:
    request = urllib.request.Request(f"{pushgateway.url}/metrics/job/test/instance/x",
                                     data=PUSHED.encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    prometheus = prometheus_factory([_scrape(pushgateway)])
    result = prometheus.wait_for('some_metric{job="test"}')

    # honor_labels: the pushed job/instance labels win over the scrape job's.
    assert [sample["metric"] for sample in result] == [
        {"__name__": "some_metric", "job": "test", "instance": "x"}]
    assert float(result[0]["value"][1]) == 42.5
    [target] = prometheus.targets()
    assert target["health"] == "up"
    assert target["scrapeUrl"] == f"{pushgateway.url}/metrics"


def test_reload_applies_new_scrape_jobs_and_rejects_a_bad_config(
        pushgateway: PushgatewayServer, prometheus_factory: PrometheusFactory) -> None:
    prometheus = prometheus_factory()
    assert prometheus.targets() == []

    prometheus.reload([_scrape(pushgateway, "after_reload")])
    prometheus.wait_for('up{job="after_reload"} == 1')

    prometheus.extra_config = {"not_a_prometheus_setting": 1}
    with pytest.raises(RuntimeError, match="not_a_prometheus_setting"):
        prometheus.reload()
    # Prometheus keeps running on the last good config.
    assert prometheus.is_running
    assert prometheus.query('up{job="after_reload"}')


def test_query_errors_carry_prometheus_message(prometheus_factory: PrometheusFactory) -> None:
    prometheus = prometheus_factory()
    with pytest.raises(RuntimeError, match="parse error"):
        prometheus.query("some_metric{")


def test_wait_for_times_out_with_the_last_result(prometheus_factory: PrometheusFactory) -> None:
    prometheus = prometheus_factory()
    with pytest.raises(TimeoutError, match="never_there"):
        prometheus.wait_for("never_there", timeout=0.5)


def test_a_server_that_cannot_start_says_why(prometheus_factory: PrometheusFactory) -> None:
    with pytest.raises(RuntimeError, match=r"exited with \d+ before it was ready(.|\n)*log tail"):
        prometheus_factory(extra_config={"not_a_prometheus_setting": 1})


def test_promtool_accepts_the_pushgateways_metrics(pushgateway: PushgatewayServer,
                                                    promtool: str) -> None:
    pushgateway.push("test", PUSHED, instance="x")
    text = pushgateway.metrics_text()
    assert 'some_metric{instance="x",job="test"} 42.5' in text

    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(("exposition", "returncode", "complaint"), [
    # promtool 2.42: lint problems exit 3, unparsable input exits 1 (messages on stderr).
    ("# HELP jobs Jobs done.\n# TYPE jobs counter\njobs 1\n", 3,
     'counter metrics should have "_total" suffix'),
    ("# TYPE some_metric gauge\nsome_metric 1\n", 3, "no help text"),
    ("some_metric{ 1\n", 1, "text format parsing error"),
], ids=["counter-without-_total", "no-help", "bad-syntax"])
def test_promtool_rejects_a_malformed_exposition(promtool: str, exposition: str,
                                                 returncode: int, complaint: str) -> None:
    check = subprocess.run([promtool, "check", "metrics"], input=exposition,
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == returncode
    assert complaint in check.stderr


def test_alertmanager_starts_and_amtool_accepts_its_config(
        alertmanager_factory: AlertmanagerFactory, amtool: str) -> None:
    alertmanager = alertmanager_factory(webhook_url="http://127.0.0.1:9/hook")
    assert alertmanager.alerts() == []

    check = subprocess.run([amtool, "check-config", str(alertmanager.config_path)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout

    alertmanager.post_alerts([{"labels": {"alertname": "SlowModel", "model": "gpt2"}}])
    [alert] = alertmanager.alerts()
    assert alert["labels"] == {"alertname": "SlowModel", "model": "gpt2"}
    assert alert["receivers"] == [{"name": "webhook"}]


def test_servers_listen_only_on_loopback_on_their_own_port(
        pushgateway: PushgatewayServer, prometheus_factory: PrometheusFactory,
        alertmanager_factory: AlertmanagerFactory) -> None:
    servers = [pushgateway, prometheus_factory(), alertmanager_factory()]
    for server in servers:
        assert server.pid is not None
        listening = {(conn.laddr.ip, conn.laddr.port)
                     for conn in psutil.Process(server.pid).net_connections(kind="inet")
                     if conn.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", server.port)}, server


def test_stop_and_start_keep_the_port_and_close_removes_the_directory(
        prometheus_factory: PrometheusFactory) -> None:
    server = prometheus_factory()
    port = server.port
    server.stop()
    assert not server.is_running
    assert server.pid is None
    server.start()
    assert server.port == port
    assert server.query("vector(1)")[0]["value"][1] == "1"
    server.close()
    assert not server.is_running
    assert not server.directory.exists()
