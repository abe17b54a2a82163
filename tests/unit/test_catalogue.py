"""The metric catalogue (collector/domain/catalogue.py) is the single source of truth: no module
outside it and the worker's trackers spells a metric's name, and every catalogue row is
complete enough for each consumer to derive from it."""

from __future__ import annotations

import ast
from pathlib import Path

from collector.domain import catalogue as metrics
from collector.domain.catalogue import METRICS, Profile

ROOT = Path(__file__).parents[2]
# The trackers measure metrics, so they name what they measure, and two analyses read
# particular metrics by their meaning; nothing else may: the worker's (collector/adapters/measure/),
# the output drift computed after a run, and the bottleneck findings (prefill share, batch
# scaling, compile payoff are about named quantities), and the summary of a run under load
# (collector/domain/load_stats.py: it measures what the load generator and continuous
# batching record, a tracker shared by both), and cost and carbon, derived from the rates,
# token and request rates and energy they name (collector/analysis/cost.py).
MEASURING = ROOT / "collector" / "adapters" / "measure"
# The load generator is a tracker too: it reads the summary of its runs (a sweep's maximum).
LOAD = ROOT / "collector" / "adapters" / "load"
# Importers translate other tools' names into the catalogue's (collector/adapters/imports/):
# the translation table is where a source's quantity meets its metric.
IMPORTS = ROOT / "collector" / "adapters" / "imports"
# The benchmark module's result fields (inference_time, memory_usage_mb, ...) are named
# metrics of ours, in its compatible API's one table of them.
ANALYSES = (ROOT / "collector" / "compat" / "transformers_benchmark.py",
            ROOT / "collector" / "analysis" / "numerics.py",
            ROOT / "collector" / "analysis" / "findings.py",
            ROOT / "collector" / "domain" / "load_stats.py",
            ROOT / "collector" / "analysis" / "cost.py")


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_metric_name_is_spelled_outside_the_catalogue_and_the_trackers() -> None:
    sources = [*sorted((ROOT / "collector").rglob("*.py")),
               ROOT / "grafana" / "build_dashboards.py"]
    found = [f"{path.relative_to(ROOT)}:{line}: {value}"
             for path in sources
             if path not in (ROOT / "collector" / "domain" / "catalogue.py", *ANALYSES)
             and MEASURING not in path.parents and LOAD not in path.parents
             and IMPORTS not in path.parents
             for line, value in _literals(path) if value in METRICS]
    assert found == []


def test_every_exported_family_has_one_help_and_label_values_tell_members_apart() -> None:
    by_family: dict[str, set[str | None]] = {}
    for definition in METRICS.values():
        if definition.family is None:
            continue
        values = by_family.setdefault(definition.family.full_name, set())
        assert definition.label_value not in values, definition.name
        values.add(definition.label_value)
        # A family with a label needs a value on every member, one without none.
        assert (definition.label_value is None) == (definition.family.label is None), \
            definition.name


def test_each_panel_holds_one_unit_and_legends_where_it_has_several_metrics() -> None:
    for panel, members in metrics.panels():
        assert members, panel.title
        assert len({d.unit for d in members}) == 1, panel.title
        if len(members) > 1:
            assert all(d.legend for d in members), panel.title


def test_profiles_follow_units_and_directions() -> None:
    for definition in METRICS.values():
        if definition.unit == "bytes" and definition.direction is not metrics.Direction.NEUTRAL:
            assert definition.profile is Profile.MEMORY, definition.name
        if definition.unit == "instructions":
            assert definition.profile is Profile.INSTRUCTIONS, definition.name
        if definition.direction is metrics.Direction.NEUTRAL:
            assert not definition.detectable, definition.name


def test_headlines_and_default_selection_are_catalogued() -> None:
    for name in (*metrics.HEADLINES, *metrics.DEFAULT_SELECTION):
        assert name in METRICS
    assert all(METRICS[name].column for name in metrics.HEADLINES)
