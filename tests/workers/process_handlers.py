"""Handler modules for tests that run real worker processes (WABAHOOKS_HANDLERS)."""

from __future__ import annotations

import os
import time

import redis

from workers import Context, InboundMessage, Router

ordering = Router("ordering")
crash = Router("crash")


@ordering.message()
def record(event: InboundMessage, ctx: Context) -> None:
    """Record the order messages reach handlers; 'block' waits for the test's release key."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])  # the test reads this list
    if event.text == "block":
        deadline = time.monotonic() + 60
        while not client.exists("test:release") and time.monotonic() < deadline:
            time.sleep(0.02)
    client.rpush(f"test:order:{event.sender}", event.text or "")


@crash.message(replies=True)
def reply_then_hang(event: InboundMessage, ctx: Context) -> None:
    """Send the reply; on the first attempt, then hang (the test kills the worker here)."""
    ctx.portal.send_text(event.sender, f"Got it: {event.text}")
    if not ctx.store.get("hung"):
        ctx.store.set("hung", True)
        time.sleep(120)
