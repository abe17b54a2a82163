"""Terminal output with rich: live progress while running, a summary table at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collector.model import BenchmarkResult, BenchmarkSpec, RunResult


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.2f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


class RichReporter:
    """Progress on stderr: a bar over benchmarks and a line for the one running.
    Off a terminal, one plain line per finished benchmark instead."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._overall: Any = None
        self._current: Any = None
        self._total = 0

    def start(self, total: int) -> None:
        self._total = total
        if not self.console.is_terminal:
            return
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=self.console, transient=True)
        self._progress.start()
        self._overall = self._progress.add_task("benchmarks", total=total)
        self._current = self._progress.add_task("", total=None)

    def benchmark_started(self, index: int, spec: BenchmarkSpec) -> None:  # noqa: ARG002 - Reporter protocol
        if self._progress is not None:
            self._progress.update(self._current, description=f"{spec.suite}/{spec.label}: "
                                                             "starting worker")

    def progress(self, spec: BenchmarkSpec, body: dict[str, Any]) -> None:
        if self._progress is None:
            return
        text = f"{spec.suite}/{spec.label}: {body.get('phase', '')}"
        if "iterations" in body:
            text += f" {body['iterations']} it"
            if body.get("rel_ci") is not None:
                text += f", CI ±{body['rel_ci'] * 100:.1f}%"
        self._progress.update(self._current, description=text)

    def benchmark_finished(self, index: int, result: BenchmarkResult) -> None:
        spec = result.spec
        if result.status == "ok":
            line = (f"[green]ok[/] {spec.suite}/{spec.label}: p50 "
                    f"{_ms(result.metrics.get('latency_p50_seconds'))} ms")
        else:
            assert result.failure is not None
            line = (f"[red]FAILED[/] {spec.suite}/{spec.label}: {result.failure.kind.value}: "
                    f"{escape(result.failure.message)}")
        if self._progress is not None:
            self._progress.console.print(line, highlight=False)
            self._progress.advance(self._overall)
        else:
            self.console.print(f"[{index + 1}/{self._total}] " + line, highlight=False,
                               soft_wrap=True)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _headline(result: BenchmarkResult) -> str:
    """The metric a result is read by: latency, or instructions in that mode."""
    if "instructions_per_iteration" in result.metrics:
        return "instructions_per_iteration"
    return "latency_p50_seconds"


def results_table(runs: list[RunResult],
                  detectable: dict[tuple[str, str], float] | None = None) -> Table:
    """The summary table. `detectable`: (series, metric) -> the smallest change the
    detector pages on within one cycle, shown for each result's headline metric."""
    effects = detectable or {}
    table = Table(title="Benchmark results", title_justify="left")
    for header, justify in (("suite", "left"), ("benchmark", "left"), ("task", "left"),
                            ("status", "left"), ("p50 ms", "right"), ("p90 ms", "right"),
                            ("p99 ms", "right"), ("CV %", "right"), ("samples/s", "right"),
                            ("TTFT ms", "right"), ("decode tok/s", "right"),
                            ("load s", "right"), ("peak RSS MiB", "right"), ("CI ±%", "right"),
                            ("reps", "right"), ("MDE %", "right")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]  # literal values
    for run in runs:
        for result in run.results:
            m = result.metrics
            spec = result.spec
            if result.status != "ok":
                assert result.failure is not None
                table.add_row(run.suite, spec.label, spec.task.value,
                              f"[red]{result.failure.kind.value}[/]",
                              *["-"] * 12)
                continue
            info = result.measurement
            ci = "-"
            if info is not None and info.achieved_rel_ci is not None:
                ci = f"{info.achieved_rel_ci * 100:.1f}" + ("" if info.converged else "*")
            cv = m.get("latency_cv_ratio")
            load = m.get("load_time_seconds")
            mde = effects.get((result.series_id, _headline(result)))
            p50 = _ms(m.get("latency_p50_seconds"))
            if "instructions_per_iteration" in m:
                p50 = f"{m['instructions_per_iteration'] / 1e6:,.3f} M instr"
            table.add_row(
                run.suite, spec.label,
                result.resolved_task.value if result.resolved_task else spec.task.value,
                "[green]ok[/]",
                p50, _ms(m.get("latency_p90_seconds")),
                _ms(m.get("latency_p99_seconds")), "-" if cv is None else f"{cv * 100:.1f}",
                _rate(m.get("throughput_samples_per_second")),
                _ms(m.get("time_to_first_token_p50_seconds")),
                _rate(m.get("decode_tokens_per_second")),
                "-" if load is None else f"{load:.2f}",
                _mib(m.get("peak_rss_bytes")), ci, str(max(len(result.repetitions), 1)),
                "-" if mde is None else f"{mde * 100:.1f}")
    table.caption = ("CI ±%: achieved 95% CI half-width of the median (with repetitions: "
                     "also their spread); * = target not reached. reps: fresh-process "
                     "repetitions. MDE %: smallest change of the p50 (or instructions) the "
                     "detector pages on within one cycle, learnt from this series' noise; "
                     "- until it has 20 runs")
    return table


def failures_text(runs: list[RunResult]) -> list[str]:
    lines = []
    for run in runs:
        for result in run.results:
            if result.failure is not None:
                f = result.failure
                lines.append(f"{run.suite}/{result.spec.label}: {f.kind.value}: {f.message}")
    return lines
