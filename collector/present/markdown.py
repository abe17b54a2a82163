"""Markdown: `collector report` (a PR comment, a wiki page) and `compare --format markdown`
/ `--pivot ... --format markdown`."""

from __future__ import annotations

from collections.abc import Sequence

from collector.analysis.compare import Comparison, Pivot, value_text
from collector.analysis.findings import Finding
from collector.domain.catalogue import REPORT_COLUMNS, headline
from collector.domain.model import BenchmarkResult
from collector.domain.series import workload_label
from collector.present.documents import verdict_counts


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


def report(results: Sequence[BenchmarkResult], findings: Sequence[Finding],
           sides: Sequence[str]) -> str:
    """`collector report --format markdown`: where, the latest result of each workload and
    the findings."""
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


def comparison(result: Comparison, names: tuple[str, str]) -> str:
    """`compare --format markdown`: the verdict counts and one row per workload and metric."""
    counts = verdict_counts(result)
    lines = [f"**collector compare**: A = `{names[0]}`, B = `{names[1]}`: "
             f"{counts['worse']} worse, {counts['better']} better, {counts['same']} same "
             "(95% intervals; a change inside the noise or below the threshold is *same*)",
             "", "| workload | metric | A | B | B/A | 95% CI | n A/B | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result.rows:
        verdict = f"**{row.word}**" if row.verdict != "same" else row.word
        lines.append(f"| {row.workload} | {row.metric} | {row.text(row.a)} | "
                     f"{row.text(row.b)} | {row.ratio:.3f}x | {row.interval_text} | "
                     f"{row.n_a}/{row.n_b} | {verdict} |")
    for side, missing in (("A", result.only_a), ("B", result.only_b)):
        if missing:
            lines.append("")
            lines.append(f"Only in {side}: " + ", ".join(missing))
    return "\n".join(lines) + "\n"


def pivot(table: Pivot) -> str:
    """One `--pivot` table."""
    title = f"**{table.metric}**" + (f" ({table.group})" if table.group else "")
    lines = [title + ": * = best of its column", "",
             "| | " + " | ".join(table.columns) + " |",
             "|---|" + "---|" * len(table.columns)]
    for row in table.rows:
        lines.append(f"| {row} | " + " | ".join(table.cell_text(row, c)
                                               for c in table.columns) + " |")
    return "\n".join(lines) + "\n"
