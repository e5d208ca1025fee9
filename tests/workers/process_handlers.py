"""Handler modules for tests that run real worker processes (WABAHOOKS_HANDLERS)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis

from workers import AsyncContext, Context, InboundMessage, Permanent, Router

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
        time.sleep(3600)  # the test kills the worker here


chat = Router("chat")
chat_sync = Router("chat-sync")
_recorder: dict[str, object] = {}


def _async_client() -> object:
    """One redis.asyncio client per worker process (its event loop is the worker's)."""
    import redis.asyncio

    if "client" not in _recorder:
        _recorder["client"] = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    return _recorder["client"]


@chat.message(replies=True)
async def answer(event: InboundMessage, ctx: AsyncContext) -> None:
    """Record the order this contact's messages reach the handler, then reply (async)."""
    client: Any = _async_client()
    await client.rpush(f"test:calls:{event.sender}", event.text or "")
    await ctx.portal.send_text(event.sender, f"re: {event.text}")


@chat_sync.message(replies=True)
def answer_sync(event: InboundMessage, ctx: Context) -> None:
    """The same as a plain def handler, in the worker's thread pool."""
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        client.rpush(f"test:calls:{event.sender}", event.text or "")
    ctx.portal.send_text(event.sender, f"re (sync): {event.text}")


echo = Router("echo")


@echo.message(replies=True)
async def answer_and_remember(event: InboundMessage, ctx: AsyncContext) -> None:
    """Reply, then keep the text answered last (a fenced store write): every Redis write goes
    through the worker's own client, which a failover test moves under it."""
    await ctx.portal.send_text(event.sender, f"re: {event.text}")
    await ctx.store.set("answered", event.text)


turns = Router("turns")


@turns.message(replies=True)
async def one_at_a_time(event: InboundMessage, ctx: AsyncContext) -> None:
    """Reply, counting this contact's handlers running at once: each run pushes the count it
    joined to ``test:seen:<phone>``. While ``test:hold:<text>`` exists the run waits; while
    ``test:fail:<text>`` exists it fails for good (the job goes to the failed registry), while
    ``test:flaky:<text>`` exists it fails as retrying may fix."""
    client: Any = _async_client()
    sender, text = event.sender, event.text or ""
    await client.rpush(f"test:seen:{sender}", await client.incr(f"test:running:{sender}"))
    await client.rpush(f"test:calls:{sender}", text)
    try:
        deadline = time.monotonic() + 60
        while await client.exists(f"test:hold:{text}") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if await client.exists(f"test:fail:{text}"):
            raise Permanent(f"told to fail {text!r}")
        if await client.exists(f"test:flaky:{text}"):
            raise RuntimeError(f"told to fail {text!r} this time")
        await ctx.portal.send_text(sender, f"re: {text}")
    finally:
        await client.decr(f"test:running:{sender}")
