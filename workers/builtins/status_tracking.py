"""Status tracking: the latest status of each outbound message, folded monotonically.

The portal may deliver a message's statuses twice or out of order. The fold keeps
the highest seen: ``sent`` < ``delivered`` < ``read``, and ``failed`` is final
(recorded with the portal's errors, and logged at warning level). A late
``delivered`` after ``read`` changes nothing. The record lives in the status
conversation's store (the conversation of a status is its message id), under
``"status"``: ``{"status", "previous", "errors", "at"}``, kept ``retention`` seconds
after its last change.

When the fold changes, the handler returns a :class:`~workers.StatusTransition`;
handlers registered with ``router.status_changed(...)`` get it (dispatch hands it
on). It runs before every user status handler.

::

    [handlers.status_tracking]
    retention = 2592000   # seconds (30 days)
"""

from __future__ import annotations

import time
from typing import Any

from service.logs import mask_phone
from workers import AsyncContext, Router, StatusTransition, StatusUpdate
from workers.sections import StatusTrackingConfig

__all__ = ["NAME", "RANK", "STORE_KEY", "advances", "build"]

NAME = "status_tracking"
STORE_KEY = "status"
#: The fold's order; ``failed`` outranks everything and nothing outranks it.
RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


def advances(previous: str | None, status: str) -> bool:
    """Return whether ``status`` changes a message whose folded status is ``previous``."""
    if status not in RANK or previous == "failed":
        return False
    return RANK[status] > RANK.get(previous or "", 0)


def build(config: StatusTrackingConfig) -> Router:
    """Return the status-tracking router (``config.retention`` is applied by the runtime
    as its store's expiry)."""
    router = Router(NAME)

    @router.status()
    async def track(event: StatusUpdate, ctx: AsyncContext) -> StatusTransition | None:
        async def fold() -> dict[str, Any]:
            record = await ctx.store.get(STORE_KEY) or {}
            previous = record.get("status") if isinstance(record, dict) else None
            previous = previous if isinstance(previous, str) else None
            if not advances(previous, event.status):
                return {}
            return StatusTransition(
                event.message_id, previous, event.status, event.errors, event.recipient
            ).to_json()

        # Folded once per event: a retry gets the same answer, not "no change".
        result = await ctx.portal.once("fold", fold)
        if not result:
            ctx.log.debug("status.unchanged", status=event.status)
            return None
        transition = StatusTransition.from_json(result)
        await ctx.store.set(
            STORE_KEY,
            {
                "status": transition.current,
                "previous": transition.previous,
                "errors": [dict(e) for e in transition.errors],
                "at": time.time(),
            },
        )
        if transition.current == "failed":
            ctx.log.warning(
                "status.failed",
                message_id=transition.message_id,
                recipient=mask_phone(transition.recipient),
                errors=[dict(e) for e in transition.errors],
            )
        else:
            ctx.log.info("status.changed", previous=transition.previous, status=transition.current)
        return transition

    return router
