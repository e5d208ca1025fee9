"""Conversations with real worker processes, the receiver and the portal simulator.

Bursts, steps and timeouts across several `wabahooks worker` processes, a SIGKILL in the
middle of a burst or of its flush, and a restart between a question and its answer, with
async handlers (and plain ``def`` ones for a burst and a step). The handlers are
``tests/workers/conversation_handlers.py``, whose windows and step timeout are hours long:
a test makes a flush or a timeout due when it wants it (:func:`fire`), the workers' own
promoter moves it onto the queue, and the test waits for what follows, never for a time.
"""

from __future__ import annotations

import signal

import httpx
import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from tests.support.bredis import BytesRedis
from tests.support.portal import drain
from tests.support.receiver import Receiver
from tests.support.stack import MESSAGES, portal_env, sent, simulator, workers
from tests.support.workers import expire_leases, make_due, wait_for

HANDLERS = "tests.workers.conversation_handlers:bot"
SYNC_HANDLERS = "tests.workers.conversation_handlers:bot_sync"
ANA, BEN = "447700900001", "447700900002"


def say(sim: httpx.Client, phone: str, *texts: str) -> None:
    """The contact writes each text, in order (each delivered before the next is sent)."""
    for text in texts:
        body = {"from": phone, "name": "Test", "type": "text", "content": text}
        sim.post("/sim/inbound", json=body).raise_for_status()
        drain(sim)


def fire(r: BytesRedis) -> None:
    """Make the pending flushes and step timeouts due now (at least one must be pending):
    the workers promote them within a second."""
    assert make_due(r, MESSAGES), "no flush or timeout is scheduled"


def step_pending(r: BytesRedis, phone: str) -> bool:
    """Whether ``phone`` has a pending step (its timeout is scheduled in the same step)."""
    return bool(r.hexists(f"wabahooks:conv:{phone}", "step"))


def finished(r: BytesRedis, count: int) -> bool:
    return bool(Queue(MESSAGES, connection=r).finished_job_registry.count == count)


def no_failures(r: BytesRedis) -> bool:
    return FailedJobRegistry(MESSAGES, connection=r, serializer=JSONSerializer).count == 0


@pytest.mark.parametrize("handlers", [HANDLERS, SYNC_HANDLERS])
def test_a_three_message_burst_gets_one_reply_with_all_three_texts(
    receiver: Receiver, r: BytesRedis, redis_url: str, handlers: str
) -> None:
    with simulator(receiver) as sim:
        with workers(2, portal_env(sim, redis_url, handlers)):
            say(sim, ANA, "hi", "I have a problem", "with order 4521")
            wait_for(lambda: finished(r, 3), "the three messages gathered")
            fire(r)
            wait_for(lambda: sent(sim, ANA), "the reply")
            wait_for(lambda: finished(r, 4), "three messages and one flush finished")
        assert sent(sim, ANA) == ["got: hi | I have a problem | with order 4521"]
        assert no_failures(r)


def test_a_worker_killed_mid_burst_loses_nothing(
    receiver: Receiver, r: BytesRedis, redis_url: str
) -> None:
    with simulator(receiver) as sim:
        env = portal_env(sim, redis_url, HANDLERS)
        with workers(1, env) as (doomed,):
            say(sim, ANA, "one", "two")
            wait_for(lambda: finished(r, 2), "both messages gathered")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        assert sent(sim, ANA) == []  # the flush was still due when the worker died
        with workers(1, env):
            say(sim, ANA, "three")
            wait_for(lambda: finished(r, 3), "the third message gathered")
            fire(r)
            wait_for(lambda: finished(r, 4), "the flush after the restart")
        assert sent(sim, ANA) == ["got: one | two | three"]
        assert no_failures(r)


