"""Mark read, with typing: unit tests with the Harness, and the whole loop."""

from __future__ import annotations

import pytest

from tests.support.builtins import harness, text
from tests.support.loop import running_loop
from workers import AsyncContext, Context, InboundMessage, Router
from workers.testing import status_update

AUTO_REPLY = """
[handlers.auto_reply]
[[handlers.auto_reply.rules]]
text = "hi"
reply = "Hello {name}!"
"""


def test_typing_is_shown_only_when_an_auto_reply_rule_matches() -> None:
    h = harness("[handlers.mark_read]\n" + AUTO_REPLY)
    hi, other = text("Hi"), text("what is this?")
    h.deliver(hi)
    h.deliver(other)
    assert h.portal.marked == [(hi.message_id, True), (other.message_id, False)]
    assert h.portal.sent == [("919876543210", "Hello John Doe!")]


def test_typing_is_shown_when_a_handler_of_yours_declares_it_replies() -> None:
    mine = Router("mine")

    @mine.message(contains="order", replies=True)
    def answer(event: InboundMessage, ctx: Context) -> None:
        ctx.portal.send_text(event.sender, "On its way")

    h = harness("[handlers.mark_read]\n", mine)
    event = text("where is my order")
    h.deliver(event)
    assert h.portal.marked == [(event.message_id, True)]


def test_no_typing_when_the_cooldown_holds_the_auto_reply_back() -> None:
    h = harness("[handlers.mark_read]\n" + AUTO_REPLY.replace("[[", "cooldown = 600\n[[", 1))
    first, again = text("hi"), text("hi")
    h.deliver(first)
    h.deliver(again)  # within the cooldown: no reply, so no "typing…" either
    assert h.portal.marked == [(first.message_id, True), (again.message_id, False)]
    assert h.portal.sent == [("919876543210", "Hello John Doe!")]


def test_a_handler_of_yours_may_decide_from_its_store_whether_it_replies() -> None:
    mine = Router("mine")

    async def not_answered_yet(event: InboundMessage, ctx: AsyncContext) -> bool:
        return not await ctx.store.get("answered")

    @mine.message(contains="order", replies=not_answered_yet)
    def answer(event: InboundMessage, ctx: Context) -> None:
        if not ctx.store.get("answered"):
            ctx.portal.send_text(event.sender, "On its way")
            ctx.store.set("answered", True)

    h = harness("[handlers.mark_read]\n", mine)
    first, second = text("where is my order"), text("order??")
    h.deliver(first)
    h.deliver(second)
    assert h.portal.marked == [(first.message_id, True), (second.message_id, False)]
    assert h.portal.sent == [("919876543210", "On its way")]


@pytest.mark.parametrize(("mode", "typing"), [("always", True), ("never", False)])
def test_modes_always_and_never(mode: str, typing: bool) -> None:
    h = harness(f'[handlers.mark_read]\nmode = "{mode}"\n' + AUTO_REPLY)
    quiet, replied = text("no rule for this"), text("hi")
    h.deliver(quiet)
    h.deliver(replied)
    assert h.portal.marked == [(quiet.message_id, typing), (replied.message_id, typing)]


def test_statuses_are_never_marked_and_a_retry_does_not_mark_again() -> None:
    h = harness("[handlers.mark_read]\n")
    assert h.deliver(status_update("wamid.OUT1", "delivered")) == 0
    event = text("hello")
    h.deliver(event)
    h.deliver(event)  # the same event again, as a retried job
    assert h.portal.marked == [(event.message_id, False)]


def test_one_mark_read_with_typing_then_one_reply_end_to_end(redis_url: str) -> None:
    with running_loop(redis_url, config="[handlers.mark_read]\n" + AUTO_REPLY) as loop:
        loop.chaos(duplicate_rate=1.0)  # every webhook delivered twice
        replied = loop.inbound("hi")
        quiet = loop.inbound("thanks")
        loop.work()
        loop.work()
        history = loop.history()

    marks = [(m["messageId"], m["showTypingIndicator"]) for m in history["markReads"]]
    assert marks == [(replied, True), (quiet, False)]
    assert [m["message"] for m in history["sent"]] == ["Hello John Doe!"]
