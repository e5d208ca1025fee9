"""Values handlers and the dispatcher exchange: a handler's :class:`RetryPolicy` (how its
event is retried) and the :class:`StatusTransition` a ``status_changed`` handler receives.
Both are public (``from workers import RetryPolicy, StatusTransition``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.portal.backoff import full_jitter
from service.settings import (
    DEFAULT_HANDLER_ATTEMPTS,
    DEFAULT_HANDLER_BACKOFF,
    DEFAULT_HANDLER_BACKOFF_CAP,
)

__all__ = ["RetryPolicy", "StatusTransition"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing handler's event is retried: ``max_attempts`` in all, exponential
    backoff from ``base`` seconds up to ``cap``, with full jitter."""

    max_attempts: int = DEFAULT_HANDLER_ATTEMPTS
    base: float = DEFAULT_HANDLER_BACKOFF
    cap: float = DEFAULT_HANDLER_BACKOFF_CAP

    def delay(self, attempt: int, retry_after: float | None = None) -> int:
        """Whole seconds before attempt ``attempt + 1`` (RQ schedules in seconds; at least 1,
        since 0 would not wait): full jitter, at least ``retry_after``."""
        return max(1, math.ceil(full_jitter(attempt, self.base, self.cap, retry_after)))


@dataclass(frozen=True, slots=True)
class StatusTransition:
    """An outbound message's folded status changed: from ``previous`` (None: first seen)
    to ``current`` (``sent`` < ``delivered`` < ``read``; ``failed``, with ``errors``, is final)."""

    message_id: str
    previous: str | None
    current: str
    errors: tuple[Mapping[str, Any], ...] = ()
    recipient: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the transition as a JSON object (how the ledger keeps it)."""
        return {
            "message_id": self.message_id,
            "previous": self.previous,
            "current": self.current,
            "errors": [dict(e) for e in self.errors],
            "recipient": self.recipient,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> StatusTransition:
        """Return the transition :meth:`to_json` described."""
        return cls(
            str(obj["message_id"]),
            obj.get("previous"),
            str(obj["current"]),
            tuple(obj.get("errors") or ()),
            obj.get("recipient"),
        )