def test_a_flush_killed_after_its_reply_is_redriven_without_a_second_reply(
    receiver: Receiver, r: BytesRedis, redis_url: str
) -> None:
    with simulator(receiver) as sim:
        env = portal_env(sim, redis_url, HANDLERS)
        with workers(1, env) as (doomed,):
            say(sim, ANA, "hang", "on")
            wait_for(lambda: finished(r, 2), "both messages gathered")
            fire(r)
            wait_for(lambda: r.hexists(f"wabahooks:store:{ANA}", "hung"), "the flush to hang")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        expire_leases(r, MESSAGES)  # the dead worker's lease ends now, not in real time
        with workers(1, env):  # re-drives the flush
            wait_for(lambda: finished(r, 3), "the re-driven flush")
        assert sent(sim, ANA) == ["got: hang | on"]
        assert r.llen(f"test:flushes:{ANA}") == 2  # it did run twice, on the same burst
        assert no_failures(r)


@pytest.mark.parametrize("handlers", [HANDLERS, SYNC_HANDLERS])
def test_a_step_is_answered_after_a_worker_restart(
    receiver: Receiver, r: BytesRedis, redis_url: str, handlers: str
) -> None:
    with simulator(receiver) as sim:
        env = portal_env(sim, redis_url, handlers)
        with workers(1, env):
            say(sim, ANA, "ask")
            wait_for(lambda: finished(r, 1), "the message gathered")
            fire(r)
            wait_for(lambda: step_pending(r, ANA), "the pending step")
        with workers(2, env):  # the first worker stopped; new ones take over
            say(sim, ANA, "42")
            wait_for(lambda: len(sent(sim, ANA)) == 2, "the answer's reply")
        assert sent(sim, ANA) == ["got: ask", "answer: 42 to ask"]
        assert r.zcard(f"rq:scheduled:{MESSAGES}") == 0  # the timeout was dropped
        assert no_failures(r)


def test_a_timeout_fires_once_across_three_workers(
    receiver: Receiver, r: BytesRedis, redis_url: str
) -> None:
    with simulator(receiver) as sim:
        with workers(3, portal_env(sim, redis_url, HANDLERS)):
            say(sim, ANA, "ask")
            wait_for(lambda: finished(r, 1), "the message gathered")
            fire(r)
            wait_for(lambda: step_pending(r, ANA), "the pending step")
            wait_for(lambda: finished(r, 2), "the flush finished")
            fire(r)  # the step's timeout: each of the three workers may promote it
            wait_for(lambda: len(sent(sim, ANA)) == 2, "the timeout's reply")
            wait_for(lambda: finished(r, 3), "message, flush and timeout finished")
            say(sim, ANA, "late")  # after the timeout: an ordinary message (a new burst)
            wait_for(lambda: finished(r, 4), "the late message gathered")
            fire(r)
            wait_for(lambda: finished(r, 5), "the late message's flush")
        assert sent(sim, ANA) == ["got: ask", "timed out", "got: late"]
        assert r.lrange(f"test:timeouts:{ANA}", 0, -1) == [b"answer"]
        assert no_failures(r)


def test_two_contacts_interleaved_never_see_each_others_state(
    receiver: Receiver, r: BytesRedis, redis_url: str
) -> None:
    with simulator(receiver) as sim:
        with workers(2, portal_env(sim, redis_url, HANDLERS)):
            for a, b in (("ask", "ask"), ("from ana", "from ben")):
                say(sim, ANA, a)
                say(sim, BEN, b)
            wait_for(lambda: finished(r, 4), "the four messages gathered")
            fire(r)
            wait_for(lambda: step_pending(r, ANA) and step_pending(r, BEN), "both steps")
            say(sim, BEN, "2")
            say(sim, ANA, "1")
            wait_for(lambda: len(sent(sim, ANA)) == 2 and len(sent(sim, BEN)) == 2, "answers")
        assert sent(sim, ANA) == ["got: ask | from ana", "answer: 1 to ask | from ana"]
        assert sent(sim, BEN) == ["got: ask | from ben", "answer: 2 to ask | from ben"]
        assert no_failures(r)
