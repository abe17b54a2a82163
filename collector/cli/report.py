"""`collector report`: what ran, where, how fast, and the bottleneck findings
(collector/analysis/findings.py), from results files or stored runs (the same SIDE arguments as
`collector compare`), as Markdown (a PR comment, a wiki page) or as one self-contained HTML
file with charts, trends and the stored regressions (collector/present/html_report.py).

Thresholds of the findings: the command line's, else the config file's `report` section,
else the defaults (collector.adapters.config.ReportSettings: 100 ms, 4096 MiB, 10 samples/s).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.domain.errors import InputError, OutputError, command_line_problem

if TYPE_CHECKING:
    from collector.adapters.config import ReportSettings
    from collector.analysis.findings import Finding, Thresholds
    from collector.domain.history import Regression, Store
    from collector.domain.model import BenchmarkResult

FORMATS = ("markdown", "html")
THRESHOLD_FIELDS = ("high_latency_ms", "high_memory_mib", "low_throughput")


def add_parser(commands: Any, default_config: str) -> None:
    report = commands.add_parser(
        "report", help="what ran, how fast, and bottleneck findings, as Markdown or HTML")
    report.add_argument("sides", nargs="+", metavar="SIDE",
                        help="results files and/or selectors of stored runs (as compare's)")
    report.add_argument("--output", "-o", metavar="FILE",
                        help="write the report there (default: standard output)")
    report.add_argument("--format", choices=FORMATS,
                        help="markdown or html (default: html for an --output ending in "
                             ".html or .htm, else markdown)")
    for name, text in (
            ("--high-latency-ms", "p50 latency above this is a finding"),
            ("--high-memory-mib", "peak RSS above this is a finding"),
            ("--low-throughput", "samples/s below this is a finding")):
        report.add_argument(name, type=float, help=f"{text} (default: the config's report "
                                                   "section, else its default)")
    report.add_argument("--config", "-c", default=default_config,
                        help="configuration file: its storage section (selectors) and "
                             "report section (thresholds)")
    report.add_argument("--local-store", metavar="PATH",
                        help="SQLite file of the local store (selectors)")


def _thresholds(args: argparse.Namespace, configured: ReportSettings | None) -> Thresholds:
    """The command line's thresholds, else the config's, else the defaults."""
    from collector.adapters.config import ReportSettings
    from collector.analysis.findings import Thresholds

    defaults = configured or ReportSettings()
    values = {}
    for name in THRESHOLD_FIELDS:
        given = getattr(args, name)
        if given is not None and given <= 0:
            raise command_line_problem("--" + name.replace("_", "-"), "must be positive")
        values[name] = given if given is not None else getattr(defaults, name)
    return Thresholds(high_latency_s=values["high_latency_ms"] / 1e3,
                      high_memory_bytes=values["high_memory_mib"] * 2**20,
                      low_throughput=values["low_throughput"])


def run_report(args: argparse.Namespace, store: Callable[[], Store],
               configured: ReportSettings | None = None) -> int:
    """`configured`: the config file's report section (None: no config file)."""
    from collector.analysis.findings import analyse
    from collector.cli.compare import is_selector, load_side

    limits = _thresholds(args, configured)
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"cannot write the report to {output}: directory {output.parent} "
                          "does not exist")
    form = args.format or ("html" if output is not None
                           and output.suffix.lower() in (".html", ".htm") else "markdown")
    if form == "html" and output is None and sys.stdout.isatty():
        raise command_line_problem("--format", "an HTML report goes to a file: add "
                                   "--output FILE.html (or redirect standard output)")
    results = [r for side in args.sides for r in load_side(side, store)]
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        raise InputError("nothing to report: no successful result")
    findings = analyse(ok, limits)
    if form == "html":
        from collector.present.html_report import ReportData, render

        stored = any(is_selector(side) for side in args.sides)
        text = render(ReportData(
            results=ok, findings=findings, sides=args.sides,
            failed=[r for r in results if r.status != "ok"],
            regressions=stored_regressions(store(), ok) if stored else (),
            store_read=stored))
    else:
        text = markdown(ok, findings, args.sides)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the report to {output}: {exc.strerror}") from None
    return 0


def stored_regressions(store: Store, results: Sequence[BenchmarkResult]) -> list[Regression]:
    """The store's regressions of the reported series that overlap the reported time."""
    series = {r.series_id for r in results}
    start = min(r.started_at for r in results)
    return [record for record in store.regressions()
            if record.series_id in series
            and (record.resolved_at is None or record.resolved_at >= start)]


def _versions(results: Sequence[BenchmarkResult]) -> list[str]:
    lines = []
    for host in sorted({r.environment.host for r in results}):
        env = next(r.environment for r in results if r.environment.host == host)
        parts = [f"torch {env.torch_version}", f"transformers {env.transformers_version}",
                 f"Python {env.python_version}", f"{env.cpu_model or 'CPU ?'} "
                 f"({env.cpu_logical_cores} logical cores)"]
        if env.gpu_name:
            parts.append(f"{env.gpu_name} (driver {env.gpu_driver}, CUDA {env.cuda_version})")
        lines.append(f"- `{host}`: " + ", ".join(parts))
    return lines


def markdown(results: Sequence[BenchmarkResult], findings: Sequence[Finding],
             sides: Sequence[str]) -> str:
    from collector.analysis.compare import value_text, workload_label
    from collector.domain.catalogue import REPORT_COLUMNS, headline

    times = sorted(r.finished_at for r in results)
    lines = ["# Benchmark report", "",
             f"{len(results)} successful results of {len({workload_label(r) for r in results})}"
             f" workloads from {', '.join(f'`{s}`' for s in sides)}, "
             f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC.", "",
             "## Where", "", *_versions(results), "", "## Results", "",
             "| workload | task | headline | value | " + " | ".join(REPORT_COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(REPORT_COLUMNS)]
    latest: dict[str, BenchmarkResult] = {}
    for result in sorted(results, key=lambda r: r.finished_at):
        latest[workload_label(result)] = result
    for label, result in sorted(latest.items()):
        metric = headline(result.metrics)
        task = result.resolved_task.value if result.resolved_task else result.spec.task.value
        cells = [value_text(m, result.metrics[m]) if m in result.metrics else "-"
                 for m in REPORT_COLUMNS]
        lines.append(f"| {label} | {task} | {metric} | "
                     f"{value_text(metric, result.metrics[metric])} | " + " | ".join(cells)
                     + " |")
    lines += ["", "(the latest result of each workload)", "", "## Findings", ""]
    if not findings:
        lines.append("Nothing stands out.")
    for finding in findings:
        mark = "**warning**" if finding.severity == "warning" else "info"
        lines.append(f"- {mark} ({finding.kind}): {finding.text}")
    return "\n".join(lines) + "\n"
