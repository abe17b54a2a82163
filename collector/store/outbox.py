"""Forwarding the local outbox to PostgreSQL: in order, exactly once, retrying what is
temporary and stopping (data kept pending) on what is not."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from collector.errors import StoreError, TemporaryStoreError
from collector.history import Store
from collector.store.sqlite import SQLiteStore

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 5.0


def with_retry(action: Callable[[], T], policy: RetryPolicy,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Run action; on a TemporaryStoreError wait (exponential backoff) and try again."""
    for attempt in range(policy.attempts):
        try:
            return action()
        except TemporaryStoreError:
            if attempt == policy.attempts - 1:
                raise
            sleep(min(policy.max_delay_s, policy.base_delay_s * 2 ** attempt))
    raise AssertionError("unreachable: attempts >= 1")


@dataclass(frozen=True)
class SyncReport:
    delivered: int  # newly written to the remote store
    already_there: int  # the remote had them (a forward interrupted before marking)
    pending: int  # still waiting in the outbox
    error: str | None = None
    temporary: bool = True  # whether the error is worth retrying later

    @property
    def ok(self) -> bool:
        return self.error is None and self.pending == 0


def forward_pending(local: SQLiteStore, open_remote: Callable[[], Store], *,
                    policy: RetryPolicy = RetryPolicy(),
                    sleep: Callable[[float], None] = time.sleep,
                    after_remote_commit: Callable[[str], None] | None = None) -> SyncReport:
    """Replay pending runs oldest first. A run is marked delivered only after the remote
    transaction committed; if we die in between, the replay finds it there (idempotent by
    run id) and only marks it."""
    delivered = already = 0
    try:
        remote = with_retry(open_remote, policy, sleep)
        while batch := local.pending(limit=50):
            for run in batch:
                fresh = with_retry(functools.partial(remote.record_run, run), policy, sleep)
                if after_remote_commit is not None:
                    after_remote_commit(run.run_id)
                local.mark_delivered(run.run_id)
                delivered += fresh
                already += not fresh
    except StoreError as exc:
        blocked = local.pending(limit=1)
        if blocked:  # the error is kept with the run it holds up
            local.mark_attempt(blocked[0].run_id, str(exc))
        return SyncReport(delivered, already, local.pending_count(), str(exc),
                          isinstance(exc, TemporaryStoreError))
    return SyncReport(delivered, already, local.pending_count())
