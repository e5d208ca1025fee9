"""The handlers ``wabahooks dev`` enables when no handler configuration is given.

They make the local loop visible: every inbound message is marked read with the typing
indicator and answered once. A stand-in until the built-in handlers (mark-read, auto-reply)
can be switched on from a configuration file; production never loads this module.
"""

from __future__ import annotations

from workers import Context, InboundMessage, Router

__all__ = ["REPLY", "router"]

REPLY = "Thanks, we got your message"

router = Router("dev")


@router.message(replies=True)
def acknowledge(event: InboundMessage, ctx: Context) -> None:
    """Mark the message read (typing…), then reply."""
    ctx.portal.mark_read(event.message_id, show_typing_indicator=ctx.replies_expected)
    ctx.portal.send_text(event.sender, ctx.config.get("text", REPLY))
    ctx.log.info("dev.replied", message_id=event.message_id)
