"""The built-in handlers: ordinary handler modules, switched on from the configuration file.

========================  ==================================================================
``status_tracking``       the latest status of each outbound message; ``status_changed``
``mark_read``             mark inbound messages read, "typing…" when a reply will follow
``auto_reply``            rules, a default, business hours, a per-contact cooldown
``forward``               to HTTP endpoints (signed) and to WhatsApp numbers (agents)
========================  ==================================================================

Dispatch order: status tracking and mark-read first (they must run before your status
and reply handlers), then the conversation policy (``[policy]``, ``workers.policy``),
then your routers, then auto-reply and forwarding (so a handler
of yours may return ``STOP`` to keep them out of an event it has dealt with).
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.config import BUILTINS, Config, StatusTrackingConfig
from workers.loading import HandlerLoadError
from workers.router import Router

__all__ = ["routers", "store_ttls"]


def routers(config: Config, user: Sequence[Router] = ()) -> list[Router]:
    """Return every router in dispatch order: the enabled built-ins around ``user``'s."""
    from workers.builtins import auto_reply, forward, mark_read, status_tracking
    from workers.policy import router as policy_router
    from workers.policy.config import policy_config

    clash = sorted({r.name for r in user} & {*BUILTINS, policy_router.NAME})
    if clash:
        raise HandlerLoadError(
            f"router names {', '.join(clash)} belong to the built-ins: rename your router"
        )
    tracking = config.status_tracking
    if tracking is None and any(reg.transitions for router in user for reg in router):
        tracking = StatusTrackingConfig()  # a status_changed handler needs the tracker
    first: list[Router] = []
    last: list[Router] = []
    if tracking is not None:
        first.append(status_tracking.build(tracking))
    if config.mark_read is not None:
        first.append(mark_read.build(config.mark_read))
    if policy_config(config.raw) is not None:  # after mark-read, before every reply handler
        first.append(policy_router.build())
    if config.auto_reply is not None:
        last.append(auto_reply.build(config.auto_reply))
    if config.forward is not None:
        last.append(forward.build(config.forward))
    return [*first, *user, *last]


def store_ttls(config: Config) -> dict[str, int]:
    """Return the store expiry (seconds) of built-ins that configure theirs, by router name."""
    if config.status_tracking is None:
        return {}
    return {"status_tracking": config.status_tracking.retention}
