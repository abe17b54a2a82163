"""Bounded retries with exponential backoff, for store errors that are temporary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from collector.domain.errors import TemporaryStoreError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 5.0


def with_retry(action: Callable[[], T], policy: RetryPolicy,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Run action; on a TemporaryStoreError wait (exponential backoff) and try again, at
    most `policy.attempts` times in all; the last error is raised."""
    for attempt in range(policy.attempts):
        try:
            return action()
        except TemporaryStoreError:
            if attempt == policy.attempts - 1:
                raise
            sleep(min(policy.max_delay_s, policy.base_delay_s * 2 ** attempt))
    raise AssertionError("unreachable: attempts >= 1")
