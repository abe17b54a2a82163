"""Live progress on stderr: run-once's bar over benchmarks and its line for the one running
(off a terminal, one plain line per finished benchmark), and an A/B's environments and
rounds."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from collector.analysis.compare import value_text
from collector.domain.catalogue import headline
from collector.domain.model import BenchmarkResult, BenchmarkSpec
from collector.domain.series import workload_label
from collector.present.table import headline_text


class RichReporter:
    """Progress on stderr: a bar over benchmarks and a line for the one running.
    Off a terminal, one plain line per finished benchmark instead."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._overall: Any = None
        self._current: Any = None
        self._total = 0
        self._repetition = (1, 1)

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

    def benchmark_started(self, index: int, spec: BenchmarkSpec,  # noqa: ARG002 - Reporter protocol
                          repetition: tuple[int, int] = (1, 1)) -> None:
        self._repetition = repetition
        if self._progress is not None:
            self._progress.update(self._current, description=f"{spec.suite}/{spec.label}"
                                  f"{_rep(repetition)}: starting worker")

    def progress(self, spec: BenchmarkSpec, body: dict[str, Any]) -> None:
        if self._progress is None:
            return
        text = f"{spec.suite}/{spec.label}{_rep(self._repetition)}: {body.get('phase', '')}"
        if "iterations" in body:
            text += f" {body['iterations']} it"
            if body.get("rel_ci") is not None:
                text += f", CI ±{body['rel_ci'] * 100:.1f}%"
        self._progress.update(self._current, description=text)

    def benchmark_finished(self, index: int, result: BenchmarkResult,
                           repetition: tuple[int, int] = (1, 1)) -> None:
        spec = result.spec
        what = escape(f"{spec.suite}/{workload_label(result)}{_rep(repetition)}")
        if result.status == "ok":
            line = f"[green]ok[/] {what}: {headline_text(result)}"
        else:
            assert result.failure is not None
            line = (f"[red]FAILED[/] {what}: {result.failure.kind.value}: "
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




def _rep(repetition: tuple[int, int]) -> str:
    """` rep 2/3` where a benchmark runs in several fresh processes; nothing for one."""
    done, total = repetition
    return f" rep {done}/{total}" if total > 1 else ""


class Built(Protocol):
    """What the progress line says of a built (or found) package environment."""

    @property
    def pins(self) -> Sequence[object]: ...
    @property
    def cache_hit(self) -> bool: ...
    @property
    def build_s(self) -> float: ...


class AbProgress:
    """Each environment as it is built and each round as it ends, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last = time.monotonic()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def built(self, side: str, env: Built) -> None:
        what = " ".join(str(p) for p in env.pins) or "this interpreter"
        how = "found in the cache" if env.cache_hit else "built"
        self.say(f"  environment {side.upper()} ({what}): {how} in {env.build_s:.1f} s")
        self.last = time.monotonic()

    def round(self, number: int, a: BenchmarkResult, b: BenchmarkResult) -> None:
        values = []
        for name, result in (("A", a), ("B", b)):
            if result.status != "ok":
                values.append(f"{name} failed")
                continue
            metric = headline(result.metrics)
            values.append(f"{name} {value_text(metric, result.metrics[metric])}")
        now = time.monotonic()
        self.say(f"  round {number}: {', '.join(values)} [{now - self.last:.1f} s]")
        self.last = now
