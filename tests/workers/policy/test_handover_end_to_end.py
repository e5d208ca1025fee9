"""Human handover end to end: simulator → receiver → real worker engine → simulator."""

from __future__ import annotations

from tests.support.loop import running_loop
from tests.workers.policy.support import (
    AGENT,
    CUSTOMER,
    THANKS,
    Clock,
    config,
    failed,
    reply,
    send_from_portal_inbox,
    sent_to,
    texts,
    use_clock,
)
from workers import AsyncContext, Burst, InboundMessage, Router, Window

HOUR = 3600


def test_the_keyword_pauses_auto_reply_and_idle_resumes_it(redis_url: str) -> None:
    clock = Clock()
    with running_loop(redis_url, config=config(idle=1800)) as loop:
        use_clock(loop, clock)
        reply(loop, AGENT, "on shift")
        loop.work()
        reply(loop, CUSTOMER, "hello")
        loop.work()
        reply(loop, CUSTOMER, "  Human ")
        loop.work()
        clock.offset = 1700  # within the idle time: still handed over (and renewed)
        reply(loop, CUSTOMER, "are you there?")
        loop.work()
        clock.offset = 3400  # past the first idle end, within the renewed one
        reply(loop, CUSTOMER, "hello??")
        loop.work()
        paused = texts(loop)
        forwarded = len(sent_to(loop, AGENT))
        clock.offset = 3400 + 1801  # past the idle time: the next message ends the handover
        reply(loop, CUSTOMER, "anyone?")
        loop.work()
        resumed = texts(loop)

    assert paused == [THANKS]  # neither "Human" nor the next message was auto-answered
    assert forwarded == 4  # forwarding went on
    assert resumed == [THANKS, THANKS]


def test_a_button_payload_hands_over_and_notices_are_sent(redis_url: str) -> None:
    extra = 'payloads = ["TALK_TO_AGENT"]\non_notice = "A person will answer."\n'
    extra += 'off_notice = "You are back with our assistant."'
    with running_loop(redis_url, config=config(extra=extra)) as loop:
        reply(loop, AGENT, "on shift")
        loop.work()
        reply(loop, CUSTOMER, "hello")
        loop.work()
        body = {"from": CUSTOMER, "type": "button",
                "content": {"text": "Talk to us", "payload": "TALK_TO_AGENT"}}  # fmt: skip
        loop.sim.post("/sim/inbound", json=body).raise_for_status()
        loop.settle()
        loop.work()
        forward_id = sent_to(loop, AGENT)[-1]["messageId"]
        reply(loop, AGENT, "#done", context=forward_id)
        loop.work()
        customer = texts(loop)

    assert customer == [THANKS, "A person will answer.", "You are back with our assistant."]


def test_an_agent_reply_is_relayed_once_pauses_auto_reply_and_done_resumes(
    redis_url: str,
) -> None:
    with running_loop(redis_url, config=config()) as loop:
        reply(loop, AGENT, "on shift")
        loop.work()
        reply(loop, CUSTOMER, "where is my order?")
        loop.work()
        forward_id = sent_to(loop, AGENT)[-1]["messageId"]
        loop.chaos(error_after_send_next=1)  # the relay goes out, answered 500
        reply(loop, AGENT, "It ships today.", context=forward_id)
        loop.work()
        retried = loop.run_scheduled()
        loop.work()  # the retry finds the relay in the conversation: not sent again
        reply(loop, CUSTOMER, "great, thanks")
        loop.work()
        during = texts(loop)
        reply(loop, AGENT, "#done", context=forward_id)
        loop.work()  # (the agent's and the customer's messages would run concurrently)
        reply(loop, CUSTOMER, "one more thing")
        loop.work()
        after = texts(loop)
        to_agent = [m["message"] for m in sent_to(loop, AGENT)]
        failures = failed(loop)

    assert retried == 1
    assert during == [THANKS, "It ships today."]
    assert after == during + [THANKS]
    assert to_agent[-1].startswith("From ") and "one more thing" in to_agent[-1]
    assert "+********3210 is back with the bot." in to_agent
    assert failures == []


def test_an_answer_from_the_portal_inbox_pauses_auto_reply(redis_url: str) -> None:
    with running_loop(redis_url, config=config()) as loop:
        reply(loop, CUSTOMER, "hello")
        loop.work()
        send_from_portal_inbox(loop, CUSTOMER, "Hi, Maria from support here.")
        reply(loop, CUSTOMER, "hi Maria")
        loop.work()
        reply(loop, CUSTOMER, "my order is late")
        loop.work()
        customer = texts(loop)

    assert customer == [THANKS, "Hi, Maria from support here."]


def test_without_inbox_detection_the_portal_answer_goes_unnoticed(redis_url: str) -> None:
    with running_loop(redis_url, config=config(detect_inbox=False)) as loop:
        reply(loop, CUSTOMER, "hello")
        loop.work()
        send_from_portal_inbox(loop, CUSTOMER, "Hi, Maria from support here.")
        reply(loop, CUSTOMER, "hi Maria")
        loop.work()
        customer = texts(loop)

    assert customer == [THANKS, "Hi, Maria from support here.", THANKS]


