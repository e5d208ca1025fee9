"""A handler module as a user writes one; used by the end-to-end tests."""

from __future__ import annotations

from workers import Context, InboundMessage, RetryPolicy, Router

router = Router("example")


@router.message(type="text", replies=True, retry=RetryPolicy(max_attempts=3, base=1, cap=1))
def echo(event: InboundMessage, ctx: Context) -> None:
    ctx.portal.mark_read(event.message_id, show_typing_indicator=ctx.replies_expected)
    ctx.portal.send_text(event.sender, f"You said: {event.text}")
    ctx.store.set("last", event.text)
