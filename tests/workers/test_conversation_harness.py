"""Conversations in the Harness (no Redis): its clock, bursts, steps, and both handler styles.

Windows and timeouts are hours long, as everywhere in the tests (``tests/test_no_wall_clock.py``):
the harness's clock moves only when a test says so.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from workers import (
    AsyncContext,
    Burst,
    Context,
    HandlerFailed,
    InboundMessage,
    Router,
    StepTimeout,
    Window,
)
from workers.testing import Harness, inbound_text, status_update

ME = "919876543210"
HOUR = 3600


def echo(window: Window, style: str = "async") -> Router:
    router = Router("echo")
    if style == "async":

        @router.message(coalesce=window, replies=True)
        async def on_burst(burst: Burst, ctx: AsyncContext) -> None:
            await ctx.portal.send_text(burst.sender, burst.text)

    else:

        @router.message(coalesce=window, replies=True)
        def on_burst_sync(burst: Burst, ctx: Context) -> None:
            ctx.portal.send_text(burst.sender, burst.text)

    return router


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_burst_flushes_once_after_the_quiet_time(style: str) -> None:
    bot = Harness(echo(Window(quiet=4 * HOUR, max_wait=15 * HOUR), style))
    first, second = inbound_text("hi"), inbound_text("there")
    bot.deliver(first)
    bot.advance(3 * HOUR)
    bot.deliver(second)  # re-arms: quiet again from here
    bot.advance(4 * HOUR - 0.1)
    assert bot.portal.sent == []
    bot.advance(0.1)
    assert bot.portal.sent == [(ME, "hi\nthere")]
    # Each marked read without typing; typing on the last one when the reply follows.
    assert bot.portal.marked == [
        (first.message_id, False),
        (second.message_id, False),
        (second.message_id, True),
    ]


def test_max_wait_bounds_a_burst_that_never_goes_quiet() -> None:
    bot = Harness(echo(Window(quiet=4 * HOUR, max_wait=10 * HOUR)))
    for n in range(6):
        bot.deliver(inbound_text(f"m{n}"))
        bot.advance(3 * HOUR)  # never 4 hours quiet
    assert bot.portal.sent == [(ME, "m0\nm1\nm2\nm3")]  # flushed at 10 hours


def test_max_messages_flushes_at_once_and_a_duplicate_enters_once() -> None:
    bot = Harness(echo(Window(quiet=4 * HOUR, max_wait=10 * HOUR, max_messages=2)))
    one = inbound_text("one")
    bot.deliver(one)
    bot.deliver(one)  # the same message again (a retried job): not twice
    bot.advance(0)
    assert bot.portal.sent == []
    bot.deliver(inbound_text("two"))
    bot.advance(0)
    assert bot.portal.sent == [(ME, "one\ntwo")]


def test_deliver_burst_and_a_burst_that_sends_nothing_shows_no_typing() -> None:
    router = Router("quiet")

    @router.message(coalesce=Window(quiet=2 * HOUR, max_wait=5 * HOUR))
    async def note(burst: Burst, ctx: AsyncContext) -> None:
        await ctx.store.set("last", burst.texts)

    bot = Harness(router)
    assert bot.deliver_burst(inbound_text("a"), inbound_text("b")) == 3
    assert bot.store(ME).get("last") == ["a", "b"]
    assert all(typing is False for _, typing in bot.portal.marked)


def steps(style: str) -> Router:
    router = Router("steps")
    if style == "async":

        @router.message(text="start", replies=True)
        async def start(event: InboundMessage, ctx: AsyncContext) -> None:
            await ctx.portal.send_text(event.sender, "name?")
            await ctx.expect("name", timeout=timedelta(hours=5), data={"n": 1})

        @router.step("name", filter=lambda m: m.text != "start", replies=True)
        async def name(event: InboundMessage, ctx: AsyncContext) -> None:
            number = ctx.conversation.data["n"]
            await ctx.portal.send_text(event.sender, f"hi {event.text} #{number}")

        @router.timeout("name")
        async def late(event: StepTimeout, ctx: AsyncContext) -> None:
            await ctx.portal.send_text(event.sender, f"bye ({event.step}, {event.data})")

    else:

        @router.message(text="start", replies=True)
        def start_sync(event: InboundMessage, ctx: Context) -> None:
            ctx.portal.send_text(event.sender, "name?")
            ctx.expect("name", timeout=5 * HOUR, data={"n": 1})

        @router.step("name", filter=lambda m: m.text != "start", replies=True)
        def name_sync(event: InboundMessage, ctx: Context) -> None:
            data = ctx.conversation.data
            ctx.portal.send_text(event.sender, f"hi {event.text} #{data['n']}")

        @router.timeout("name")
        def late_sync(event: StepTimeout, ctx: Context) -> None:
            ctx.portal.send_text(event.sender, f"bye ({event.step}, {event.data})")

    return router


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_step_answered_in_time_and_one_left_to_time_out(style: str) -> None:
    bot = Harness(steps(style))
    bot.deliver(inbound_text("start"))
    bot.advance(timedelta(hours=4))
    bot.deliver(inbound_text("Ana"))
    bot.advance(timedelta(hours=12))
    bot.deliver(inbound_text("start"))
    bot.advance(timedelta(hours=5))
    bot.advance(timedelta(hours=5))
    assert [text for _, text in bot.portal.sent] == [
        "name?",
        "hi Ana #1",
        "name?",
        "bye (name, {'n': 1})",
    ]


def test_a_redelivered_answer_runs_the_step_once_and_asking_again_replaces_the_timeout() -> None:
    bot = Harness(steps("async"))
    bot.deliver(inbound_text("start"))
    bot.advance(HOUR)
    bot.deliver(inbound_text("start"))  # asked again: the first timeout will not run
    answer = inbound_text("Ben")
    bot.deliver(answer)
    bot.deliver(answer)  # a retried job: the same answer, not a second one
    bot.advance(timedelta(hours=12))  # past both deadlines
    assert [text for _, text in bot.portal.sent] == ["name?", "name?", "hi Ben #1"]


def test_expect_outside_a_conversation_says_why() -> None:
    router = Router("statuses")

    @router.status()
    async def on_status(event: object, ctx: AsyncContext) -> None:
        await ctx.expect("x", timeout=HOUR)

    with pytest.raises(Exception, match="needs a contact's conversation"):
        Harness(router).deliver(status_update("wamid.X", "sent"))


def test_a_window_is_checked() -> None:
    with pytest.raises(ValueError, match="quiet <= max_wait"):
        Window(quiet=2 * HOUR, max_wait=HOUR)


def test_a_retried_mismatch_handler_sees_the_step_it_missed() -> None:
    router = Router("again")
    attempts: list[int] = []

    @router.message(text="go")
    async def go(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.expect("n", timeout=HOUR, data={"tries": 1})

    async def ask_again(event: InboundMessage, ctx: AsyncContext) -> None:
        tries = ctx.conversation.data["tries"]
        await ctx.expect("n", timeout=HOUR, data={"tries": tries + 1})
        if not attempts:
            attempts.append(1)
            raise RuntimeError("fails after asking again")
        await ctx.portal.send_text(event.sender, f"try {tries}")

    @router.step("n", filter=r"^\d+$", on_mismatch=ask_again)
    async def number(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, "ok")

    bot = Harness(router)
    bot.deliver(inbound_text("go"))
    wrong = inbound_text("x")
    with pytest.raises(HandlerFailed):
        bot.deliver(wrong)
    bot.deliver(wrong)  # the job's retry: the same step and data as the first attempt
    assert bot.portal.sent == [(ME, "try 1")]
    assert bot.conversations.steps[ME]["data"] == '{"tries": 2}'  # asked again once
    bot.deliver(inbound_text("7"))
    assert bot.portal.sent[-1] == (ME, "ok")
