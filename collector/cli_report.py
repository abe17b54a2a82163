"""`collector report`: what ran, where, how fast, and the bottleneck findings
(collector/findings.py), from results files or stored runs (the same SIDE arguments as
`collector compare`), as Markdown.

This is the report's first format (for a PR comment or a wiki page); the self-contained HTML
file with charts is the next (issue 13).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.errors import InputError, OutputError, command_line_problem

if TYPE_CHECKING:
    from collector.findings import Finding
    from collector.history import Store
    from collector.model import BenchmarkResult


def add_parser(commands: Any, default_config: str) -> None:
    report = commands.add_parser(
        "report", help="what ran, how fast, and bottleneck findings, as Markdown")
    report.add_argument("sides", nargs="+", metavar="SIDE",
                        help="results files and/or selectors of stored runs (as compare's)")
    report.add_argument("--output", "-o", metavar="FILE.md",
                        help="write the report there (default: standard output)")
    for name, default, text in (
            ("--high-latency-ms", 100.0, "p50 latency above this is a finding"),
            ("--high-memory-mib", 4096.0, "peak RSS above this is a finding"),
            ("--low-throughput", 10.0, "samples/s below this is a finding")):
        report.add_argument(name, type=float, default=default, help=f"{text} ({default:g})")
    report.add_argument("--config", "-c", default=default_config,
                        help="configuration file for its storage section (selectors)")
    report.add_argument("--local-store", metavar="PATH",
                        help="SQLite file of the local store (selectors)")


def run_report(args: argparse.Namespace, store: Callable[[], Store]) -> int:
    from collector.cli_compare import load_side
    from collector.findings import Thresholds, analyse

    for name in ("high_latency_ms", "high_memory_mib", "low_throughput"):
        if getattr(args, name) <= 0:
            raise command_line_problem("--" + name.replace("_", "-"), "must be positive")
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"cannot write the report to {output}: directory {output.parent} "
                          "does not exist")
    results = [r for side in args.sides for r in load_side(side, store)]
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        raise InputError("nothing to report: no successful result")
    limits = Thresholds(high_latency_s=args.high_latency_ms / 1e3,
                        high_memory_bytes=args.high_memory_mib * 2**20,
                        low_throughput=args.low_throughput)
    text = markdown(ok, analyse(ok, limits), args.sides)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the report to {output}: {exc.strerror}") from None
    return 0


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
    from collector.compare import value_text, workload_label
    from collector.metrics import REPORT_COLUMNS, headline

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
