"""Retention: every key an event leaves in Redis expires after its configured TTL.

A real receiver takes the events (sent by the portal simulator), a real `wabahooks worker
--burst` process runs them, with small TTLs configured through the environment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from service.settings import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    DEFAULT_SENT_TTL,
    DEFAULT_STORE_TTL,
    ConfigError,
    Retention,
    Settings,
)
from service.sim.app import create_sim_app
from tests.support.bredis import BytesRedis
from tests.support.loop import sim_delivering_to
from tests.support.portal import API_KEY, drain, serve
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import WorkerProcess

ALICE, BOB = "447700900001", "447700900002"


def ttl(r: BytesRedis, key: str) -> int:
    value = r.ttl(key)
    assert isinstance(value, int)
    return value


def assert_expires(r: BytesRedis, key: str, configured: int, since: float) -> None:
    """``key`` exists and expires within ``configured`` seconds, less no more than the time
    passed since the test began (``since``: ``time.monotonic()``), however long that was."""
    assert r.exists(key), f"{key} is missing"
    least = configured - math.ceil(time.monotonic() - since) - 1  # TTL is in whole seconds
    assert least <= ttl(r, key) <= configured, f"{key}: TTL {ttl(r, key)}"


@pytest.fixture
def sim_for(
    start_receiver: Callable[..., Receiver],
) -> Iterator[Callable[..., tuple[str, httpx.Client]]]:
    """Start a receiver (with ``Settings`` overrides) and the simulator delivering to it."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(**overrides: object) -> tuple[str, httpx.Client]:
            receiver = start_receiver(**overrides)
            config = sim_delivering_to(receiver.webhook_url, SECRET)
            url = stack.enter_context(serve(create_sim_app(config)))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=10))
            return url, client

        yield start


def test_every_key_of_an_events_journey_gets_its_configured_ttl(
    sim_for: Callable[..., tuple[str, httpx.Client]],
    start_worker: Callable[..., WorkerProcess],
    r: BytesRedis,
) -> None:
    started = time.monotonic()
    sim_url, sim = sim_for(dedupe_ttl=300, retention=Retention(result_ttl=120, failure_ttl=240))
    message_ids = []
    for sender, text in [(ALICE, "hello"), (BOB, "bad")]:
        inbound = {"from": sender, "name": "Ana", "type": "text", "content": text}
        message_ids.append(sim.post("/sim/inbound", json=inbound).json()["messageId"])
    drain(sim)
    ok_raw, bad_raw = (r.get(f"wabahooks:claim:message:{m}") for m in message_ids)
    assert isinstance(ok_raw, bytes) and isinstance(bad_raw, bytes)
    ok_id, bad_id = ok_raw.decode(), bad_raw.decode()
    # Written by the receiver: claims and conversation tails expire with the dedupe window;
    # a queued job has no expiry yet (it must wait for a worker however long that takes).
    for key in r.scan_iter("wabahooks:claim:*"):
        assert_expires(r, key.decode(), 300, started)
    assert_expires(r, f"wabahooks:tail:message:{ALICE}", 300, started)
    assert ttl(r, f"rq:job:{ok_id}") == -1

    worker = start_worker(
        "--queue",
        "messages",
        "--burst",
        WABAHOOKS_HANDLERS="tests.retention_handlers:kept",
        WABA_API_URL=sim_url,
        WABA_API_KEY=API_KEY,
        WABAHOOKS_STORE_TTL="180",
        WABAHOOKS_SENT_TTL="200",
    )
    assert worker.proc.wait(timeout=60) == 0, worker.output()

    finished = Job.fetch(ok_id, connection=r, serializer=JSONSerializer)
    assert finished.get_status() == "finished"
    assert_expires(r, f"rq:job:{ok_id}", 120, started)  # the job, its ledger fields included
    assert_expires(r, f"rq:results:{ok_id}", 120, started)
    failed = Job.fetch(bad_id, connection=r, serializer=JSONSerializer)
    assert failed.get_status() == "failed"
    assert_expires(r, f"rq:job:{bad_id}", 240, started)
    (score,) = (s for m, s in r.zrange("rq:failed:wabahooks:messages", 0, -1, withscores=True))
    assert score - r.time()[0] <= 240  # RQ drops it from the failed registry then too
    assert_expires(r, f"wabahooks:store:{ALICE}", 180, started)
    assert_expires(r, f"wabahooks:sent:{ALICE}", 200, started)


def test_retention_settings_are_read_from_the_environment() -> None:
    env = {
        "WABA_WEBHOOK_SECRET": "s",
        "WABAHOOKS_RESULT_TTL": "0",
        "WABAHOOKS_FAILURE_TTL": "86400",
        "WABAHOOKS_STORE_TTL": "3600",
        "WABAHOOKS_SENT_TTL": "7200",
    }

    assert Settings.from_env(env).retention == Retention(0, 86400, 3600, 7200)
    assert Settings.from_env({"WABA_WEBHOOK_SECRET": "s"}).retention == Retention(
        DEFAULT_RESULT_TTL, DEFAULT_FAILURE_TTL, DEFAULT_STORE_TTL, DEFAULT_SENT_TTL
    )
    assert DEFAULT_FAILURE_TTL == 14 * 24 * 3600  # not RQ's year: failed payloads hold PII
    with pytest.raises(ConfigError, match="WABAHOOKS_FAILURE_TTL must be at least 1"):
        Retention.from_env({"WABAHOOKS_FAILURE_TTL": "0"})
    with pytest.raises(ConfigError, match="WABAHOOKS_STORE_TTL must be a whole number"):
        Retention.from_env({"WABAHOOKS_STORE_TTL": "30d"})
