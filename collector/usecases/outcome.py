"""What one cycle did: its runs, what was stored and forwarded, what detection found and
what confirmation runs and the automatic A/B added."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collector.adapters.store import SyncReport
from collector.domain.history import Regression
from collector.domain.model import RunResult
from collector.usecases.scan import ScanReport


@dataclass(frozen=True)
class Outcome:
    runs: list[RunResult]
    store_error: str | None = None  # the local store could not keep the runs
    sync: SyncReport | None = None  # forwarding to PostgreSQL, when one is configured
    detection: ScanReport | None = None  # regression detection over the runs' series
    detection_error: str | None = None  # why detection did not run (it runs next time)
    # Confirmation runs for suspicions of this cycle, and the records they judged.
    confirmation_runs: list[RunResult] = dataclasses.field(default_factory=list)
    confirmed: list[Regression] = dataclasses.field(default_factory=list)
    # Runs of a collector that died mid-run, stored as aborted before this one started.
    recovered: list[RunResult] = dataclasses.field(default_factory=list)
    # Regressions the automatic A/B ran for this cycle, as saved with their `ab`.
    ab: list[Regression] = dataclasses.field(default_factory=list)

