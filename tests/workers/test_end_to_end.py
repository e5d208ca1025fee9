"""The whole loop: the simulator's webhooks → receiver → RQ → handlers → the simulator's API."""

from __future__ import annotations

from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from tests.support.loop import running_loop
from tests.workers.example_handlers import router
from workers import Context, InboundMessage, Permanent, Router


def sent_texts(history: dict[str, object]) -> list[str]:
    return [m["message"] for m in history["sent"]]  # type: ignore[attr-defined]


def test_an_inbound_message_gets_exactly_one_reply_and_one_mark_read(redis_url: str) -> None:
    with running_loop(redis_url, router) as loop:
        message_id = loop.inbound("hello there")
        loop.work()
        loop.work()  # nothing left: running again changes nothing

        history = loop.history()

    assert sent_texts(history) == ["You said: hello there"]
    marks = history["markReads"]
    assert [(m["messageId"], m["showTypingIndicator"]) for m in marks] == [(message_id, True)]


def test_a_send_answered_500_after_acceptance_is_not_sent_twice(redis_url: str) -> None:
    with running_loop(redis_url, router) as loop:
        loop.chaos(error_after_send_next=1)
        loop.inbound("where is my order")
        loop.work()  # the send is carried out, answered 500: outcome unknown → Retry
        scheduled = loop.run_scheduled()
        loop.work()  # the retry finds the message in the conversation: not sent again

        history = loop.history()
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        finished = queue.finished_job_registry.get_job_ids()

    assert scheduled == 1
    assert sent_texts(history) == ["You said: where is my order"]
    assert len(finished) == 1


def test_duplicate_deliveries_make_one_job_and_one_reply(redis_url: str) -> None:
    with running_loop(redis_url, router) as loop:
        loop.chaos(duplicate_rate=1.0)
        loop.inbound("hi")
        loop.work()
        history = loop.history()
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        message_jobs = queue.finished_job_registry.get_job_ids()
        deliveries = [d for d in history["deliveries"] if d["event"] == "message"]

    assert len(deliveries) >= 2  # the simulator did deliver it twice
    assert len(message_jobs) == 1
    assert sent_texts(history) == ["You said: hi"]


def test_a_failing_handler_holds_the_conversation_until_it_succeeds(redis_url: str) -> None:
    with running_loop(redis_url, router) as loop:
        loop.chaos(server_error_next=100)  # every portal call fails with 500 for now
        loop.inbound("first")
        loop.inbound("second")
        loop.work()
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        held = [
            job.get_status()
            for job in map(queue.fetch_job, queue.deferred_job_registry.get_job_ids())
            if job is not None
        ]
        loop.chaos(server_error_next=0)
        loop.run_scheduled()
        loop.work()
        history = loop.history()

    assert held == [JobStatus.DEFERRED]  # "second" waits while "first" is being retried
    assert sent_texts(history) == ["You said: first", "You said: second"]


def test_a_permanent_failure_fails_at_once_and_releases_the_conversation(redis_url: str) -> None:
    strict = Router("strict")

    @strict.message(text="boom")
    def refuse(event: InboundMessage, ctx: Context) -> None:
        raise Permanent("cannot handle boom")

    with running_loop(redis_url, strict, router) as loop:
        loop.inbound("boom")
        loop.inbound("after")
        loop.work()
        history = loop.history()
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        failed = [queue.fetch_job(j) for j in queue.failed_job_registry.get_job_ids()]
        result = failed[0].latest_result() if failed and failed[0] else None
        scheduled = loop.run_scheduled()

    assert scheduled == 0  # not retried
    assert len(failed) == 1 and failed[0] is not None
    assert result is not None and "cannot handle boom" in (result.exc_string or "")
    assert sent_texts(history) == ["You said: after"]
