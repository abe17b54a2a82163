"""Forwarding the local outbox to PostgreSQL: in order, exactly once, retrying what is
temporary and stopping (data kept pending) on what is not.

A run the database refuses for its own data (RejectedDataError: a value out of a column's
range, a broken constraint) or whose stored document no longer validates is quarantined:
kept in the outbox with the reason, shown by `collector db status` and the
`collector_outbox_quarantined_runs` gauge, and the runs behind it are forwarded. Quarantined
runs go back in line with `collector db retry-quarantined`, and by themselves on the first
sync of another collector version (the fix for what refused them usually ships in one).
An error that is not about one run (server away, permission, schema) stops the sync with
every run still pending: a temporary one is retried at the next sync.

Every error text kept or handed on (a run's last_error, a quarantine reason, the report's
error, a log line) is scrubbed of secrets by value first (collector.adapters.redact.scrub):
it outlives the process, and `db status` shows it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from collector.adapters.redact import scrub
from collector.adapters.store.retry import RetryPolicy, with_retry
from collector.adapters.store.sqlite import SQLiteStore
from collector.domain.errors import RejectedDataError, StoreError, TemporaryStoreError
from collector.domain.history import Store
from collector.domain.model import RunResult
from collector.version import __version__

__all__ = ["RetryPolicy", "SyncReport", "forward_pending", "with_retry"]

log = logging.getLogger("collector.store.outbox")
_DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class SyncReport:
    delivered: int  # newly written to the remote store
    already_there: int  # the remote had them (a forward interrupted before marking)
    pending: int  # still waiting in the outbox (quarantined runs not counted)
    error: str | None = None
    temporary: bool = True  # whether the error is worth retrying later
    quarantined: int = 0  # runs set aside in the outbox, this sync's and earlier ones
    newly_quarantined: int = 0  # set aside by this sync
    released: int = 0  # quarantined by another collector version, back in line
    pruned: int = 0  # delivered documents dropped by retention

    @property
    def ok(self) -> bool:
        """Every deliverable run is delivered (quarantined runs aside: they are kept and
        counted, but do not hold the rest back)."""
        return self.error is None and self.pending == 0


def _validation_reason(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "(document)"
        more = len(errors()) - 1
        return (f"the stored document no longer validates: {where}: {first.get('msg')}"
                + (f" (and {more} more)" if more > 0 else ""))
    return f"the stored document is not valid JSON: {exc}"


def forward_pending(local: SQLiteStore, open_remote: Callable[[], Store], *,
                    policy: RetryPolicy = _DEFAULT_RETRY,
                    sleep: Callable[[float], None] = time.sleep,
                    after_remote_commit: Callable[[str], None] | None = None,
                    retain_delivered: timedelta | None = None) -> SyncReport:
    """Replay pending runs oldest first. A run is marked delivered only after the remote
    transaction committed; if we die in between, the replay finds it there (idempotent by
    run id) and only marks it. A run refused for its own data is quarantined and the rest
    go on. With `retain_delivered`, documents delivered longer ago than that are pruned."""
    delivered = already = quarantined = released = 0
    error: StoreError | None = None
    try:
        released = local.release_quarantined(not_by=__version__)
        if released:
            log.info("outbox: %d quarantined run(s) set aside by another collector version "
                     "are tried again", released)
        remote = with_retry(open_remote, policy, sleep)
        handled: set[str] = set()
        while batch := [(r, d) for r, d in local.pending_documents(limit=50)
                        if r not in handled]:
            for run_id, document in batch:
                handled.add(run_id)
                try:
                    run = RunResult.model_validate_json(document)
                    fresh = with_retry(functools.partial(remote.record_run, run), policy,
                                       sleep)
                except (ValueError, RejectedDataError) as exc:
                    reason = scrub(_validation_reason(exc) if isinstance(exc, ValueError)
                                   else str(exc))
                    log.warning("outbox: run %s quarantined: %s", run_id, reason)
                    local.quarantine(run_id, reason)
                    quarantined += 1
                    continue
                if after_remote_commit is not None:
                    after_remote_commit(run_id)
                local.mark_delivered(run_id)
                delivered += fresh
                already += not fresh
    except StoreError as exc:
        error = exc
        with contextlib.suppress(StoreError):  # the local store may be what failed
            blocked = local.pending_documents(limit=1)
            if blocked:  # the error is kept with the run it holds up
                local.mark_attempt(blocked[0][0], scrub(str(exc)))
    pruned = 0
    if retain_delivered is not None:
        try:
            pruned = local.prune_delivered(datetime.now(timezone.utc) - retain_delivered)
        except StoreError as exc:  # retention can wait for the next sync
            log.warning("outbox: delivered documents not pruned: %s", scrub(str(exc)))
    counts: dict[str, int] = {"pending": -1, "quarantined": -1}
    with contextlib.suppress(StoreError):
        counts = {"pending": local.pending_count(), "quarantined": local.quarantined_count()}
    return SyncReport(delivered, already, counts["pending"],
                      None if error is None else scrub(str(error)),
                      error is None or isinstance(error, TemporaryStoreError),
                      quarantined=counts["quarantined"], newly_quarantined=quarantined,
                      released=released, pruned=pruned)
