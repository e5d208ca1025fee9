"""The Harness runs async and sync handlers side by side, from sync and async tests."""

from __future__ import annotations

import asyncio

import pytest

from workers import AsyncContext, Context, InboundMessage, Router
from workers.bridge import BlockingCallOnLoop, Bridge
from workers.testing import Harness, inbound_text

router = Router("both")


@router.message(replies=True)
async def greet(event: InboundMessage, ctx: AsyncContext) -> None:
    await ctx.portal.mark_read(event.message_id, show_typing_indicator=ctx.replies_expected)
    await ctx.portal.send_text(event.sender, "Hi!")
    await ctx.store.set("greeted", True)


@router.message()
def follow_up(event: InboundMessage, ctx: Context) -> None:
    if ctx.store.get("greeted"):
        ctx.portal.send_text(event.sender, "How can we help?")


def test_deliver_runs_async_and_sync_handlers_in_order_once() -> None:
    harness = Harness(router)
    event = inbound_text("hello")

    assert harness.deliver(event) == 2
    harness.deliver(event)  # a retried job: nothing repeats

    assert harness.portal.sent == [("919876543210", "Hi!"), ("919876543210", "How can we help?")]
    assert harness.portal.marked == [(event.message_id, True)]
    assert harness.store("919876543210").get("greeted") is True


def test_adeliver_from_an_async_test() -> None:
    async def scenario() -> list[tuple[str, str]]:
        harness = Harness(router)
        await harness.adeliver(inbound_text("hello"))
        return harness.portal.sent

    assert len(asyncio.run(scenario())) == 2


def test_a_blocking_call_on_the_loop_is_refused_with_advice() -> None:
    wrong = Router("wrong")

    @wrong.message()
    async def blocks(event: InboundMessage, ctx: AsyncContext) -> None:
        ctx.blocking(Bridge(asyncio.get_running_loop())).store.get("x")

    with pytest.raises(Exception) as failure:
        Harness(wrong).deliver(inbound_text("hi"))
    assert isinstance(failure.value.__cause__, BlockingCallOnLoop)
    assert "await" in str(failure.value.__cause__)
