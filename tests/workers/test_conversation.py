"""Conversations on real Valkey: the simulator's webhooks → receiver → chain → handlers.

Timers are fired by making them due and running the engine's own promote script (the
workers do it every second), so each test decides when a flush or a timeout fires. The
windows and step timeouts are an hour or more: none falls due by itself however slowly
the machine runs the test (``tests/test_no_wall_clock.py`` keeps it so).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import redis
import redis.asyncio
from click.testing import CliRunner, Result
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from service.cli import main
from service.cli.forget import forget_contact
from service.keys import Keys
from service.policystore import PolicyKeys
from tests.support.bredis import BytesRedis
from tests.support.loop import Loop, running_loop
from tests.support.workers import make_due
from tests.workers.test_tracing import finished, provider  # noqa: F401 - a fixture
from workers import (
    AsyncContext,
    Burst,
    Context,
    InboundMessage,
    Router,
    StepTimeout,
    Window,
)
from workers.archive import contact_of
from workers.coalesce import message_record
from workers.convredis import ConversationScripts, cancel_conversation
from workers.execution import ExecutionToken, Superseded
from workers.policy.state import PolicyStore
from workers.rqstate import RQState
from workers.testing import inbound_text

ME, OTHER = "919876543210", "919812345678"
MESSAGES = "wabahooks:messages"
SCHEDULED = f"rq:scheduled:{MESSAGES}"
HOUR = 3600


def aclient(loop: Loop) -> redis.asyncio.Redis:
    kwargs = loop.r.connection_pool.connection_kwargs
    return redis.asyncio.Redis(host=kwargs["host"], port=kwargs["port"])


def fire(loop: Loop) -> int:
    """Make every scheduled flush and timeout due now, and promote them as a worker does."""
    make_due(loop.r, MESSAGES)

    async def promote() -> int:
        client = aclient(loop)
        try:
            state = RQState(client, MESSAGES, worker_name="t", lease=30, max_attempts=5)
            return await state.promote()
        finally:
            await client.aclose()

    return asyncio.run(promote())


def sent(loop: Loop, phone: str = ME) -> list[str]:
    return [m["message"] for m in loop.history(phone)["sent"]]


def bot(style: str = "async") -> Router:
    """Coalesces bursts; "ask" asks for a number (an hour), answered or timed out."""
    router = Router("bot")
    if style == "async":

        @router.message(coalesce=Window(quiet=HOUR, max_wait=2 * HOUR), replies=True)
        async def on_burst(burst: Burst, ctx: AsyncContext) -> None:
            await ctx.portal.send_text(burst.sender, "got: " + " | ".join(burst.texts))
            if "ask" in burst.texts:
                await ctx.expect("number", timeout=timedelta(hours=1), data={"n": 1})

        @router.step("number", filter=r"^\d+$", replies=True)
        async def on_number(event: InboundMessage, ctx: AsyncContext) -> None:
            data = ctx.conversation.data
            await ctx.portal.send_text(event.sender, f"number {event.text} (asked {data['n']})")

        @router.timeout("number")
        async def on_timeout(event: StepTimeout, ctx: AsyncContext) -> None:
            await ctx.portal.send_text(event.sender, f"too late for {event.step}")

    else:

        @router.message(coalesce=Window(quiet=HOUR, max_wait=2 * HOUR), replies=True)
        def on_burst_sync(burst: Burst, ctx: Context) -> None:
            ctx.portal.send_text(burst.sender, "got: " + " | ".join(burst.texts))
            if "ask" in burst.texts:
                ctx.expect("number", timeout=HOUR, data={"n": 1})

        @router.step("number", filter=r"^\d+$", replies=True)
        def on_number_sync(event: InboundMessage, ctx: Context) -> None:
            data = ctx.conversation.data
            ctx.portal.send_text(event.sender, f"number {event.text} (asked {data['n']})")

        @router.timeout("number")
        def on_timeout_sync(event: StepTimeout, ctx: Context) -> None:
            ctx.portal.send_text(event.sender, f"too late for {event.step}")

    @router.message(text="plain")
    async def plain(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.store.set("plain", event.text)

    return router


def test_a_burst_gets_one_reply_with_every_text_in_order(redis_url: str) -> None:
    with running_loop(redis_url, bot()) as loop:
        ids = [loop.inbound(t) for t in ("hi", "I have a problem", "with order 4521")]
        loop.work()
        assert sent(loop) == []  # nothing yet: the burst waits for its flush
        history = loop.history()
        assert [(m["messageId"], m["showTypingIndicator"]) for m in history["markReads"]] == [
            (i, False) for i in ids
        ]  # each marked read at once, without typing
        assert loop.r.hget(Keys().burst(ME, "bot:bot.<locals>.on_burst"), "n") == b"3"
        assert loop.r.zcard(SCHEDULED) == 1  # one flush timer for the conversation

        assert fire(loop) == 1
        loop.work()
        assert sent(loop) == ["got: hi | I have a problem | with order 4521"]
        marks = loop.history()["markReads"]
        assert (marks[-1]["messageId"], marks[-1]["showTypingIndicator"]) == (ids[-1], True)
        assert not loop.r.keys("wabahooks:burst:*")  # taken by the flush
        fire(loop)
        loop.work()
        assert sent(loop) == ["got: hi | I have a problem | with order 4521"]


def test_a_message_after_the_flush_fired_waits_behind_it_and_starts_a_new_burst(
    redis_url: str,
) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("one")
        loop.inbound("two")
        loop.work()
        fire(loop)  # the flush joins the chain now …
        loop.inbound("three")  # … so this message is chained behind it
        job_ids = loop.r.lrange(f"rq:queue:{MESSAGES}", 0, -1)
        assert len(job_ids) == 1  # the flush is queued; "three" is deferred behind it
        assert loop.r.zcard(f"rq:deferred:{MESSAGES}") == 1
        loop.work()
        assert sent(loop) == ["got: one | two"]
        fire(loop)
        loop.work()
        assert sent(loop) == ["got: one | two", "got: three"]


def test_a_retried_message_job_does_not_enter_the_burst_twice(redis_url: str) -> None:
    router = bot()
    failures: list[int] = []

    @router.message(text="again")
    async def flaky(event: InboundMessage, ctx: AsyncContext) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("first attempt fails")

    with running_loop(redis_url, router) as loop:
        loop.inbound("again")
        loop.work()  # appended, then the other handler fails: the job is retried
        assert fire(loop) == 2  # the retry, and the flush: chained behind the retry
        assert loop.r.zcard(f"rq:deferred:{MESSAGES}") == 1
        loop.work()
        assert sent(loop) == ["got: again"]  # once in the burst
        assert failures == [1]


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_step_takes_the_next_message_and_its_timeout_never_runs(
    redis_url: str, style: str
) -> None:
    with running_loop(redis_url, bot(style)) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()
        assert loop.r.hget(Keys().conversation(ME), "step") == b"number"
        assert loop.r.zcard(SCHEDULED) == 1  # its timeout, out of the chain
        loop.inbound("42")  # not held behind the timeout: answered now
        loop.work()
        assert sent(loop) == ["got: ask", "number 42 (asked 1)"]
        assert loop.r.zcard(SCHEDULED) == 0  # the answer dropped the timeout
        assert loop.r.hget(Keys().conversation(ME), "step") is None
        loop.inbound("43")  # no step pending: an ordinary message again (a burst)
        loop.work()
        fire(loop)
        loop.work()
        assert sent(loop)[-1] == "got: 43"


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_timeout_runs_once_and_then_the_answer_is_an_ordinary_message(
    redis_url: str, style: str
) -> None:
    with running_loop(redis_url, bot(style)) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()
        assert fire(loop) == 1  # the timeout
        loop.work()
        assert sent(loop) == ["got: ask", "too late for number"]
        loop.inbound("42")
        loop.work()
        fire(loop)
        loop.work()
        assert sent(loop) == ["got: ask", "too late for number", "got: 42"]


def test_an_answer_chained_before_the_firing_timeout_wins_and_the_timeout_does_nothing(
    redis_url: str,
) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()
        loop.inbound("7")  # queued, not yet run …
        assert fire(loop) == 1  # … and the timeout fires: it is chained behind the answer
        assert loop.r.zcard(f"rq:deferred:{MESSAGES}") == 1
        loop.work()
        assert sent(loop) == ["got: ask", "number 7 (asked 1)"]
        queue = Queue(MESSAGES, connection=loop.r, serializer=JSONSerializer)
        finished = queue.finished_job_registry.get_job_ids()
        descriptions = sorted(str(queue.fetch_job(i).description) for i in finished)  # type: ignore[union-attr]
        assert len(finished) == 4 and "timeout number" in descriptions  # ran: a no-op
        assert FailedJobRegistry(MESSAGES, connection=loop.r).count == 0


def test_a_bad_answer_passes_to_the_ordinary_handlers_and_the_step_stays(redis_url: str) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()
        loop.inbound("plain")  # fails the step's filter: on_mismatch="pass"
        loop.work()
        assert loop.r.hget("wabahooks:store:" + ME, "plain") == b'"plain"'
        loop.inbound("5")
        loop.work()
        assert sent(loop) == ["got: ask", "number 5 (asked 1)"]


def test_contacts_never_see_each_others_state(redis_url: str) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask", sender=ME)
        loop.inbound("hello", sender=OTHER)
        loop.work()
        fire(loop)
        loop.work()
        loop.inbound("12", sender=OTHER)  # no step for OTHER: a burst of its own
        loop.inbound("34", sender=ME)
        loop.work()
        fire(loop)
        loop.work()
        assert sent(loop, ME) == ["got: ask", "number 34 (asked 1)"]
        assert sent(loop, OTHER) == ["got: hello", "got: 12"]


def test_a_handover_cancels_the_pending_step(redis_url: str) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()

        async def cancel() -> object:
            client = aclient(loop)
            try:
                return await cancel_conversation(client, ME)
            finally:
                await client.aclose()

        cancelled = asyncio.run(cancel())
        assert cancelled is not None and cancelled["step"] == "number"  # type: ignore[index]
        assert asyncio.run(cancel()) is None  # nothing pending any more
        assert loop.r.zcard(SCHEDULED) == 0  # its timeout will not run
        loop.inbound("42")
        loop.work()
        assert sent(loop) == ["got: ask"]  # not a step answer: it waits in a burst


def test_forget_removes_the_conversation_and_its_bursts(redis_url: str) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()
        loop.inbound("plain")
        loop.inbound("more")
        loop.work()
        assert loop.r.exists(Keys().conversation(ME))
        (burst,) = loop.r.keys(f"wabahooks:burst:{ME}:*")
        month = 30 * 24 * 3600  # WABAHOOKS_STORE_TTL's default: both expire, as ctx.store does
        assert month - 60 < loop.r.ttl(Keys().conversation(ME)) <= month
        assert month - 60 < loop.r.ttl(burst) <= month
        gone = forget_contact(loop.r, ME)
        assert gone.counts["conversation step"] == 1 and gone.counts["burst"] == 1
        assert not loop.r.exists(Keys().conversation(ME))
        assert not loop.r.keys(f"wabahooks:burst:{ME}:*")


def test_a_flush_for_a_handler_no_longer_loaded_fails_with_its_burst_kept(
    redis_url: str,
) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("hi")
        loop.work()
    with running_loop(redis_url, Router("other")) as loop:
        fire(loop)
        loop.work()
        failed = FailedJobRegistry(MESSAGES, connection=loop.r, serializer=JSONSerializer)
        (job,) = failed.get_job_ids()
        result = Queue(MESSAGES, connection=loop.r, serializer=JSONSerializer).fetch_job(job)
        latest = result.latest_result() if result is not None else None
        assert latest is not None and "no loaded router has" in (latest.exc_string or "")
        assert loop.r.keys("wabahooks:burst:*")  # not taken: a requeue after the fix flushes it


def show(redis_url: str, *args: str) -> Result:
    env = {"REDIS_URL": redis_url, "WABA_WEBHOOK_SECRET": None, "WABAHOOKS_QUEUE_PREFIX": None}
    return CliRunner().invoke(main, ["conversation", "show", *args], env=env)


def test_conversation_show_prints_the_pending_step_and_the_burst(redis_url: str) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask")
        loop.work()
        fire(loop)
        loop.work()
        loop.inbound("plain")  # not a number: passes on, and joins a new burst
        loop.work()
        text = show(redis_url, ME)
        as_json = show(redis_url, ME, "--json")
    assert text.exit_code == 0, text.output
    assert f"{ME}: waiting for step 'number' (generation 1" in text.output
    assert '  data: {"n": 1}' in text.output
    assert "burst for bot:bot.<locals>.on_burst: 1 message(s)" in text.output
    assert "  - plain" in text.output
    state = json.loads(as_json.output)
    assert state["step"]["step"] == "number" and state["step"]["timeout_job_status"] == "scheduled"
    assert state["bursts"][0]["texts"] == ["plain"]
    assert state["bursts"][0]["flush_job_status"] == "scheduled"


def test_conversation_show_without_state_and_with_a_bad_number(redis_url: str) -> None:
    nothing = show(redis_url, OTHER)
    assert nothing.exit_code == 0
    assert nothing.output.strip() == f"{OTHER}: no pending step, no burst (generation 0)."
    bad = show(redis_url, "+44 abc")
    assert bad.exit_code == 2 and "PHONE" in bad.output


def test_only_the_execution_holding_its_job_writes_and_a_message_enters_once(
    r: BytesRedis, redis_url: str
) -> None:
    r.hset("rq:job:j1", mapping={"wh:holder": "e2", "status": "started", "origin": MESSAGES})
    message = message_record(inbound_text("hi"))
    window = Window(quiet=HOUR, max_wait=HOUR)

    async def main() -> list[bool]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            scripts = ConversationScripts(client, prefix="wabahooks:", ttl=60)
            stale = scripts.for_job(ExecutionToken("j1", "e1"), MESSAGES)
            with pytest.raises(Superseded):
                await stale.expect(ME, "x", timeout=HOUR, data=None, record=("h", "expect#1"))
            with pytest.raises(Superseded):
                await stale.append(ME, "h", window, message)
            with pytest.raises(Superseded):
                await stale.advance(ME, how="cancel", gen=None, record=("h", "cancel#1"))
            assert not await client.keys("wabahooks:*") and not await client.zcard(SCHEDULED)
            current = scripts.for_job(ExecutionToken("j1", "e2"), MESSAGES)
            # The holder, but the job was moved back to queued (RQ's requeue keeps the holder
            # field): the fence refuses it too.
            await client.hset("rq:job:j1", "status", "queued")
            with pytest.raises(Superseded):
                await current.append(ME, "h", window, message)
            await client.hset("rq:job:j1", "status", "started")
            return [await current.append(ME, "h", window, message) for _ in range(2)]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [True, False]  # the same message id enters once
    assert r.hget(Keys().burst(ME, "h"), "n") == b"1"
    assert r.zcard(SCHEDULED) == 1
    assert r.hexists("rq:job:j1", "wh:s:h:coalesce")  # recorded in the job's ledger


def test_a_flush_and_a_timeout_are_traced_as_children_of_the_jobs_that_made_them(
    redis_url: str,
    provider: TracerProvider,  # noqa: F811 - the fixture imported above
) -> None:
    with running_loop(redis_url, bot()) as loop:
        loop.inbound("ask")
        loop.inbound("more")
        loop.work()
        fire(loop)  # the flush
        loop.work()
        fire(loop)  # the step's timeout
        loop.work()
        assert sent(loop) == ["got: ask | more", "too late for number"]
    spans = finished(provider)
    consumers = {
        str((s.attributes or {}).get("wabahooks.kind")): s
        for s in spans
        if s.kind == SpanKind.CONSUMER
        and (s.attributes or {}).get("wabahooks.kind") in ("flush", "timeout")
    }
    messages = [
        s
        for s in spans
        if s.kind == SpanKind.CONSUMER and (s.attributes or {}).get("wabahooks.kind") == "message"
    ]
    first = min(messages, key=lambda s: s.start_time or 0)
    flush, timeout = consumers["flush"], consumers["timeout"]
    assert flush.parent is not None and flush.parent.span_id == first.context.span_id
    (asked,) = [s for s in spans if s.name == "handler bot:bot.<locals>.on_burst"]
    assert asked.context.trace_id == flush.context.trace_id
    assert timeout.parent is not None and timeout.parent.span_id == asked.context.span_id


def test_the_archive_files_a_flush_and_a_timeout_under_their_contact() -> None:
    # Their ledgers hold the burst's messages: forget must find them by the number.
    assert contact_of({"kind": "flush", "conversation": ME, "handler": "h"}) == ME
    assert contact_of({"kind": "timeout", "conversation": ME, "step": "s"}) == ME
    assert contact_of({"kind": "timeout", "conversation": "not a number"}) is None


def test_with_the_policy_a_timeout_handler_sees_the_window_and_the_opt_out(
    redis_url: str,
) -> None:
    router = Router("asker")

    @router.message(text="ask")
    async def ask(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.expect("number", timeout=timedelta(hours=1))

    @router.timeout("number")
    async def on_timeout(event: StepTimeout, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, f"window open: {ctx.window.open}")

    with running_loop(redis_url, router, config="[policy]\n") as loop:
        loop.inbound("ask")
        loop.work()
        assert fire(loop) == 1
        loop.work()
        assert sent(loop) == ["window open: True"]  # the contact wrote to ask

        loop.inbound("ask")
        loop.work()
        # Opted out while the step waits (not by a STOP message, which ends the step):
        # the timeout's reply is refused like any other send.
        asyncio.run(_opt_out(redis_url, ME))
        assert fire(loop) == 1
        loop.work()
        assert sent(loop) == ["window open: True"]
        [failed] = FailedJobRegistry(MESSAGES, connection=loop.r).get_job_ids()
        assert failed


async def _opt_out(redis_url: str, phone: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = PolicyStore(client, PolicyKeys("wabahooks:"))
        await store.set_suppressed(await store.load(phone), True, word="STOP", now=0)
    finally:
        await client.aclose()
