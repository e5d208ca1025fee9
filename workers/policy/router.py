"""The policy's router: every inbound message passes through it first (after mark-read).

For a customer: their window moves (the message's own time), a whole-message stop or
start word is applied and confirmed (``workers.policy.optout``), a lapsed handover
ends, a handover keyword or button starts one (``workers.policy.handover``). For an
agent: their window moves, and an answer is relayed (``workers.policy.agents``).
The reply gate then holds back the handlers that declared ``replies=`` (see
``workers.policy.scope``).
"""

from __future__ import annotations

from typing import Any

from service.typedevents import InboundMessage
from workers.policy import agents, handover, optout
from workers.policy.scope import EventScope
from workers.router import Router

__all__ = ["NAME", "build", "clear_steps", "scope_of"]

NAME = "policy"


def scope_of(ctx: Any) -> EventScope:
    """The event's policy scope (the async one: the policy's handlers are ``async def``)."""
    scope = ctx.policy
    if not isinstance(scope, EventScope):
        raise RuntimeError("the policy router runs only with [policy] configured")
    return scope


def build() -> Router:
    """Return the policy's router (its configuration comes with each event's scope)."""
    router = Router(NAME)

    @router.message()
    async def policy(event: InboundMessage, ctx: Any) -> None:
        scope = scope_of(ctx)
        record = scope.record
        if record is None:
            return
        await scope.store.record_inbound(record, scope.policy.message_time(event))
        if scope.is_agent:
            await agents.agent_message(scope, event)
            return
        which = optout.optout_word(scope, event)
        if which is not None:
            await optout.handle(scope, event, which)
            return
        await handover.contact_message(scope, event)

    return router


async def clear_steps(scope: EventScope) -> None:
    """Before a message can answer a pending wait-for-reply step (``ctx.expect``): a message
    the policy takes (a stop or start word, a handover keyword or button) or one to a
    conversation handed over to a person is not the step's answer, so the step is cancelled
    first; the message then goes to the policy and the other handlers as usual."""
    event, record = scope.event, scope.record
    if not isinstance(event, InboundMessage) or record is None or scope.is_agent:
        return
    if (
        optout.optout_word(scope, event) is not None
        or handover.wants_handover(scope, event)
        or record.handover_active(scope.now())
    ):
        await scope.policy.cancel_steps(event.sender)
