"""The automatic A/B of a confirmed regression whose attribution names package versions
(config detection.ab): the old and the new versions measured side by side in the same
cycle, the result kept on the regression record."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.adapters.config import AbSettings, Config
from collector.adapters.store import Stores
from collector.detect.attribution import package_changes
from collector.domain.catalogue import SIZE
from collector.domain.errors import CollectorError, StoreError
from collector.domain.history import Regression
from collector.domain.model import BenchmarkSpec
from collector.usecases.bench import _now
from collector.usecases.outcome import Outcome

if TYPE_CHECKING:
    from collector.domain.packages import Pin


log = logging.getLogger("collector.runs")


# -- the automatic A/B -----------------------------------------------------------------------

# Runs an A/B of `spec` between the old pins and the new ones and returns, per metric asked
# for, the summary to keep on the regression record (ab_summary(...).as_dict(), with the
# rounds it completed), or raises CollectorError when it could not run.
AbRunner = Callable[[BenchmarkSpec, "Sequence[Pin]", "Sequence[Pin]", Sequence[str]],
                    dict[str, dict[str, Any]]]


def package_ab(settings: AbSettings, *, host: str | None, start_method: str,
               stop: threading.Event | None) -> AbRunner:
    """The A/B runner of the config: collector.usecases.ab.run_ab in cached environments (built
    with the config's pip arguments), bounded by its rounds and budget."""

    def run(spec: BenchmarkSpec, before: Sequence[Pin], after: Sequence[Pin],
            metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
        from collector.adapters.envs import EnvironmentCache
        from collector.analysis.ab import ab_summary
        from collector.usecases.ab import run_ab

        cache = EnvironmentCache(Path(settings.env_cache).expanduser() if settings.env_cache
                                 else None, pip_args=settings.pip_args)
        result = run_ab(spec, before, after, rounds=settings.rounds, cache=cache, host=host,
                        start_method=start_method, stop=stop, budget_s=settings.budget_s)
        if result.failure is not None:
            raise CollectorError(result.failure.message)
        done = {"rounds": result.rounds, "build_s": round(result.build_s, 3)}
        headline = ab_summary(result)
        found: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            summary = ab_summary(result, metric=metric)
            if summary is not None:
                found[metric] = {**summary.as_dict(), **done}
            elif headline is not None:  # no comparison of this one: the headline's, named
                found[metric] = {**headline.as_dict(), **done, "text": headline.text.replace(
                    "A/B:", f"A/B of {headline.metric}:", 1)}
        return found

    return run


def ab_candidates(records: Sequence[Regression]) -> list[list[Regression]]:
    """Confirmed regressions without an A/B whose attribution names package versions,
    grouped by series and pins (one A/B measures every metric of the change: latency and
    throughput of one slowdown share it, even where the detector placed their starts a run
    apart), the largest change first."""
    groups: dict[tuple[Any, ...], dict[str, Regression]] = {}
    for record in records:
        if record.kind != "regression" or record.status != "open" or record.ab is not None:
            continue
        before, after = package_changes(record.environment_diff)
        if not after:
            continue
        key = (record.series_id, tuple(before), tuple(after))
        groups.setdefault(key, {})[record.regression_id] = record  # the latest version wins
    return sorted((list(g.values()) for g in groups.values()),
                  key=lambda g: -max(abs(r.relative_change) for r in g))


def _model_size_mib(outcome: Outcome, series_id: str) -> float | None:
    """The model's size in MiB from this cycle's latest result of the series."""
    for run in reversed([*outcome.runs, *outcome.confirmation_runs]):
        for result in run.results:
            size = result.metrics.get(SIZE.name) if result.series_id == series_id else None
            if size is not None:
                return size / 2**20
    return None


def auto_ab(config: Config, stores: Stores, outcome: Outcome, runner: AbRunner) -> Outcome:
    """The automatic A/B (config detection.ab) of this cycle's confirmed regressions whose
    attribution names package versions: at most `max_per_cycle` of them, none for a model
    above `max_model_size_mib`. Each record gets `ab`: the summary with the pins, rounds,
    time and elapsed seconds, or {"failure": why}; saved in the history of record. A
    failure is recorded, never raised."""
    settings = config.detection.ab
    if not settings.enabled or settings.max_per_cycle == 0:
        return outcome
    found = outcome.detection.new + outcome.detection.changed if outcome.detection else []
    specs = {r.series_id: r.spec for run in outcome.runs for r in run.results}
    done: list[Regression] = []
    budget = settings.max_per_cycle
    for group in ab_candidates([*found, *outcome.confirmed]):
        spec = specs.get(group[0].series_id)
        if budget == 0 or spec is None:
            continue
        size = _model_size_mib(outcome, group[0].series_id)
        if settings.max_model_size_mib is not None and size is not None and (
                size > settings.max_model_size_mib):
            log.info("no automatic A/B for %s: the model is %.0f MiB, above "
                     "detection.ab.max_model_size_mib %g", spec.label, size,
                     settings.max_model_size_mib)
            continue
        budget -= 1
        saved = _ab_one(stores, runner, spec, group, settings)
        if saved is None:
            return dataclasses.replace(outcome, ab=done)
        done += saved
    if not done:
        return outcome
    by_id = {r.regression_id: r for r in done}
    return dataclasses.replace(
        outcome, ab=done, confirmed=[by_id.get(r.regression_id, r) for r in outcome.confirmed])


def _ab_one(stores: Stores, runner: AbRunner, spec: BenchmarkSpec, group: list[Regression],
            settings: AbSettings) -> list[Regression] | None:
    """A/B one change and save its records; None when the store refused them."""
    before, after = package_changes(group[0].environment_diff)
    context: dict[str, Any] = {"a": [str(p) for p in before], "b": [str(p) for p in after],
                               "rounds": settings.rounds,
                               "when": _now().isoformat(timespec="seconds")}
    started = time.monotonic()
    log.info("automatic A/B of %s: %s against %s, %d rounds", spec.label,
             " ".join(context["b"]), " ".join(context["a"]), settings.rounds)
    try:
        summaries = runner(spec, before, after, [r.metric for r in group])
        failure = None
    except CollectorError as exc:
        summaries, failure = {}, str(exc) or type(exc).__name__
    except Exception as exc:  # an A/B's fault is its record's failure, not the cycle's
        log.exception("automatic A/B of %s failed", spec.label)
        summaries, failure = {}, f"{type(exc).__name__}: {exc}"
    context["elapsed_s"] = round(time.monotonic() - started, 3)
    saved = []
    for record in group:
        summary = summaries.get(record.metric)
        ab = ({**context, **_finite(summary)} if summary is not None else
              {"failure": failure or f"the A/B measured no {record.metric}", **context})
        updated = dataclasses.replace(record, ab=ab)
        try:
            stores.primary().save_regression(updated)
        except StoreError as exc:
            log.error("the automatic A/B of %s is not stored: %s", spec.label, exc)
            return None
        log.info("A/B %s %s: %s", record.regression_id, record.metric,
                 ab.get("text") or f"failed: {ab['failure']}")
        saved.append(updated)
    return saved


def _finite(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with non-finite numbers as None: both stores keep it as JSON."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in summary.items()}

