"""A handler module for the worker metrics tests (WABAHOOKS_HANDLERS), one outcome per text."""

from __future__ import annotations

from service.portal.errors import RateLimited
from workers import Context, InboundMessage, Permanent, Router

metered = Router("metered")


@metered.message()
def answer(event: InboundMessage, ctx: Context) -> None:
    """'ok': reply through the portal; 'bad': fail for good; 'flaky': fail, to be retried.

    The flaky one fails as the portal's 429 with an hour's Retry-After: the retry is scheduled
    an hour ahead, so a burst worker never runs it (with the default 1-5 s backoff it sometimes
    became due before the workers stopped, and the test counted two retries)."""
    if event.text == "bad":
        raise Permanent("this one cannot be handled")
    if event.text == "flaky":
        raise RateLimited("send_text", "not this time", retry_after=3600)
    ctx.portal.send_text(event.sender, f"Got {event.text}")
