"""What run-once prints after its table: each result's headline metric against its series'
previous runs in the history of record, and the smallest change the detector pages on."""

from __future__ import annotations

from collector.adapters.store import Stores
from collector.analysis.compare import Row, against_history
from collector.domain.catalogue import headline
from collector.domain.errors import StoreError
from collector.domain.model import RunResult

# How many of a series' previous runs a run-once result is read against: as many as the
# detector's reference window, so that its noise is judged as the detector judges it.
PREVIOUS_RUNS = 40


def against_previous(runs: list[RunResult], stores: Stores) -> list[Row]:
    """Each successful result's headline metric against its series' previous runs in the
    history of record (nothing when it cannot be read now: the table stands alone)."""
    rows = []
    try:
        store = stores.primary()
        # The detector's learnt run-to-run noise of each series, where it has learnt it.
        noise = {(s.series_id, s.metric): s.noise for s in store.detection_states()}
        for run in runs:
            for result in run.results:
                if result.status != "ok":
                    continue
                metric = headline(result.metrics)
                history = store.series_history(result.series_id, PREVIOUS_RUNS + 1)
                by_run = history.values.get(metric, {})
                previous = [by_run[p.run_id] for p in history.runs
                            if p.run_id != run.run_id and p.run_id in by_run][-PREVIOUS_RUNS:]
                row = against_history(result, metric, previous,
                                      noise=noise.get((result.series_id, metric)))
                if row is not None:
                    rows.append(row)
    except StoreError:
        return rows
    return rows


def detectable_effects(stores: Stores) -> dict[tuple[str, str], float]:
    """(series, metric) -> the smallest change the detector pages on within one cycle, for
    the table; empty when the history of record cannot be read now."""
    try:
        states = stores.primary().detection_states()
    except StoreError:
        return {}
    return {(s.series_id, s.metric): (s.confirm_min_detectable_effect
                                      or s.min_detectable_effect) for s in states}
