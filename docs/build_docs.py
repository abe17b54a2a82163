"""Generate the reference pages that are derived from the code (the committed Markdown is
what readers see; tests/test_quality.py proves it equals this script's output).

    .venv/bin/python docs/build_docs.py          # rewrite docs/metrics.md, docs/exit-codes.md
    .venv/bin/python docs/build_docs.py --check  # exit 1 if one is stale

docs/metrics.md is the metric catalogue (collector/domain/catalogue.py) as a table: adding a
metric is its catalogue row and its producer; this page follows. docs/exit-codes.md is the
exit codes' table (collector/cli/exits.py: Exit and MEANINGS), the one `collector --help`
prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: find the collector

from collector.cli.exits import MEANINGS, Exit  # noqa: E402  (needs the path set above)
from collector.domain.catalogue import (  # noqa: E402
    METRICS,
    STATE_FAMILIES,
    Direction,
)
from collector.domain.series import SERIES_DIMENSIONS  # noqa: E402

PAGES = {"metrics.md": "metrics", "exit-codes.md": "exit_codes"}
_BETTER = {Direction.LOWER_IS_BETTER: "lower", Direction.HIGHER_IS_BETTER: "higher",
           Direction.NEUTRAL: "neutral"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def metrics() -> str:
    lines = [
        "# Metrics",
        "",
        "Generated from the metric catalogue (`collector/domain/catalogue.py`) by "
        "`docs/build_docs.py`; do not edit by hand.",
        "",
        "Every result carries the metrics its benchmark measures. *Better* is the direction "
        "the detector and `compare` judge by (neutral metrics are shown, never judged); "
        "*profile* is how the detector treats the metric (steady: timed, a busy host moves "
        "it; cold: one-off work; memory and instructions: near-deterministic; outputs: any "
        "step beyond the tolerance is a change; none: never judged). *Exported as* is the "
        "Prometheus family on `/metrics` (with its label value where a family holds "
        "several metrics); metrics without one are kept in the stores only.",
        "",
        "| metric | unit | better | profile | exported as | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in METRICS.items():
        family: str = "-"
        if d.family is not None:
            family = f"`{d.family.full_name}`"
            if d.family.label:
                family += f" `{d.family.label}=\"{d.label_value}\"`"
        lines.append(f"| `{name}` | {d.unit} | {_BETTER[d.direction]} | {d.profile.value} | "
                     f"{family} | {_cell(d.help)} |")
    labels = ", ".join(f"`{d.name}`" for d in SERIES_DIMENSIONS)
    lines += [
        "",
        "The cost and carbon metrics are derived, not measured: from the rates of the "
        "config's `cost` section in force when the result was made, and only where every "
        "input is there ([configuration.md](configuration.md#cost-and-carbon)).",
        "",
        "Every exported series carries the series' dimensions as labels "
        f"(`collector/domain/series.py`): {labels} and `series_id`.",
        "",
        "## The collector's own families",
        "",
        "| family | type | labels | what it is |",
        "|---|---|---|---|",
    ]
    for state in STATE_FAMILIES:
        names = (["series labels"] if state.series else []) + [f"`{x}`" for x in state.labels]
        lines.append(f"| `{state.sample}` | {state.kind} | {', '.join(names) or '-'} | "
                     f"{_cell(state.help)} |")
    return "\n".join(lines) + "\n"


def exit_codes() -> str:
    lines = [
        "# Exit codes",
        "",
        "Generated from `collector/cli/exits.py` by `docs/build_docs.py`; do not edit by hand. "
        "`collector --help` ends with the same table.",
        "",
        "What a script or CI job can test for. Which command gives which, in detail: "
        "[commands.md](commands.md#exit-codes) and "
        "[ab-and-bisect.md](ab-and-bisect.md#exit-codes).",
        "",
        "| code | name | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| {code.value} | `{code.name}` | {_cell(MEANINGS[code])} |" for code in Exit]
    return "\n".join(lines) + "\n"


def render() -> dict[str, str]:
    return {name: globals()[builder]() for name, builder in PAGES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = parser.parse_args(argv)
    stale = [name for name, text in render().items()
             if not (HERE / name).exists() or (HERE / name).read_text() != text]
    if args.check:
        for name in stale:
            sys.stderr.write(f"stale: docs/{name} (run .venv/bin/python docs/build_docs.py)\n")
        return 1 if stale else 0
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
