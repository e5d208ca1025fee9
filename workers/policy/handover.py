"""Human handover from the contact's side: the keyword or button, idle end, and the hook.

While a contact's conversation is handed over, dispatch skips every handler that
declared ``replies=`` (auto-reply included) for that contact; mark-read and
forwarding go on. It starts on a keyword or button payload from the contact
(``[policy.handover] keywords``/``payloads``), an agent answering through WhatsApp
(``workers.policy.agents``), an answer from the portal's own inbox (the reply gate,
``workers.policy.scope``), ``wabahooks handover PHONE --on`` or ``ctx.handover()``;
it ends after ``idle`` seconds without activity from the contact or an agent
(noticed at the contact's next message), on ``#done`` or ``--off``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from service.logs import mask_phone
from service.typedevents import InboundMessage
from workers.policy.config import fold

if TYPE_CHECKING:
    from workers.policy.scope import EventScope

__all__ = ["contact_message", "on_handover_started", "wants_handover"]

log = structlog.get_logger("wabahooks.policy")


async def on_handover_started(scope: EventScope, phone: str) -> None:
    """Called once each time ``phone``'s conversation is handed over to a human.

    What is automated must stop then: the contact's pending wait-for-reply step
    (``ctx.expect``) is cancelled, so neither it nor its timeout answers the contact while a
    person talks (idempotent: a retried job finds nothing left to cancel).
    """
    cancelled = await scope.policy.cancel_steps(phone)
    log.info(
        "policy.handover.started",
        contact=mask_phone(phone),
        job_id=scope.job_id,
        step_cancelled=None if cancelled is None else cancelled.get("step"),
    )


def wants_handover(scope: EventScope, event: InboundMessage) -> bool:
    """Whether the message asks for a human (a keyword as the whole text, or a payload)."""
    config = scope.config.handover
    if event.payload is not None and event.payload in config.payloads:
        return True
    return event.text is not None and fold(event.text) in config.keywords


async def contact_message(scope: EventScope, event: InboundMessage) -> None:
    """A customer's message: end a lapsed handover, start one if asked, else keep it alive."""
    record = scope.record
    assert record is not None
    now, idle = scope.now(), scope.config.handover.idle
    if record.handover_lapsed(now):
        await scope.set_handover(record.phone, False, by="idle")
    if wants_handover(scope, event):
        if record.handover_active(now):
            await scope.store.touch_handover(record, now, idle)
        else:
            await scope.set_handover(record.phone, True, by="keyword")
    elif record.handover_active(now):
        await scope.store.touch_handover(record, now, idle)
