"""Operator actions never strand a chain (issue 20): `rq empty`, rq-dashboard's Delete and
Cancel, `Job.delete()` of a contact's head job, and an interrupted compaction. The workers'
sweep (``RQState.sweep``, run by every worker every ~10 s) releases the contact's later events,
which then run in order; the test calls the sweep itself rather than waiting for it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.identity import classify
from service.intake import Intake
from service.jobs import build_job
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.workers import expire_leases
from workers.rqstate import Ending, RQState, StartedJob

QUEUE = "wabahooks:messages"
PHONE = "919876543210"
T = TypeVar("T")


def run(url: str, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def state(client: aioredis.Redis) -> RQState:
    return RQState(client, QUEUE, worker_name="w", lease=30, max_attempts=5)


def intake(url: str, text: str, phone: str = PHONE) -> str:
    async def body(client: aioredis.Redis) -> str:
        envelope = payloads.message(text=text, sender=phone)
        classified = classify(envelope)
        job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
        result = await Intake(client, prefix="wabahooks:", dedupe_ttl=60, deadline=5.0).submit(
            classified, job
        )
        return result.job_id

    return run(url, body)


def start(url: str) -> list[StartedJob]:
    return run(url, lambda c: state(c).start([uuid.uuid4().hex for _ in range(4)]))


def sweep(url: str) -> list[str]:
    return run(url, lambda c: state(c).sweep())


def drain_in_order(url: str) -> list[str]:
    """Start and finish one job at a time until none is left; the ids in the order they ran."""
    ran: list[str] = []
    while jobs := start(url):
        assert len(jobs) == 1, "a contact's events ran side by side"
        ran.append(jobs[0].id)
        assert run(url, lambda c: state(c).finish([Ending(jobs[0], "done")])) == ["ok"]
    return ran


def status(r: BytesRedis, job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(job_id, connection=r, serializer=JSONSerializer).get_status()
    except Exception:
        return None


@pytest.mark.parametrize("action", ["rq empty", "Job.delete", "Job.cancel"])
def test_a_contact_s_later_events_are_released_after_its_head_job_is_removed(
    redis_url: str, r: BytesRedis, action: str
) -> None:
    head = intake(redis_url, "one")
    later = [intake(redis_url, text) for text in ("two", "three")]
    assert status(r, later[0]) == JobStatus.DEFERRED
    job = Job.fetch(head, connection=r, serializer=JSONSerializer)
    if action == "rq empty":
        Queue(QUEUE, connection=r, serializer=JSONSerializer).empty()
    elif action == "Job.delete":
        job.delete()  # rq-dashboard's Delete
    else:
        job.cancel()  # rq-dashboard's Cancel: releases nothing
    assert start(redis_url) == []  # stranded, until the sweep

    posted_after = intake(redis_url, "four")  # chains behind the stranded ones
    assert sweep(redis_url) == [later[0]]
    assert drain_in_order(redis_url) == [*later, posted_after]
    assert r.zcard(f"rq:deferred:{QUEUE}") == 0
    assert r.hget(f"{QUEUE}:repairs", "released") == b"1"


def test_a_sweep_leaves_events_whose_predecessor_still_runs(redis_url: str, r: BytesRedis) -> None:
    intake(redis_url, "one")
    second = intake(redis_url, "two")
    (running,) = start(redis_url)
    assert sweep(redis_url) == []
    assert status(r, second) == JobStatus.DEFERRED
    assert run(redis_url, lambda c: state(c).finish([Ending(running, "done")])) == ["ok"]
    assert drain_in_order(redis_url) == [second]


def test_a_suspect_waiting_for_the_quarantine_slot_is_left_to_the_slot(
    redis_url: str, r: BytesRedis
) -> None:
    phones = (PHONE, "919876543211")
    for phone in phones:
        intake(redis_url, "one", phone)
    seconds = [intake(redis_url, "two", phone) for phone in phones]  # chained behind "one"
    firsts = start(redis_url)
    assert run(redis_url, lambda c: state(c).finish([Ending(j, "done") for j in firsts])) == [
        "ok",
        "ok",
    ]
    dead = run(
        redis_url,
        lambda c: RQState(c, QUEUE, worker_name="dead", lease=30, max_attempts=5).start(["a", "b"]),
    )
    assert sorted(j.id for j in dead) == sorted(seconds)
    expire_leases(r, QUEUE)
    run(redis_url, lambda c: state(c).redrive())  # both re-driven: suspects
    (holder,) = start(redis_url)  # one in the slot, the other waits in its line
    [waiting] = [job for job in seconds if job != holder.id]
    assert status(r, waiting) == JobStatus.DEFERRED

    assert sweep(redis_url) == []  # its predecessor ended, but it waits for the slot
    assert status(r, waiting) == JobStatus.DEFERRED
    assert run(redis_url, lambda c: state(c).finish([Ending(holder, "done")])) == ["ok"]
    assert [job.id for job in start(redis_url)] == [waiting]
    assert r.hget(f"{QUEUE}:repairs", "released") is None


def test_a_registry_entry_whose_job_is_gone_is_dropped(redis_url: str, r: BytesRedis) -> None:
    r.zadd(f"rq:deferred:{QUEUE}", {"gone": 1})
    assert sweep(redis_url) == []
    assert r.zcard(f"rq:deferred:{QUEUE}") == 0
    assert r.hget(f"{QUEUE}:repairs", "dropped") == b"1"


def test_an_interrupted_compaction_s_leftovers_are_adopted(redis_url: str, r: BytesRedis) -> None:
    ids = [intake(redis_url, text) for text in ("a",)]
    ids += [Queue(QUEUE, connection=r, serializer=JSONSerializer).enqueue("builtins.len", "x").id]
    other = Queue("elsewhere", connection=r, serializer=JSONSerializer).enqueue("builtins.len", "y")
    # Queue.compact() renamed the list and crashed before moving the jobs back:
    leftover = f"rq:queue:_compact:{uuid.uuid4()}"
    r.delete(f"rq:queue:{QUEUE}", "rq:queue:elsewhere")
    r.rpush(leftover, *ids, other.id)

    adopted = run(redis_url, lambda c: state(c).adopt_leftovers())

    assert adopted == 2
    assert r.lrange(f"rq:queue:{QUEUE}", 0, -1) == [i.encode() for i in ids]
    assert r.lrange(leftover, 0, -1) == [other.id.encode()]  # another queue's: left to it
    assert r.hget(f"{QUEUE}:repairs", "adopted") == b"2"


@pytest.mark.parametrize("action", ["Job.delete", "Job.cancel"])
def test_events_released_past_a_removed_job_wait_for_the_one_before_it(
    redis_url: str, r: BytesRedis, action: str
) -> None:
    """A job deleted (or canceled) between two others of its contact: the sweep releases the
    one after it while the one before it has not run; they still run one at a time."""
    head, middle, last = (intake(redis_url, text) for text in ("one", "two", "three"))
    job = Job.fetch(middle, connection=r, serializer=JSONSerializer)
    if action == "Job.delete":
        job.delete()
    else:
        job.cancel()
    assert sweep(redis_url) == [last]  # released while `head` is still queued
    assert drain_in_order(redis_url) == [head, last]


def test_a_job_released_while_its_contact_s_job_runs_waits_for_it(
    redis_url: str, r: BytesRedis
) -> None:
    head, middle, last = (intake(redis_url, text) for text in ("one", "two", "three"))
    (running,) = start(redis_url)
    assert running.id == head
    Job.fetch(middle, connection=r, serializer=JSONSerializer).delete()
    assert sweep(redis_url) == [last]
    assert start(redis_url) == []  # not beside `head`: behind it
    assert status(r, last) == JobStatus.DEFERRED
    assert run(redis_url, lambda c: state(c).finish([Ending(running, "done")])) == ["ok"]
    assert drain_in_order(redis_url) == [last]
