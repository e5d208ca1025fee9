"""A handler module for the worker metrics tests (WABAHOOKS_HANDLERS), one outcome per text."""

from __future__ import annotations

from workers import Context, InboundMessage, Permanent, Router

metered = Router("metered")


@metered.message()
def answer(event: InboundMessage, ctx: Context) -> None:
    """'ok': reply through the portal; 'bad': fail for good; 'flaky': fail, to be retried."""
    if event.text == "bad":
        raise Permanent("this one cannot be handled")
    if event.text == "flaky":
        raise RuntimeError("not this time")
    ctx.portal.send_text(event.sender, f"Got {event.text}")
