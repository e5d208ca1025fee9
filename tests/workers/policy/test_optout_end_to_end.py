"""Opt-out end to end: simulator → receiver → real worker engine → simulator."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.loop import running_loop
from tests.workers.test_end_to_end import sent_texts
from workers import Context, InboundMessage, Router
from workers.policy.config import START_REPLY, STOP_REPLY

CONFIG = """
[handlers.auto_reply]
default = "Thanks, we got it."
cooldown = 0

[policy]
"""


def failed_jobs(loop: object) -> list[str]:
    queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)  # type: ignore[attr-defined]
    return list(queue.failed_job_registry.get_job_ids())


def test_stop_confirms_once_suppresses_and_start_restores(redis_url: str) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("hello")
        loop.work()
        loop.inbound("  Stop ")
        loop.work()
        loop.inbound("STOP")  # already out: no second confirmation
        loop.work()
        loop.inbound("anything")  # no automated reply to an opted-out contact
        loop.work()
        during = sent_texts(loop.history())
        loop.inbound("start")
        loop.work()
        loop.inbound("hi again")
        loop.work()
        after = sent_texts(loop.history())
        failed = failed_jobs(loop)

    assert during == ["Thanks, we got it.", STOP_REPLY]
    assert after == during + [START_REPLY, "Thanks, we got it."]
    assert failed == []


def test_the_confirmation_is_sent_once_when_the_job_is_retried(redis_url: str) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("hello")
        loop.work()
        loop.chaos(error_after_send_next=1)  # the confirmation goes out, answered 500
        loop.inbound("unsubscribe")
        loop.work()
        scheduled = loop.run_scheduled()
        loop.work()
        texts = sent_texts(loop.history())

    assert scheduled == 1
    assert texts == ["Thanks, we got it.", STOP_REPLY]


def test_send_text_refuses_an_opted_out_contact_unless_transactional(redis_url: str) -> None:
    shop = Router("shop")

    @shop.message(text="promo")
    def promo(event: InboundMessage, ctx: Context) -> None:
        ctx.portal.send_text(event.sender, "50% off today!")

    @shop.message(text="receipt")
    def receipt(event: InboundMessage, ctx: Context) -> None:
        ctx.portal.send_text(event.sender, "Your receipt: #42", transactional=True)

    with running_loop(redis_url, shop, config="[policy]\n") as loop:
        loop.inbound("stop")
        loop.work()
        loop.inbound("promo")
        loop.work()
        loop.inbound("receipt")
        loop.work()
        texts = sent_texts(loop.history())
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        failed = [queue.fetch_job(j) for j in queue.failed_job_registry.get_job_ids()]
        result = failed[0].latest_result() if failed and failed[0] else None

    assert texts == [STOP_REPLY, "Your receipt: #42"]
    assert len(failed) == 1
    assert result is not None and "opted out (STOP): send refused" in (result.exc_string or "")
    assert "transactional=True" in (result.exc_string or "")


@pytest.mark.parametrize("word", ["BAJA", "Arrêt", "stopp", "désabonner"])
def test_other_languages_stop_too(redis_url: str, word: str) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("hello")
        loop.work()
        loop.inbound(word)
        loop.work()
        loop.inbound("more")
        loop.work()
        texts = sent_texts(loop.history())

    assert texts == ["Thanks, we got it.", STOP_REPLY]