def test_our_own_send_of_unknown_outcome_is_not_taken_for_a_human(redis_url: str) -> None:
    with running_loop(redis_url, config=config()) as loop:
        reply(loop, CUSTOMER, "hello")
        loop.work()
        loop.chaos(error_after_send_next=1)  # our reply goes out, answered 500
        reply(loop, CUSTOMER, "second")
        loop.work()
        loop.run_scheduled()
        loop.work()  # the retry's gate sees our reply in history: an open intent, ours
        reply(loop, CUSTOMER, "third")
        loop.work()
        customer = texts(loop)

    assert customer == [THANKS, THANKS, THANKS]


def test_a_handler_hands_over_with_ctx_handover(redis_url: str) -> None:
    escalate = Router("escalate")

    @escalate.message(contains="refund", ignore_case=True)
    async def refund(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.handover()

    with running_loop(redis_url, escalate, config=config()) as loop:
        reply(loop, CUSTOMER, "I want a refund")
        loop.work()
        reply(loop, CUSTOMER, "now")
        loop.work()
        customer = texts(loop)

    assert customer == []


def test_hash_digits_relay_and_ambiguous_digits_are_refused(redis_url: str) -> None:
    other = "919876003210"  # ends in 3210 too
    with running_loop(redis_url, config=config()) as loop:
        reply(loop, AGENT, "on shift")
        loop.work()
        reply(loop, CUSTOMER, "hello")
        loop.work()
        reply(loop, other, "hello too")
        loop.work()
        reply(loop, AGENT, "#3210 Which one of you?")
        loop.work()
        reply(loop, AGENT, "#543210 Your parcel left.")
        loop.work()
        to_agent = [m["message"] for m in sent_to(loop, AGENT)]
        customer, second = texts(loop), texts(loop, other)

    refusal = [t for t in to_agent if t.startswith("#3210 matches 2")]
    assert len(refusal) == 1
    assert "+*******03210" in refusal[0] and "+*******43210" in refusal[0]
    assert customer == [THANKS, "Your parcel left."]
    assert second == [THANKS]


def test_a_handover_cancels_the_pending_step(redis_url: str) -> None:
    """The bot asked for an order number; the contact asks for a human instead: the step is
    cancelled (its answer and its timeout never run), and the next message is not taken for
    the step's answer."""
    orders = Router("orders")
    answered: list[str] = []

    @orders.message(contains="order", ignore_case=True, replies=True)
    async def ask(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, "Your order number?")
        await ctx.expect("order_number", timeout=HOUR)

    @orders.step("order_number")
    async def number(event: InboundMessage, ctx: AsyncContext) -> None:
        answered.append(event.text or "")

    with running_loop(redis_url, orders, config=config()) as loop:
        reply(loop, AGENT, "on shift")
        loop.work()
        reply(loop, CUSTOMER, "where is my order")
        loop.work()
        before = texts(loop)
        step_before = loop.r.hget("wabahooks:conv:" + CUSTOMER, "step")
        reply(loop, CUSTOMER, "human")
        loop.work()
        reply(loop, CUSTOMER, "4521")
        loop.work()
        step_after = loop.r.hget("wabahooks:conv:" + CUSTOMER, "step")
        timeouts = loop.r.zcard("rq:scheduled:wabahooks:messages")
        customer = texts(loop)

    assert step_before == b"order_number"
    assert step_after is None and timeouts == 0  # the step and its timeout job are gone
    assert answered == []  # "human" and "4521" went to the person, not to the step
    assert "Your order number?" in before
    assert customer == before  # handed over: nothing automated answered "human" or "4521"


def test_a_burst_flushed_after_a_handover_is_not_answered(redis_url: str) -> None:
    """A contact writes two messages (a burst gathers), then asks for a human before the burst
    flushes: the flush still runs, but its handler declared replies and is held back."""
    from tests.workers.test_conversation import fire

    bursts = Router("bursts")
    flushed: list[str] = []

    @bursts.message(
        coalesce=Window(quiet=HOUR, max_wait=2 * HOUR),
        replies=True,
        when=lambda e: e.sender == CUSTOMER,
    )
    async def answer(burst: Burst, ctx: AsyncContext) -> None:
        flushed.append(burst.text)
        await ctx.portal.send_text(burst.sender, f"About: {burst.text}")

    with running_loop(redis_url, bursts, config=config()) as loop:
        reply(loop, AGENT, "on shift")
        loop.work()
        reply(loop, CUSTOMER, "hi")
        reply(loop, CUSTOMER, "my order")
        loop.work()
        reply(loop, CUSTOMER, "human")  # handed over while the burst waits
        loop.work()
        fire(loop)
        loop.work()
        customer = texts(loop)
        failures = failed(loop)

    assert not any(text.startswith("About:") for text in customer)
    assert flushed == []  # held back by the gate, not run and then silenced
    assert failures == []
