"""Fault injection with real work: SyntheticSource.extra_compute (worker side).

Every forward call of the model also runs float32 matrix multiplications, (rows x 64) @
(64 x 64) into preallocated buffers, sized so that a whole step (a forward pass, or a
generate() call with its many forward calls) does `fraction` more work than it did alone.

Sizing is calibrated in the worker, after the first call, in the unit the benchmark
measures, because no fixed formula turns "3% of this model's work" into matmul sizes across
models, dtypes, kernels and Python overhead:
  - instructions mode counts instructions exactly (callgrind client requests): the step
    alone, the step with the hook installed but idle (a Python hook on every forward call
    is work too, taken out of the budget), and one matmul call at two row counts, which
    gives its fixed cost (dispatch, ~100k instructions) and its cost per row (~1k); then
    the planned step is counted and the row count corrected by the error (up to twice), so
    +3% reads as +3% to within a few hundredths of a percent. The worker calibrates after
    its warm-up, in the steady state the measured region sees;
  - wall mode times the same things (medians), without the idle hook, whose microseconds
    are below the noise of timing; then, since the matmuls and the model evict each other's
    data from the caches, it times the step with and without a probe plan (+30%, a signal
    well above the noise) in place, alternating 50 pairs of single steps, and scales the
    matmuls' modelled cost by what they really cost there (2-3x their cost alone). On a
    noisy 2-core VM +3% then reads +3.5..5% of wall time, +10% reads +10..14%, +30% reads
    +26..32% (timing itself is that noisy there).
The per-step budget goes to as many forward calls as can each take a matmul at least twice
its fixed cost (so at least half of the extra work is arithmetic, not dispatch), evenly spread
over the calls of a step; larger budgets are split into 256-row matmuls so memory stays
bounded. The plan is per step, so its hook counts calls from the start of each step: the
returned step resets it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


WIDTH = 64
CHUNK_ROWS = 256
_MIN_OVERHEAD_MULTIPLE = 2
_CORRECTIONS = 2
_WALL_PAIRS = 50
_WALL_PROBE_FRACTION = 0.3
_SEED = 4321

# cost(fn, repeats) -> cost of one call of fn (instructions, or seconds), over `repeats` calls.
Cost = Callable[[Callable[[], Any], int], float]


@dataclass(frozen=True)
class Plan:
    """Rows of extra matmul for each forward call of a step (index = call number)."""

    rows_per_call: tuple[int, ...]
    step_cost: float   # the step alone, in the cost's unit
    budget: float      # fraction x step_cost

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_call)


def spread(total: int, slots: int) -> list[int]:
    """`total` split into `slots` integers that differ by at most one."""
    return [(i + 1) * total // slots - i * total // slots for i in range(slots)]


def rows_per_call(total_rows: int, calls: int, used_calls: int) -> tuple[int, ...]:
    """`total_rows` over `used_calls` of `calls` forward calls, evenly spaced."""
    used_calls = max(1, min(used_calls, calls))
    shares = iter(spread(total_rows, used_calls))
    return tuple(next(shares) if (i + 1) * used_calls // calls > i * used_calls // calls
                 else 0 for i in range(calls))


def chunk_count(rows: tuple[int, ...]) -> int:
    return sum(-(-r // CHUNK_ROWS) for r in rows)


def solve_rows(budget: float, fixed: float, per_row: float, calls: int) -> tuple[int, ...]:
    """The rows per call whose modelled cost (fixed per matmul call + per row) is closest
    to `budget`. The cost only grows with the rows, so a bisection finds it; its steps are
    one row, or one more matmul call (`fixed`) where a call's rows cross a chunk."""
    if budget <= 0 or per_row <= 0:
        return (0,) * calls
    used = int(max(1, min(calls, budget // max(_MIN_OVERHEAD_MULTIPLE * fixed, 1e-30))))

    def cost(total: int) -> float:
        return fixed * chunk_count(rows_per_call(total, calls, used)) + per_row * total

    low, high = 0, int(budget // per_row) + 1  # cost(0) = 0 <= budget < cost(high)
    while low < high:
        middle = (low + high + 1) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    best = min((low, low + 1), key=lambda total: abs(cost(total) - budget))
    return rows_per_call(best, calls, used)


def _slowdown(plain: Callable[[], Any], slower: Callable[[], Any], pairs: int) -> float:
    """How much slower `slower` is than `plain`: medians of single calls, alternated so
    the machine's drift hits both alike."""
    a: list[int] = []
    b: list[int] = []
    for _ in range(pairs):
        for fn, times in ((plain, a), (slower, b)):
            start = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - start)
    return statistics.median(b) / max(statistics.median(a), 1) - 1


class ExtraCompute:
    """The forward hook and its work. `install()` calibrates and returns the new step."""

    def __init__(self) -> None:
        # torch is imported here, not at module level: the sizing arithmetic above is
        # pure and is tested in processes that must never import torch.
        import torch

        self._mm = torch.mm
        self._inference_mode = torch.inference_mode
        gen = torch.Generator().manual_seed(_SEED)
        self._x = torch.randn(CHUNK_ROWS, WIDTH, generator=gen)
        self._w = torch.randn(WIDTH, WIDTH, generator=gen) / WIDTH**0.5
        self._y = torch.empty(CHUNK_ROWS, WIDTH)
        self._work: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self._call = 0
        self.plan: Plan | None = None

    def _chunks(self, rows: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        full, rest = divmod(rows, CHUNK_ROWS)
        sizes = [CHUNK_ROWS] * full + ([rest] if rest else [])
        return [(self._x[:n], self._y[:n]) for n in sizes]

    def _set(self, rows: tuple[int, ...]) -> None:
        self._work = [self._chunks(r) for r in rows]

    def hook(self, _module: Any, _args: Any, _output: Any) -> None:
        i = self._call
        self._call += 1
        if i < len(self._work):
            for x, y in self._work[i]:
                self._mm(x, self._w, out=y)

    def _matmul(self, rows: int) -> Callable[[], None]:
        x, y = self._x[:rows], self._y[:rows]

        def run() -> None:
            with self._inference_mode():
                self._mm(x, self._w, out=y)

        return run

    def install(self, model: Any, step: Callable[[], Any], fraction: float, cost: Cost, *,
                exact: bool) -> Callable[[], Any]:
        """Calibrate against `step` with `cost`, hook `model`, return the step to measure.

        `exact`: the cost is deterministic (instruction counts in a warmed-up worker), so the
        idle hook and the planned step are counted as well and the plan corrected by the
        error. Otherwise (timing) the modelled cost (fixed + per row, timed alone) is scaled
        by the slowdown a probe plan causes in place."""

        def planned_step() -> Any:
            self._call = 0
            return step()

        step_cost = cost(step, 2)
        handle = model.register_forward_hook(self.hook)
        try:
            planned_step()  # with an empty plan: counts the forward calls of one step
            calls = max(self._call, 1)
            hook_cost = max(cost(planned_step, 2) - step_cost, 0.0) if exact else 0.0
            small = CHUNK_ROWS // 4
            at_small = cost(self._matmul(small), 5)
            at_chunk = cost(self._matmul(CHUNK_ROWS), 5)
            per_row = max((at_chunk - at_small) / (CHUNK_ROWS - small),
                          at_chunk / CHUNK_ROWS / 100)
            fixed = max(at_chunk - per_row * CHUNK_ROWS, 0.0)
            budget = fraction * step_cost
            rows = solve_rows(budget - hook_cost, fixed, per_row, calls)
            self._set(rows)
            used = sum(1 for r in rows if r > 0) or 1
            if exact:
                for _ in range(_CORRECTIONS):
                    error = cost(planned_step, 2) - step_cost - budget
                    if abs(error) < per_row:
                        break
                    rows = rows_per_call(max(0, sum(rows) - round(error / per_row)), calls,
                                         used)
                    self._set(rows)
            elif sum(rows) > 0:
                # In place, the matmuls and the model evict each other's data from the
                # caches: timed alone the matmuls looked 2-3x cheaper than they are in the
                # step. So their modelled cost is scaled by the slowdown they cause in place,
                # measured at a probe size big enough (+30%) for timing noise not to decide.
                probe = solve_rows(max(fraction, _WALL_PROBE_FRACTION) * step_cost, fixed,
                                   per_row, calls)
                self._set(probe)
                modelled = fixed * chunk_count(probe) + per_row * sum(probe)
                in_place = _slowdown(step, planned_step, _WALL_PAIRS) * step_cost
                factor = min(max(in_place / modelled, 0.25), 4.0)
                rows = solve_rows(budget / factor, fixed, per_row, calls)
                self._set(rows)
        except BaseException:
            handle.remove()
            raise
        self.plan = Plan(rows_per_call=rows, step_cost=step_cost, budget=budget)
        return planned_step
