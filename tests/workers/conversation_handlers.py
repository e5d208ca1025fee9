"""A conversation bot for tests that run real worker processes (WABAHOOKS_HANDLERS).

Bursts are answered once with every text; a burst containing "ask" asks for an answer
(step "answer"); "hang" makes the flush hang after its reply on the first attempt (the
test kills the worker there). Windows and the step's timeout are hours long: nothing fires
by itself during a test, which makes a flush or a timeout due when it wants it
(``tests.support.workers.make_due``).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from workers import AsyncContext, Burst, Context, InboundMessage, Router, StepTimeout, Window

WINDOW = Window(quiet=3600, max_wait=2 * 3600)
WAIT = timedelta(hours=1)

bot = Router("convbot")
_clients: dict[str, Any] = {}


def _redis() -> Any:
    """One redis.asyncio client per worker process (its event loop is the worker's)."""
    import redis.asyncio

    if "client" not in _clients:
        _clients["client"] = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    return _clients["client"]


@bot.message(coalesce=WINDOW, replies=True)
async def on_burst(burst: Burst, ctx: AsyncContext) -> None:
    await _redis().rpush(f"test:flushes:{burst.sender}", burst.text)
    await ctx.portal.send_text(burst.sender, "got: " + " | ".join(burst.texts))
    if "hang" in burst.texts and not await ctx.store.get("hung"):
        await ctx.store.set("hung", True)
        await asyncio.sleep(3600)  # the test kills the worker here
    if "ask" in burst.texts:
        await ctx.expect("answer", timeout=WAIT, data={"texts": burst.texts})


@bot.step("answer", replies=True)
async def on_answer(event: InboundMessage, ctx: AsyncContext) -> None:
    asked = " | ".join(ctx.conversation.data["texts"])
    await ctx.portal.send_text(event.sender, f"answer: {event.text} to {asked}")


@bot.timeout("answer")
async def on_timeout(event: StepTimeout, ctx: AsyncContext) -> None:
    await _redis().rpush(f"test:timeouts:{event.sender}", event.step)
    await ctx.portal.send_text(event.sender, "timed out")


bot_sync = Router("convbot-sync")


@bot_sync.message(coalesce=WINDOW, replies=True)
def on_burst_sync(burst: Burst, ctx: Context) -> None:
    """The same bot as plain def handlers, in the worker's thread pool."""
    ctx.portal.send_text(burst.sender, "got: " + " | ".join(burst.texts))
    if "ask" in burst.texts:
        ctx.expect("answer", timeout=WAIT, data={"texts": burst.texts})


@bot_sync.step("answer", replies=True)
def on_answer_sync(event: InboundMessage, ctx: Context) -> None:
    asked = " | ".join(ctx.conversation.data["texts"])
    ctx.portal.send_text(event.sender, f"answer: {event.text} to {asked}")


@bot_sync.timeout("answer")
def on_timeout_sync(event: StepTimeout, ctx: Context) -> None:
    ctx.portal.send_text(event.sender, "timed out")
