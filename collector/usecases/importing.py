"""`collector import`: another tool's history into the history of record.

Every source is read and every point checked before anything is written; then all the runs
go in one transaction (all or none), each run id built from what its source says, so
importing the same history again adds nothing. The detector then scans the series the
import touched, as after a scheduled run: a step in imported history is found, confirmed by
its evidence and attributed (a commit, a package version) like one in the collector's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from collector.adapters.imports import read_all
from collector.adapters.imports.common import UNKNOWN_HOST, ImportedPoint, build_runs
from collector.analysis.cost import Pricing, with_costs
from collector.domain.history import Regression, Store
from collector.domain.model import RunResult
from collector.usecases.scan import ScanSettings, scan


@dataclass(frozen=True)
class ImportReport:
    points: int
    runs: int  # the runs the points make
    added: int  # of them, the runs the store did not hold yet
    series: int
    by_origin: dict[str, int]  # points per tool
    first: datetime | None
    last: datetime | None
    changes: list[Regression] = field(default_factory=list)  # what the scan found anew


def read_sources(paths: Sequence[Path], *, format_name: str | None = None,
                 database_points: Callable[[], list[ImportedPoint]] | None = None,
                 host: str | None = None) -> list[RunResult]:
    """Every source's runs, checked (InputError naming the file and record otherwise).
    `host` is the host of points whose source does not name one."""
    points = read_all(paths, format_name)
    if database_points is not None:
        points.extend(database_points())
    if host is not None:
        points = [replace(p, host=host) if p.host == UNKNOWN_HOST else p for p in points]
    return build_runs(points)


def import_runs(store: Store, runs: Sequence[RunResult], *,
                scan_settings: ScanSettings | None = None, detect: bool = True,
                pricing: Pricing | None = None) -> ImportReport:
    """Write the runs in one transaction, then scan the series they belong to. With
    `pricing` (the config's cost section), each result gets its cost and carbon figures at
    today's rates, the only ones known for past runs (recorded with it, as for a run)."""
    runs = [with_costs(run, pricing) for run in runs]
    added = store.record_runs(runs) if runs else 0
    series = {r.series_id for run in runs for r in run.results}
    changes: list[Regression] = []
    if detect and added:
        report = scan(store, series_ids=series, settings=scan_settings)
        changes = report.new
    origins = Counter(run.suite for run in runs for _ in run.results)
    return ImportReport(
        points=sum(len(run.results) for run in runs), runs=len(runs), added=added,
        series=len(series), by_origin=dict(sorted(origins.items())),
        first=min((run.started_at for run in runs), default=None),
        last=max((run.finished_at for run in runs), default=None), changes=changes)
