"""One vocabulary: the series' dimensions, the workload's label and the Prometheus families
are defined once (collector/domain/series.py, workload.py, catalogue.py); the exporter, the
stores, the dashboards and the alert rules are derived from them or held to them here."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from collector.adapters.store import SQLiteStore
from collector.domain.catalogue import METRICS, STATE_FAMILIES, families
from collector.domain.series import (
    SERIES_DIMENSIONS,
    SERIES_FIELDS,
    SERIES_LABELS,
    series_info,
    workload_label,
)
from collector.present.exposition import Exposition, ServiceCollector
from tests.helpers import make_run

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "grafana"))
import build_dashboards  # noqa: E402

RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
# Labels Prometheus, Alertmanager or the rules themselves add.
SCRAPE_LABELS = {"job", "instance", "alertname", "alertstate", "severity", "le", "quantile"}


def _family_labels() -> set[str]:
    labels = {f.label for f in families().values() if f.label}
    for state in STATE_FAMILIES:
        labels.update(state.labels)
    return labels


def _known_names() -> set[str]:
    names = set(families()) | {s.sample for s in STATE_FAMILIES}
    for path in RULES:
        names |= set(re.findall(r"record:\s*(\S+)", path.read_text()))
    return names


def test_every_collector_name_the_rules_and_dashboards_use_is_catalogued() -> None:
    known = _known_names()
    used: dict[str, set[str]] = {}
    for path in [*RULES, *(ROOT / "grafana" / "dashboards").glob("*.json")]:
        text = path.read_text()
        for name in re.findall(r"\b(collector_[a-z_]+)\b", text):
            if name in ("collector_version",):  # the runs table's column in the dashboards' SQL
                continue
            used.setdefault(name, set()).add(path.name)
    assert used, "the rules name no collector family"
    unknown = {name: files for name, files in used.items() if name not in known}
    assert unknown == {}


def test_every_label_the_rules_read_is_a_series_or_family_label() -> None:
    allowed = set(SERIES_LABELS) | _family_labels() | SCRAPE_LABELS
    for path in RULES:
        text = path.read_text()
        read = set(re.findall(r"\$labels\.(\w+)", text))
        for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text):
            read |= {label.strip() for label in group.split(",") if label.strip()}
        for selector in re.findall(r"\{([^{}]*=[^{}]*)\}", text):
            read |= set(re.findall(r"(\w+)\s*=~?", selector))
        assert read, path
        assert read - allowed == set(), path.name


def test_the_exporter_labels_every_series_by_the_dimensions(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        run = make_run(models=("bert", "vit"))
        store.record_run(run)
        text = Exposition(store, ServiceCollector({"version": "0"})).render().decode()
        by_series = {r.series_id: series_info(r) for r in run.results}
        latency = [s for f in text_string_to_metric_families(text)
                   if f.name == METRICS["latency_p50_seconds"].family.full_name  # type: ignore[union-attr]  # catalogued with a family
                   for s in f.samples]
        assert len({s.labels["series_id"] for s in latency}) == 2
        for sample in latency:
            info = by_series[sample.labels["series_id"]]
            assert set(sample.labels) == {*SERIES_LABELS, "percentile"}
            assert {k: sample.labels[k] for k in SERIES_LABELS} == {
                k: str(getattr(info, k)) for k in SERIES_LABELS}
    finally:
        store.close()


def test_the_dashboards_variables_are_the_series_dimensions() -> None:
    trends = json.loads((ROOT / "grafana" / "dashboards" / "collector-trends.json").read_text())
    names = [v["name"] for v in trends["templating"]["list"]]
    assert names == [d.name for d in SERIES_DIMENSIONS]
    assert set(SERIES_FIELDS) >= {d.name for d in SERIES_DIMENSIONS}


def test_one_label_for_a_workload_everywhere() -> None:
    run = make_run(models=("bert", "vit"))
    for result in run.results:
        label = workload_label(result)
        assert label == result.spec.label or result.resolved_task is not None
        assert label.startswith(result.spec.name + " ")
        assert workload_label(result, host=True) == f"{label} @ {result.environment.host}"
    # The dashboards write it from the same parts (tests/integration/test_grafana.py runs
    # that SQL against PostgreSQL and compares it with workload_label).
    assert "concat_ws(' ', s.name, s.dtype, s.backend" in build_dashboards.SERIES_LABEL
