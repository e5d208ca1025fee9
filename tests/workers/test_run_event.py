"""``run_event``, the engine's entry point, on real Valkey: outcomes, retries, the execution
check, and async and sync handlers side by side on one loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest
import redis
import redis.asyncio

from service.portal import InvalidPhoneNumber
from tests.support.bredis import BytesRedis
from workers import AsyncContext, Context, InboundMessage, Permanent, RetryPolicy, Router
from workers.entry import Done, Failed, RetryLater, run_event
from workers.execution import HOLDER_FIELD, ExecutionToken
from workers.loading import registrations
from workers.runtime import Runtime
from workers.testing import RecordingPortal, inbound_text

PHONE = "919876543210"


def job_kwargs(event: InboundMessage, version: int = 1) -> dict[str, Any]:
    return {
        "envelope": event.envelope,
        "event_key": event.event_key,
        "kind": "message",
        "conversation": event.sender,
        "received_at": "2025-12-01T10:30:00Z",
        "version": version,
    }


def run_job(
    redis_url: str,
    router: Router,
    event: InboundMessage,
    *,
    attempt: int = 1,
    holder: str = "e1",
    portal: RecordingPortal | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Done | RetryLater | Failed:
    """One execution ``e1`` of job ``j1`` (the engine wrote ``holder`` into its hash)."""
    redis.Redis.from_url(redis_url).hset(
        "rq:job:j1", mapping={HOLDER_FIELD: holder, "status": "started"}
    )

    async def main() -> Done | RetryLater | Failed:
        runtime = Runtime(
            redis=redis.asyncio.Redis.from_url(redis_url),
            portal=portal or RecordingPortal(),
            registrations=registrations([router]),
            retry=RetryPolicy(max_attempts=3, base=1, cap=1),
        )
        try:
            return await run_event(
                runtime,
                job_id="j1",
                queue="wabahooks:messages",
                kwargs=kwargs or job_kwargs(event),
                ledger_fields=None,
                attempt=attempt,
                token=ExecutionToken("j1", "e1"),
            )
        finally:
            await runtime.aclose()

    return asyncio.run(main())


def test_async_and_sync_handlers_run_in_order_sync_ones_off_the_loop(
    redis_url: str, r: BytesRedis
) -> None:
    router = Router("mixed")
    threads: dict[str, str] = {}

    @router.message()
    async def first(event: InboundMessage, ctx: AsyncContext) -> None:
        threads["async"] = threading.current_thread().name
        await ctx.portal.send_text(event.sender, "one")
        await ctx.store.set("seen", 1)

    @router.message()
    def second(event: InboundMessage, ctx: Context) -> None:
        threads["sync"] = threading.current_thread().name
        ctx.portal.send_text(event.sender, f"two after {ctx.store.get('seen')}")
        ctx.portal.once("noted", lambda: {"count": ctx.store.get("seen")})

    portal = RecordingPortal()
    outcome = run_job(redis_url, router, inbound_text("hi"), portal=portal)

    assert outcome == Done()
    assert portal.sent == [(PHONE, "one"), (PHONE, "two after 1")]
    assert threads["async"] == "MainThread" and threads["sync"].startswith("wabahooks-sync")
    fields = {k.decode(): v for k, v in r.hgetall("rq:job:j1").items()}
    assert any(k.startswith("wh:h:mixed:") and k.endswith(".first") for k in fields)
    [noted] = [v for k, v in fields.items() if k.endswith("second:once:noted")]
    assert b'"count": 1' in noted


def test_a_failing_handler_retries_later_then_fails_when_exhausted(redis_url: str) -> None:
    router = Router("flaky")

    @router.message()
    async def flaky(event: InboundMessage, ctx: AsyncContext) -> None:
        raise RuntimeError("downstream unavailable")

    event = inbound_text("hi")
    retry = run_job(redis_url, router, event, attempt=1)
    last = run_job(redis_url, router, event, attempt=3)

    assert isinstance(retry, RetryLater) and retry.handler.endswith(".flaky")
    assert 1 <= retry.delay and "downstream unavailable" in retry.error
    assert isinstance(last, Failed) and last.reason == "exhausted"
    assert "RuntimeError: downstream unavailable" in last.error


@pytest.mark.parametrize("error", [Permanent("no"), InvalidPhoneNumber("send_text", "bad")])
def test_an_error_retrying_cannot_fix_fails_at_once(redis_url: str, error: Exception) -> None:
    router = Router("refused")

    @router.message()
    def refused(event: InboundMessage, ctx: Context) -> None:
        raise error

    outcome = run_job(redis_url, router, inbound_text("hi"))

    assert isinstance(outcome, Failed) and outcome.reason == "permanent"
    assert type(error).__name__ in outcome.error


def test_a_newer_job_format_is_unsupported(redis_url: str) -> None:
    # Format 2 (flush and timeout jobs) is this worker's; 3 is not.
    event = inbound_text("hi")
    outcome = run_job(redis_url, Router("none"), event, kwargs=job_kwargs(event, version=3))
    assert isinstance(outcome, Failed) and outcome.reason == "unsupported"
    assert "upgrade the workers" in outcome.error


def test_an_unknown_job_kind_is_refused_clearly(redis_url: str) -> None:
    event = inbound_text("hi")
    kwargs = {**job_kwargs(event), "kind": "handover"}
    outcome = run_job(redis_url, Router("none"), event, kwargs=kwargs)
    assert isinstance(outcome, Failed) and outcome.reason == "unsupported"
    assert "kind 'handover'" in outcome.error and "upgrade the workers" in outcome.error


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_superseded_execution_sends_nothing_and_says_so(redis_url: str, style: str) -> None:
    router = Router("late")
    if style == "async":

        @router.message()
        async def reply(event: InboundMessage, ctx: AsyncContext) -> None:
            await ctx.portal.send_text(event.sender, "late")

    else:

        @router.message()
        def reply_sync(event: InboundMessage, ctx: Context) -> None:
            ctx.portal.send_text(event.sender, "late")

    portal = RecordingPortal()
    outcome = run_job(redis_url, router, inbound_text("hi"), holder="e2", portal=portal)

    assert isinstance(outcome, Failed) and outcome.reason == "superseded"
    assert portal.sent == []


def test_an_unreadable_job_fails_at_once(redis_url: str) -> None:
    event = inbound_text("hi")
    kwargs = {k: v for k, v in job_kwargs(event).items() if k != "envelope"}
    outcome = run_job(redis_url, Router("none"), event, kwargs=kwargs)
    assert isinstance(outcome, Failed) and outcome.reason == "permanent"
