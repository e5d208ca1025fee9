"""Mark read, with typing: every inbound message is marked read as it arrives.

"typing…" promises a reply, so by default (``when-replying``) it is shown only when
a handler that will reply matched the event (``ctx.replies_expected``: it declared
``replies=True``, or its ``replies=`` decision, made before any handler runs, said so;
the auto-reply built-in's says so only when a rule matches and its cooldown does not
hold the reply back). ``always`` shows it every time, ``never`` never. Statuses and
test events are never marked. Runs before every reply handler.

::

    [handlers.mark_read]
    mode = "when-replying"   # always | when-replying | never
"""

from __future__ import annotations

from workers import AsyncContext, InboundMessage, Router
from workers.sections import MarkReadConfig

__all__ = ["NAME", "build"]

NAME = "mark_read"


def build(config: MarkReadConfig) -> Router:
    """Return the mark-read router for ``config``."""
    router = Router(NAME)

    @router.message()
    async def mark_read(event: InboundMessage, ctx: AsyncContext) -> None:
        typing = config.mode == "always" or (
            config.mode == "when-replying" and ctx.replies_expected
        )
        await ctx.portal.mark_read(event.message_id, show_typing_indicator=typing)

    return router
