"""Opt-out: STOP / UNSUBSCRIBE / START (and the configured words) as whole messages.

A stop word puts the contact on the opt-out list (kept without expiry, so it outlives
the conversation store; ``wabahooks forget`` keeps its keyed hash) and sends one
confirmation; a start word takes them off and confirms. The confirmation is sent
through the ledger (exactly once, however often the job runs) and is transactional
(a confirmation is what the contact asked for). Words are compared case-folded with
spaces collapsed, against the whole message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from service.logs import mask_phone
from service.typedevents import InboundMessage
from workers.policy.config import fold

if TYPE_CHECKING:
    from workers.policy.scope import EventScope

__all__ = ["optout_word"]

log = structlog.get_logger("wabahooks.policy")


def optout_word(scope: EventScope, event: InboundMessage) -> str | None:
    """``"stop"`` or ``"start"`` when the whole message is one of the words, else None."""
    config = scope.config.optout
    if not config.enabled or event.text is None:
        return None
    text = fold(event.text)
    if text in config.stop_words:
        return "stop"
    if text in config.start_words:
        return "start"
    return None


async def handle(scope: EventScope, event: InboundMessage, which: str) -> None:
    """Apply a stop or start word and confirm it (once)."""
    record = scope.record
    assert record is not None
    config = scope.config.optout
    stop = which == "stop"
    scope.answered = f"{which} word"

    async def apply() -> dict[str, bool]:
        changed = record.suppressed != stop
        if changed:
            word = fold(event.text or "")
            await scope.store.set_suppressed(record, stop, word=word, now=scope.now())
            log.info("policy.optout", contact=mask_phone(record.phone), opted_out=stop)
        return {"changed": changed}

    # Decided once per event: a retry confirms what the first attempt changed, and a
    # repeated STOP from someone already opted out gets no second confirmation.
    outcome = await scope.effects.once(f"optout-{which}", apply)
    record.suppressed = stop
    reply = config.stop_reply if stop else config.start_reply
    if reply and outcome.get("changed"):
        await scope.effects.send_text(
            record.phone, reply, step=f"optout-{which}", transactional=True
        )
