"""Real worker processes end to end: order under concurrency, kills mid-send, both handler styles.

The receiver (uvicorn, in a thread) queues signed webhooks; `wabahooks worker` processes run
the handlers of ``tests/workers/process_handlers.py``, which reply through the portal
simulator (with latency, so many sends are in flight at once).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from tests.support.bredis import BytesRedis
from tests.support.portal import drain
from tests.support.receiver import Receiver
from tests.support.stack import MESSAGES, portal_env, sent, simulator, workers
from tests.support.workers import expire_leases, wait_for


def write(sim: httpx.Client, texts: dict[str, str]) -> None:
    """Each contact writes one message (inside the 24-hour window from then on); return once
    the simulator has delivered them all, so each contact's messages arrive in order."""
    for phone, text in texts.items():
        body = {"from": phone, "name": "Test", "type": "text", "content": text}
        sim.post("/sim/inbound", json=body).raise_for_status()
    drain(sim)


def calls(r: BytesRedis, phone: str) -> list[str]:
    return [t.decode() for t in r.lrange(f"test:calls:{phone}", 0, -1)]


def handled(r: BytesRedis, phone: str) -> list[str]:
    """The contact's events in the order its handler ran them, each once: a handler runs at
    least once (a send whose answer was lost, e.g. to a connection reset, retries the event:
    it runs again when due, still ahead of the contact's next event), its sends exactly once."""
    runs = calls(r, phone)
    return [text for n, text in enumerate(runs) if n == 0 or runs[n - 1] != text]


def test_fifty_contacts_keep_their_order_across_three_concurrent_workers(
    receiver: Receiver, r: BytesRedis, redis_url: str
) -> None:
    contacts = [f"4477009{n:05d}" for n in range(50)]
    with simulator(receiver, latency=0.02) as sim:
        env = portal_env(sim, redis_url, "tests.workers.process_handlers:chat")
        with workers(3, env, "--concurrency", "32"):
            for m in range(20):  # interleaved arrival, as a campaign's answers come in
                write(sim, {phone: f"m{m}" for phone in contacts})
            wait_for(
                lambda: all(len(handled(r, p)) == 20 for p in contacts),
                "every event handled",
                timeout=120,
            )
            wait_for(
                lambda: Queue(MESSAGES, connection=r).finished_job_registry.count == 1000,
                "every job finished",
                timeout=60,
            )
        texts = [f"m{m}" for m in range(20)]
        for phone in contacts:
            assert handled(r, phone) == texts  # each contact's events, in arrival order
            assert sent(sim, phone) == [f"re: {t}" for t in texts]  # one reply per event


def test_sigkill_with_sends_in_flight_then_the_survivor_replies_to_everything_once(
    receiver: Receiver, r: BytesRedis, redis_url: str
) -> None:
    contacts = [f"4477008{n:05d}" for n in range(20)]
    # Each send is carried out, then answered 5 s later: the kill lands in between for many
    # of them (the portal accepted the send, the ledger has no record of it). A contact's
    # three sends take 15 s at least, so jobs are still started when the kill comes unless
    # this process stalls that long between seeing the first send and killing.
    with simulator(receiver, hold_after_send=5.0) as sim:
        env = portal_env(sim, redis_url, "tests.workers.process_handlers:chat")
        with workers(1, env, "--concurrency", "50") as (doomed,):
            for m in range(3):
                write(sim, {phone: f"m{m}" for phone in contacts})
            wait_for(lambda: len(sent(sim, contacts[0])) >= 1, "sends to be in flight")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        assert r.zcard(f"rq:wip:{MESSAGES}") > 0  # jobs left started by the dead worker
        expire_leases(r, MESSAGES)  # as if it died long ago: no waiting for its leases
        sim.put("/sim/chaos", json={"hold_after_send": 0}).raise_for_status()

        with workers(1, env, "--concurrency", "50"):  # no command, no requeue: it just runs
            wait_for(
                lambda: Queue(MESSAGES, connection=r).finished_job_registry.count == 60,
                "every job finished after the re-drive",
                timeout=90,
            )
        for phone in contacts:
            assert sent(sim, phone) == ["re: m0", "re: m1", "re: m2"]
        assert FailedJobRegistry(MESSAGES, connection=r, serializer=JSONSerializer).count == 0


@pytest.mark.parametrize("handlers", ["chat", "chat_sync"])
def test_async_and_sync_handlers_reply_alike(
    receiver: Receiver, r: BytesRedis, redis_url: str, handlers: str
) -> None:
    with simulator(receiver, latency=0.05) as sim:
        env = portal_env(sim, redis_url, f"tests.workers.process_handlers:{handlers}")
        with workers(1, env, "--concurrency", "8"):
            write(sim, {f"44770070{n:04d}": "hello" for n in range(10)})
            wait_for(
                lambda: Queue(MESSAGES, connection=r).finished_job_registry.count == 10,
                "every job finished",
            )
        prefix = "re (sync)" if handlers == "chat_sync" else "re"
        for n in range(10):
            assert sent(sim, f"44770070{n:04d}") == [f"{prefix}: hello"]


def test_a_worker_killed_after_the_send_does_not_send_it_again(
    start_receiver: Callable[..., Receiver], r: BytesRedis, redis_url: str
) -> None:
    receiver = start_receiver()
    with simulator(receiver) as sim:
        env = portal_env(sim, redis_url, "tests.workers.process_handlers:crash")
        with workers(1, env) as (worker,):
            sim.post(
                "/sim/inbound",
                json={"from": "919876543210", "name": "Ana", "type": "text", "content": "refund?"},
            ).raise_for_status()
            wait_for(lambda: sent(sim, "919876543210") == ["Got it: refund?"], "the reply")
            wait_for(
                lambda: r.hexists("wabahooks:store:919876543210", "hung"), "the handler to hang"
            )
            worker.kill()  # SIGKILL: no cleanup, the job is left started
            worker.wait()
        expire_leases(r, MESSAGES)  # its lease ends now rather than in real time

        with workers(1, env):  # re-driven by the next worker, on its own
            queue = Queue(MESSAGES, connection=r, serializer=JSONSerializer)
            wait_for(lambda: queue.finished_job_registry.count == 1, "the re-drive")

        assert sent(sim, "919876543210") == ["Got it: refund?"]
