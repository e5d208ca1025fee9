"""When to try again: exponential backoff with full jitter, bounded in attempts and time.

Pure: the random source is passed in, so the policy is deterministic under test.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from service.portal.config import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BUDGET

__all__ = ["RetryPolicy", "full_jitter", "parse_retry_after"]


def full_jitter(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): a uniform draw below
    ``min(cap, base * 2 ** (attempt - 1))`` ("full jitter"), and at least ``retry_after``.

    The one backoff of the project: portal calls and handler retries both wait by it.
    """
    jittered = rand() * min(cap, base * float(2 ** (attempt - 1)))
    return jittered if retry_after is None else max(retry_after, jittered)


@dataclass(frozen=True)
class RetryPolicy:
    """A portal call's retries: at most ``max_attempts`` tries within ``budget`` seconds;
    waits grow from ``base`` (the defaults of attempts and budget: ``service/portal/config.py``)."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base: float = 0.5
    cap: float = 8.0
    budget: float = DEFAULT_RETRY_BUDGET

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): full jitter, at least Retry-After."""
        return full_jitter(attempt, self.base, self.cap, retry_after, rand)


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
