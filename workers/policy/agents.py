"""Agents answer through WhatsApp: relays from an agent number to the customer.

A message from an agent number (``[agents] numbers`` and the forwarding numbers) is
relayed to a customer when it

- replies to a forwarded message (WhatsApp's reply: its ``context.id`` is the forward's
  message id, linked to the customer when it was forwarded), or
- starts with ``#<digits>``: the last digits of the customer's number, among the open
  conversations (forwarded or handed over within 24 hours). Digits that match several
  are refused with a reply listing them (masked, with enough digits to tell them
  apart); digits that match none are refused too.

The relay is sent once however often the job runs (the ledger), and hands the
conversation over (automated replies pause). ``#done`` (``done_command``), as a reply
to a forward or after ``#<digits>``, hands it back. Every other agent message only
moves the agent's own 24-hour window.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import structlog

from service.logs import mask_phone
from service.portal import OutsideMessagingWindow
from service.typedevents import InboundMessage
from workers.policy.config import fold
from workers.policy.errors import OptedOut
from workers.policy.state import DAY

if TYPE_CHECKING:
    from workers.policy.scope import EventScope

__all__ = ["COMMAND", "agent_message", "distinguish"]

log = structlog.get_logger("wabahooks.policy")

#: At most this many matches are listed back to the agent.
LISTED = 10
#: ``#<last digits> text`` (2 to 15 digits).
COMMAND = re.compile(r"#(\d{2,15})(?![\d])[ \t]*(.*)\Z", re.S)


def distinguish(numbers: list[str], digits: str) -> list[str]:
    """``numbers`` masked, each showing the fewest last digits that tell them apart."""
    for shown in range(len(digits) + 1, max(len(n) for n in numbers) + 1):
        tails = [n[-shown:] for n in numbers]
        if len(set(tails)) == len(tails):
            break
    return ["+" + "*" * max(len(n) - shown, 0) + n[-shown:] for n in numbers]


async def _tell(scope: EventScope, agent: str, text: str, step: str) -> None:
    await scope.effects.send_text(agent, text, step=f"to-agent:{step}", transactional=True)


async def agent_message(scope: EventScope, event: InboundMessage) -> None:
    """Relay an agent's answer, or hand a conversation back, or do nothing."""
    agent, text = event.sender, (event.text or "").strip()
    customer: str | None = None
    body = text
    command = COMMAND.match(text)
    if command is not None:
        digits, body = command.group(1), command.group(2).strip()
        found = await scope.store.open_ending(digits, scope.now() - DAY)
        if len(found) != 1:
            shown = distinguish(found, digits)[:LISTED] if found else []
            more = f" and {len(found) - LISTED} more" if len(found) > LISTED else ""
            listed = ", ".join(shown) + more
            answer = (
                f"#{digits} matches {len(found)} open conversations: {listed}. "
                "Use more digits, or reply to the forwarded message."
                if found
                else f"No open conversation ends in {digits}. Reply to a forwarded message."
            )
            log.info("policy.relay.refused", agent=mask_phone(agent), matches=len(found))
            await _tell(scope, agent, answer, "ambiguous")
            return
        customer = found[0]
    elif event.reply_to:
        customer = await scope.store.forwarded_customer(event.reply_to)
    if customer is None:
        return  # an ordinary message: the agent's window moved, nothing else
    masked = "+" + (mask_phone(customer) or "")
    if fold(body) == scope.config.handover.done_command:
        await scope.set_handover(customer, False, by="agent")
        await _tell(scope, agent, f"{masked} is back with the bot.", "done")
        return
    if not body:
        await _tell(
            scope, agent, f"Nothing to send to {masked}: write text after #digits.", "empty"
        )
        return
    await scope.set_handover(customer, True, by="agent")
    if not (await scope.window_of(customer)).open:
        await _tell(scope, agent, f"Not sent: {masked}'s 24-hour window is closed.", "closed")
        return
    try:
        await scope.effects.send_text(customer, body, step=f"relay:{customer}")
    except OutsideMessagingWindow:
        await _tell(scope, agent, f"Not sent: {masked}'s 24-hour window is closed.", "closed")
        return
    except OptedOut:
        await _tell(scope, agent, f"Not sent: {masked} opted out (STOP).", "optedout")
        return
    log.info("policy.relay.sent", agent=mask_phone(agent), contact=mask_phone(customer))
