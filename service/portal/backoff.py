"""When to try again: exponential backoff with full jitter, bounded in attempts and time.

Pure: the random source is passed in, so the policy is deterministic under test.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` tries within ``budget`` seconds; waits grow from ``base``."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 8.0
    budget: float = 30.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): full jitter, at least Retry-After."""
        ceiling = min(self.cap, self.base * float(2 ** (attempt - 1)))
        jittered = rand() * ceiling
        return jittered if retry_after is None else max(retry_after, jittered)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
