"""`collector bisect`: the first released version of a package (or of several) that makes a
benchmark worse, each step an A/B against the good end (collector/usecases/ab.py), the
search itself collector/analysis/bisect.py's, the versions from the package index pip uses
(collector/adapters/package_index.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from collector.adapters.envs import EnvironmentCache
from collector.adapters.package_index import available_versions
from collector.analysis.ab import ab_summary
from collector.analysis.bisect import MultiBisect, PackageRange, Step, bisect_packages
from collector.domain.model import BenchmarkSpec
from collector.domain.packages import parse_pins
from collector.usecases.ab import OnBuild, OnRound, WorkerPools, rejudged, run_ab


def versions_between(ranges: Sequence[PackageRange], *,
                     pip_args: Sequence[str] = ()) -> dict[str, list[str]]:
    """Each package's released versions from its good to its bad end."""
    return {pack.name: available_versions(pack.name, pack.good, pack.bad, pip_args=pip_args)
            for pack in ranges}


def bisect_benchmark(spec: BenchmarkSpec, ranges: Sequence[PackageRange],
                     versions: dict[str, list[str]], *, rounds: int, cache: EnvironmentCache,
                     host: str | None = None, start_method: str = "forkserver",
                     budget_s: float | None = None, metric: str | None = None,
                     threshold: float | None = None, stop: threading.Event | None = None,
                     on_test: Callable[[str], None] | None = None,
                     on_step: Callable[[Step], None] | None = None,
                     on_round: OnRound | None = None,
                     on_build: OnBuild | None = None) -> MultiBisect:
    """Bisect `ranges` (good to bad, over `versions`) with A/B runs of `spec` against the
    good ends; the good side's workers start once for every step."""
    good = parse_pins([p.pin(p.good) for p in ranges])
    pools = WorkerPools(start_method)

    def test(pins_b: tuple[str, ...], label: str) -> Step:
        started = time.monotonic()
        if on_test is not None:
            on_test(label)
        result = rejudged(run_ab(spec, good, parse_pins(list(pins_b)), rounds=rounds,
                                 cache=cache, host=host, budget_s=budget_s, pools=pools,
                                 stop=stop, on_round=on_round, on_build=on_build),
                          metric, threshold)
        elapsed = time.monotonic() - started
        if result.failure is not None:
            return Step(label, "failed", elapsed_s=elapsed, message=result.failure.message)
        summary = ab_summary(result, metric)
        if summary is None:
            return Step(label, "failed", elapsed_s=elapsed, message="no comparison")
        return Step(label, summary.verdict, summary, elapsed)

    with pools:
        return bisect_packages(ranges, lambda p: versions[p.name], test, on_step=on_step)
