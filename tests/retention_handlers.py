"""A handler module for the retention tests (WABAHOOKS_HANDLERS): it writes every kind of
state a handler can leave behind (its store, a reply recorded in the ledger's sent set)."""

from __future__ import annotations

from workers import Context, InboundMessage, Permanent, Router

kept = Router("kept")


@kept.message()
def remember_and_reply(event: InboundMessage, ctx: Context) -> None:
    """'bad': fail for good; anything else: remember it and reply."""
    if event.text == "bad":
        raise Permanent("this one cannot be handled")
    ctx.store.set("last", event.text)
    ctx.portal.send_text(event.sender, f"Got {event.text}")
