"""The README's pictures, made from real runs (not drawn by hand):

    .venv/bin/python docs/screenshots.py --table RUN.json [--previous RUNS.json]
    .venv/bin/python docs/screenshots.py --report A.json B.json

- docs/images/table.png: run-once's table (100 columns, as a pipe or a narrow terminal gets
  it) of the runs in RUN.json, rendered by rich as SVG, photographed by headless Chromium;
- docs/images/report.png: the top of `collector report --a A.json --b B.json`, in Chromium.

RUN.json is a `run-once --format json` document; its `against_previous` rows, when present,
are printed under the table as run-once prints them.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGES = HERE / "images"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--no-first-run")
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: find the collector


def photograph(page: Path, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", "--virtual-time-budget=10000",
                        f"--screenshot={out}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)


def table(run_file: Path) -> None:
    from rich.console import Console

    from collector.analysis.compare import Row
    from collector.domain.model import RunResult
    from collector.present.table import previous_table, results_table

    document = json.loads(run_file.read_text(encoding="utf-8"))
    full = [RunResult.model_validate({k: v for k, v in raw.items() if k != "status"} | {
        "results": [{k: v for k, v in r.items() if k != "reading"} for r in raw["results"]]})
        for raw in document["runs"] if raw.get("purpose", "scheduled") == "scheduled"]
    console = Console(record=True, width=100, force_terminal=True, color_system="truecolor",
                      highlight=False,
                      file=io.StringIO())  # recorded, not shown
    console.print(results_table(full))
    rows = [Row(**{k: v for k, v in row.items() if k in Row.__dataclass_fields__},
                identity="", low=(row["ci95"] or [None, None])[0],
                high=(row["ci95"] or [None, None])[1])
            for row in document.get("against_previous", [])]
    for part in previous_table(rows):
        console.print(part)
    lines = len(console.export_text(clear=False).splitlines())
    with tempfile.TemporaryDirectory() as tmp:
        svg = Path(tmp) / "table.svg"
        svg.write_text(console.export_svg(title="collector run-once"), encoding="utf-8")
        photograph(svg, IMAGES / "table.png", 1000, 90 + 25 * lines)


SECTIONS = ("summary", "changed", "wrong", "variants", "findings", "charts", "trends",
            "regressions", "results", "environment")


def report(a: Path, b: Path, sections: Path | None) -> None:
    """The report's top as docs/images/report.png; with `sections`, each section alone
    (the others hidden) as sections/<name>.png, for a reader to check them one by one."""
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "-m", "collector", "report", "--a", str(a),
                        "--b", str(b), "-o", str(page)], cwd=ROOT, check=True)
        photograph(page, IMAGES / "report.png", 1280, 1100)
        if sections is None:
            return
        sections.mkdir(parents=True, exist_ok=True)
        html = page.read_text(encoding="utf-8")
        for name in SECTIONS:
            alone = Path(tmp) / f"{name}.html"
            alone.write_text(html.replace("</style>", "section.part{display:none}"
                                          f"#part-{name}{{display:block}}nav{{display:none}}"
                                          "</style>", 1), encoding="utf-8")
            photograph(alone, sections / f"{name}.png", 1280, 1400)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, metavar="RUN.json")
    parser.add_argument("--report", type=Path, nargs=2, metavar=("A.json", "B.json"))
    parser.add_argument("--sections", type=Path, metavar="DIR",
                        help="with --report: each section alone as DIR/<section>.png")
    args = parser.parse_args()
    IMAGES.mkdir(exist_ok=True)
    if args.table:
        table(args.table)
    if args.report:
        first, second = args.report
        report(first, second, args.sections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
