"""The conversation policy in the `Harness`: handler authors test `ctx.handover()`,
`ctx.window`, opt-outs and the reply gate without Redis, as the workers run them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workers import (
    AsyncContext,
    Context,
    InboundMessage,
    MessagingWindow,
    OptedOut,
    Router,
    StepTimeout,
)
from workers.dispatch import HandlerFailed
from workers.policy.config import START_REPLY, STOP_REPLY
from workers.testing import Harness, inbound_text

ANA = "919876543210"
POLICY = {"handover": {"idle": 1800, "on_notice": "A person will answer you now."}}

bot = Router("bot")


@bot.message(text="complaint")
async def escalate(event: InboundMessage, ctx: AsyncContext) -> None:
    await ctx.handover()


@bot.message(replies=True)
def answer(event: InboundMessage, ctx: Context) -> None:
    window = ctx.window
    ctx.portal.send_text(event.sender, f"bot: {event.text} (window open: {window.open})")


def texts(harness: Harness) -> list[str]:
    return [text for _to, text in harness.portal.sent]


def test_a_handler_hands_over_and_replies_pause_until_the_idle_time_ends() -> None:
    harness = Harness(bot, config={"policy": POLICY})

    harness.deliver(inbound_text("complaint"))
    assert harness.handed_over(ANA)
    assert texts(harness) == ["A person will answer you now."]  # answer() was held back

    harness.deliver(inbound_text("hello?"))  # a person talks now: the bot stays quiet
    harness.advance(timedelta(minutes=29))
    harness.deliver(inbound_text("still there?"))  # activity: the idle end moves
    harness.advance(timedelta(minutes=29))
    assert harness.handed_over(ANA)
    assert texts(harness) == ["A person will answer you now."]

    harness.advance(timedelta(minutes=2))  # 31 minutes idle
    assert not harness.handed_over(ANA)
    harness.deliver(inbound_text("back"))
    assert texts(harness)[-1] == "bot: back (window open: True)"


def test_stop_confirms_once_refuses_later_sends_and_start_restores() -> None:
    shout = Router("shout")

    @shout.message(text="news")
    def campaign(event: InboundMessage, ctx: Context) -> None:
        ctx.portal.send_text(event.sender, "our news")

    harness = Harness(shout, config={"policy": {}})
    stop = inbound_text("STOP")
    harness.deliver(stop)
    harness.deliver(stop)  # the retried job: confirmed once
    assert harness.opted_out(ANA)
    assert texts(harness) == [STOP_REPLY]

    with pytest.raises(HandlerFailed) as failed:
        harness.deliver(inbound_text("news"))
    assert isinstance(failed.value.__cause__, OptedOut)

    harness.deliver(inbound_text("START"))
    assert not harness.opted_out(ANA)
    harness.deliver(inbound_text("news"))
    assert texts(harness) == [STOP_REPLY, START_REPLY, "our news"]


def test_the_window_follows_the_harness_clock() -> None:
    seen: list[MessagingWindow] = []
    peek = Router("peek")

    @peek.message()
    def look(event: InboundMessage, ctx: Context) -> None:
        seen.append(ctx.window)

    harness = Harness(peek, config={"policy": {"window": {"margin": 600}}})
    assert not harness.window(ANA).known  # never wrote
    harness.deliver(inbound_text("hi"))
    wrote = harness.clock.now

    [window] = seen
    assert window.open and window.until is not None
    assert window.until.timestamp() == pytest.approx(wrote + 24 * 3600 - 600)
    harness.advance(timedelta(hours=23, minutes=49))
    assert harness.window(ANA).open
    harness.advance(timedelta(minutes=2))  # 24 h less the margin have passed
    assert not harness.window(ANA).open
    harness.deliver(inbound_text("hi again"))  # the message's time is the harness's: now
    assert seen[-1].open and harness.window(ANA).open


def test_a_handover_cancels_the_pending_step() -> None:
    flow = Router("flow")

    @flow.message(text="order")
    async def ask(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.expect("number", timeout=timedelta(hours=1))
        await ctx.portal.send_text(event.sender, "Your order number?")

    @flow.step("number")
    async def got(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, f"Order {event.text} noted")

    @flow.timeout("number")
    async def late(event: StepTimeout, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, "Never mind.")

    # Handed over for longer than the step's timeout: the timeout falls in the handover.
    harness = Harness(flow, config={"policy": {"handover": {"idle": 2 * 3600}}})
    harness.deliver(inbound_text("order"))
    harness.deliver(inbound_text("agent"))  # the handover keyword: not the step's answer
    harness.deliver(inbound_text("4521"))
    harness.advance(timedelta(hours=1, minutes=1))

    assert harness.handed_over(ANA)
    assert texts(harness) == ["Your order number?"]  # no step answer, no timeout


def test_without_a_policy_table_ctx_handover_says_how_to_turn_it_on() -> None:
    harness = Harness(bot)

    with pytest.raises(HandlerFailed) as failed:
        harness.deliver(inbound_text("complaint"))

    assert "[policy]" in str(failed.value.__cause__)
    with pytest.raises(RuntimeError, match="no policy"):
        harness.handed_over(ANA)


def test_a_step_timeout_sees_its_contacts_window() -> None:
    flow = Router("flow")

    @flow.message(text="order")
    async def ask(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.expect("number", timeout=timedelta(hours=1))

    @flow.timeout("number")
    async def late(event: StepTimeout, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, f"Never mind (window open: {ctx.window.open}).")

    harness = Harness(flow, config={"policy": {}})
    harness.deliver(inbound_text("order"))
    harness.advance(timedelta(hours=1, minutes=1))

    assert texts(harness) == ["Never mind (window open: True)."]
