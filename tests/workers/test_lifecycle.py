"""The job lifecycle, written once (``workers.lifecycle``), and the fence on real Valkey.

- the README's table is the module's;
- every script that writes for an execution passes the fence, and only the fence reads the
  holder;
- what RQ's own tools do to a job (its registry cleanup, its requeue) cannot let an old
  execution write, end the job or release its conversation's next event, and a job they
  re-queue never runs beside its contact's current one;
- the start script starts only queued jobs;
- `wabahooks failed requeue` gives a job a fresh set of attempts and puts it back into its
  conversation's chain, behind the event running meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from service.cli import main
from service.identity import classify
from service.intake import Intake
from service.jobs import build_job
from tests.support import payloads
from tests.support.bredis import BytesRedis
from workers.endings import engine_ending
from workers.execution import ExecutionToken, Superseded
from workers.ledger import RedisLedger
from workers.lifecycle import MOVES, STATES, readme_table
from workers.rqstate import RQ_MARGIN, Ending, RQState, StartedJob

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "workers" / "lua"
QUEUE = "wabahooks:messages"
PHONE = "919876543210"
T = TypeVar("T")

#: The scripts that write for an execution: each must pass the fence first.
FENCED = [
    "ledger_write",
    "store_write",
    "conv_advance",
    "conv_append",
    "conv_expect",
    "conv_seal",
    "finish",
    "heartbeat",
    "redrive",
]


def test_the_readme_table_is_the_modules() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- lifecycle:begin -->\n(.*?)\n<!-- lifecycle:end -->", readme, re.S)
    assert found, "README.md has no lifecycle table between its markers"
    assert found.group(1) == readme_table(), (
        "README.md's lifecycle table differs from workers/lifecycle.py: paste readme_table()"
    )
    named = {m.source for m in MOVES} | {m.target for m in MOVES}
    assert named - {"(new)", "(gone) or canceled", "any"} <= set(STATES)


@pytest.mark.parametrize("script", FENCED)
def test_every_script_that_writes_for_an_execution_passes_the_fence_first(script: str) -> None:
    text = (LUA / f"{script}.lua").read_text(encoding="utf-8")
    assert "fenced(" in text, f"workers/lua/{script}.lua writes for an execution unfenced"


def test_only_the_fence_reads_the_holder() -> None:
    for path in LUA.glob("*.lua"):
        text = path.read_text(encoding="utf-8")
        reads = re.findall(r"H(?:M)?GET[^\n]*wh:holder", text)
        if path.name != "fence.lua":
            assert not reads, f"{path.name} reads wh:holder itself: use fenced()"


# -- on Valkey -----------------------------------------------------------------------------


def run(redis_url: str, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def state(client: aioredis.Redis, name: str = "w1") -> RQState:
    return RQState(client, QUEUE, worker_name=name, lease=30, max_attempts=3)


def intake(redis_url: str, text: str) -> str:
    """One inbound message from PHONE through the real intake script; its job id."""

    async def body(client: aioredis.Redis) -> str:
        envelope = payloads.message(text=text, sender=PHONE)
        classified = classify(envelope)
        job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
        result = await Intake(client, prefix="wabahooks:", dedupe_ttl=60, deadline=5.0).submit(
            classified, job
        )
        return result.job_id

    return run(redis_url, body)


def start(redis_url: str, wanted: int = 4) -> list[StartedJob]:
    return run(redis_url, lambda c: state(c).start([uuid.uuid4().hex for _ in range(wanted)]))


def finish(redis_url: str, ending: Ending) -> str:
    return run(redis_url, lambda c: state(c).finish([ending]))[0]


def status(r: BytesRedis, job_id: str) -> JobStatus:
    return Job.fetch(job_id, connection=r, serializer=JSONSerializer).get_status()


def write(redis_url: str, job: StartedJob) -> bool:
    """Whether ``job``'s execution may still write its ledger (a harmless record)."""

    async def body(client: aioredis.Redis) -> bool:
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id))
        try:
            await ledger.complete("probe", "once:probe", {"ok": True})
        except Superseded:
            return False
        return True

    return run(redis_url, body)


def test_a_lease_rq_cleanup_dropped_without_requeueing_its_job_is_renewed_not_lost(
    redis_url: str, r: BytesRedis
) -> None:
    """Found by the chaos soak (bench/chaos.py): RQ's cleanup ends with a ZREMRANGEBYSCORE up
    to its clock, which also removes the entries of jobs started after it read the registry,
    leaving them started. The job's execution still holds it (the fence): its next renewal
    writes the entry again, so a re-drive can find it should its worker die."""
    first = intake(redis_url, "one")
    (job,) = start(redis_url)
    member = f"{job.id}:{job.execution_id}"
    r.zremrangebyscore(f"rq:wip:{QUEUE}", 0, time.time() + 10 * RQ_MARGIN)  # as RQ's does
    assert status(r, first) == JobStatus.STARTED

    assert run(redis_url, lambda c: state(c).heartbeat([member])) == set()
    assert r.zscore(f"rq:wip:{QUEUE}", member) is not None
    assert write(redis_url, job) and finish(redis_url, Ending(job, "done")) == "ok"


@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_a_job_rq_cleanup_queued_again_after_it_ended_is_not_run_again(
    redis_url: str, r: BytesRedis, outcome: str
) -> None:
    """Found by the chaos soak (bench/chaos.py, 249 doubled replies): RQ's cleanup reads a job
    while it runs (its clock ahead), the job ends (its reply sent), then RQ's pipeline writes
    the abandonment: queued again, pushed onto the queue. Here RQ's own code runs in that
    order. The job is still in its ended registry: `start` restores its status, runs nothing."""
    first = intake(redis_url, "one")
    (job,) = start(redis_url)
    queue = Queue(QUEUE, connection=r, serializer=JSONSerializer)
    seen_by_rq = Job.fetch(first, connection=r, serializer=JSONSerializer)  # cleanup's read
    assert seen_by_rq.retries_left  # so RQ re-queues it rather than failing it
    assert finish(redis_url, Ending(job, outcome, error="boom")) == "ok"
    with r.pipeline() as pipe:  # ... and its writes, after the job ended
        seen_by_rq.retry(queue, pipe)
        pipe.execute()
    assert status(r, first) == JobStatus.QUEUED and r.lrange(queue.key, 0, -1) == [first.encode()]

    assert start(redis_url) == []
    ended = JobStatus.FINISHED if outcome == "done" else JobStatus.FAILED
    assert status(r, first) == ended and r.llen(queue.key) == 0


def test_rq_cleanup_requeues_a_frozen_execution_s_job_and_the_old_execution_is_fenced_out(
    redis_url: str, r: BytesRedis
) -> None:
    first, second = intake(redis_url, "one"), intake(redis_url, "two")
    (old,) = start(redis_url)
    assert old.id == first and write(redis_url, old)

    # No worker of ours re-drove it (all frozen, say); RQ's cleanup, run by `rq info`:
    StartedJobRegistry(QUEUE, connection=r).cleanup(timestamp=time.time() + 10 * RQ_MARGIN)
    assert status(r, first) == JobStatus.QUEUED
    assert r.hget(f"rq:job:{first}", "wh:holder") == old.execution_id.encode()  # RQ kept it

    # The old execution wakes: it can neither write nor end the job, nor release `second`.
    assert not write(redis_url, old)
    assert finish(redis_url, Ending(old, "done")) == "superseded"
    assert status(r, first) == JobStatus.QUEUED and status(r, second) == JobStatus.DEFERRED
    lost = run(redis_url, lambda c: state(c).heartbeat([f"{old.id}:{old.execution_id}"]))
    assert lost == {f"{old.id}:{old.execution_id}"}

    # A new execution runs it, and only that one writes.
    (new,) = start(redis_url)
    assert new.id == first and write(redis_url, new) and not write(redis_url, old)
    assert finish(redis_url, Ending(new, "done")) == "ok"
    assert status(r, second) == JobStatus.QUEUED


def test_a_requeued_event_never_runs_beside_its_contact_s_current_one(
    redis_url: str, r: BytesRedis
) -> None:
    first, second = intake(redis_url, "one"), intake(redis_url, "two")
    (one,) = start(redis_url)
    assert finish(redis_url, Ending(one, "failed", error="boom")) == "ok"
    assert r.hget(f"rq:job:{first}", "wh:holder") is None  # a failed job is held by nobody
    (two,) = start(redis_url)  # released by the failure
    assert two.id == second

    FailedJobRegistry(QUEUE, connection=r).requeue(first)  # `rq requeue`, the dashboard's
    assert start(redis_url) == []  # not beside `second`: back into the chain, behind it
    assert status(r, first) == JobStatus.DEFERRED
    assert r.hget(f"rq:job:{first}", "dependency_id") == second.encode()

    third = intake(redis_url, "three")  # a later event follows the requeued one
    assert finish(redis_url, Ending(two, "done")) == "ok"
    (again,) = start(redis_url)
    assert again.id == first and start(redis_url) == []
    assert finish(redis_url, Ending(again, "done")) == "ok"
    assert [job.id for job in start(redis_url)] == [third]


def test_only_queued_jobs_start(redis_url: str, r: BytesRedis) -> None:
    first = intake(redis_url, "one")
    (one,) = start(redis_url)
    r.rpush(f"rq:queue:{QUEUE}", first)  # the same id pushed again (a tool, by hand)
    assert start(redis_url) == []
    assert status(r, first) == JobStatus.STARTED
    assert r.hget(f"rq:job:{first}", "wh:holder") == one.execution_id.encode()


def test_a_re_driven_job_keeps_its_place_and_is_not_rechained(
    redis_url: str, r: BytesRedis
) -> None:
    first, second = intake(redis_url, "one"), intake(redis_url, "two")
    (one,) = start(redis_url)
    assert finish(redis_url, Ending(one, "handback")) == "ok"  # to the front, held by nobody
    assert not write(redis_url, one)
    (again,) = start(redis_url)
    assert again.id == first and status(r, second) == JobStatus.DEFERRED


def test_failed_requeue_gives_fresh_attempts_and_chains_the_job_behind_its_contact_s_latest(
    redis_url: str, r: BytesRedis
) -> None:
    first, second = intake(redis_url, "one"), intake(redis_url, "two")
    for _ in range(3):  # max_attempts=3: each run times out, the third fails the job
        (tried,) = start(redis_url)
        assert tried.id == first
        ending = engine_ending(tried, TimeoutError(), max_attempts=3)
        assert finish(redis_url, ending) == "ok"
        if ending.outcome == "retry":  # due now (the backoff's wait is not the point here)
            r.zadd(f"rq:scheduled:{QUEUE}", {first: 0})
            run(redis_url, lambda c: state(c).promote())
    assert status(r, first) == JobStatus.FAILED
    assert r.hget(f"rq:job:{first}", "wh:attempts") == b"3"
    (two,) = start(redis_url)  # released by the failure: its contact's later event runs
    assert two.id == second

    env = {"REDIS_URL": redis_url, "WABA_WEBHOOK_SECRET": None, "WABAHOOKS_QUEUE_PREFIX": None}
    result = CliRunner().invoke(main, ["failed", "requeue", first], env=env)

    assert result.exit_code == 0, result.output
    assert (
        f"requeued {first} on {QUEUE}, behind {second}, its conversation's latest event"
        in result.output
    )
    assert first not in FailedJobRegistry(QUEUE, connection=r)
    assert status(r, first) == JobStatus.DEFERRED
    assert r.hget(f"rq:job:{first}", "wh:attempts") == b"0"
    assert not r.hexists(f"rq:job:{first}", "number_of_retries")
    assert r.ttl(f"rq:job:{first}") == -1  # kept until it ends again, as any waiting job
    assert start(redis_url) == []  # not beside `second`
    third = intake(redis_url, "three")  # arrived after the requeue: behind the requeued one

    assert finish(redis_url, Ending(two, "done")) == "ok"
    (again,) = start(redis_url)
    assert again.id == first and again.attempt == 1
    ending = engine_ending(again, TimeoutError(), max_attempts=3)
    assert ending.outcome == "retry"  # a new error is retried, not the end of it
    assert finish(redis_url, ending) == "ok"
    assert status(r, first) == JobStatus.SCHEDULED
    assert status(r, third) == JobStatus.DEFERRED


def test_failed_requeue_queues_a_job_whose_conversation_has_nothing_unfinished(
    redis_url: str, r: BytesRedis
) -> None:
    first = intake(redis_url, "one")
    (one,) = start(redis_url)
    assert finish(redis_url, Ending(one, "failed", error="boom")) == "ok"

    env = {"REDIS_URL": redis_url, "WABA_WEBHOOK_SECRET": None, "WABAHOOKS_QUEUE_PREFIX": None}
    result = CliRunner().invoke(main, ["failed", "requeue", first], env=env)

    assert result.exit_code == 0, result.output
    assert f"requeued {first} on {QUEUE}, queued" in result.output
    assert status(r, first) == JobStatus.QUEUED
    second = intake(redis_url, "two")  # the requeued job is its conversation's latest again
    assert status(r, second) == JobStatus.DEFERRED
    assert r.hget(f"rq:job:{second}", "dependency_id") == first.encode()


def test_a_job_rq_requeued_behind_a_requeued_predecessor_is_chained_by_its_tail(
    redis_url: str, r: BytesRedis
) -> None:
    """A job RQ re-queued whose old predecessor (``dependency_id``) is waiting again, itself
    re-queued, goes behind the conversation's tail and becomes the tail: an event posted
    meanwhile must not be released beside it."""
    first, second, third = (intake(redis_url, text) for text in ("one", "two", "three"))
    for expected in (first, second):
        (tried,) = start(redis_url)
        assert tried.id == expected
        assert finish(redis_url, Ending(tried, "failed", error="boom")) == "ok"
    (running,) = start(redis_url)
    assert running.id == third

    registry = FailedJobRegistry(QUEUE, connection=r)
    registry.requeue(first)  # `rq requeue`: behind `third`, and the tail
    assert start(redis_url) == []
    registry.requeue(second)  # its dependency_id, `first`, is deferred again
    assert start(redis_url) == []
    assert status(r, second) == JobStatus.DEFERRED
    fourth = intake(redis_url, "four")

    assert finish(redis_url, Ending(running, "done")) == "ok"
    ran = []
    while jobs := start(redis_url):
        assert len(jobs) == 1, "a contact's events ran side by side"
        ran.append(jobs[0].id)
        assert finish(redis_url, Ending(jobs[0], "done")) == "ok"
    assert ran == [first, second, fourth]


def test_a_rechained_job_waits_only_for_its_new_predecessor(redis_url: str, r: BytesRedis) -> None:
    """A job re-chained by the start script forgets the predecessor it waited for before (its
    RQ dependencies set is replaced, not added to): once its new predecessor is deleted, the
    sweep releases it, although its old predecessor now waits behind it."""
    first, second, third = (intake(redis_url, text) for text in ("one", "two", "three"))
    for expected in (first, second):
        (tried,) = start(redis_url)
        assert tried.id == expected
        assert finish(redis_url, Ending(tried, "failed", error="boom")) == "ok"
    (running,) = start(redis_url)
    assert running.id == third

    registry = FailedJobRegistry(QUEUE, connection=r)
    registry.requeue(second)  # behind `third`, the tail now
    assert start(redis_url) == []
    registry.requeue(first)  # behind `second`
    assert start(redis_url) == []
    assert r.smembers(f"rq:job::{second}:dependencies") == {third.encode()}

    Job.fetch(third, connection=r, serializer=JSONSerializer).delete()  # rq-dashboard's Delete
    assert run(redis_url, lambda c: state(c).sweep()) == [second]
    ran = []
    while jobs := start(redis_url):
        assert len(jobs) == 1
        ran.append(jobs[0].id)
        assert finish(redis_url, Ending(jobs[0], "done")) == "ok"
    assert ran == [second, first]


def test_a_job_rq_requeued_after_its_conversation_ended_becomes_its_latest(
    redis_url: str, r: BytesRedis
) -> None:
    """RQ re-queues a failed job once its conversation's later events ended: it runs, and
    it is the conversation's latest then, so neither an event posted meanwhile nor another
    job RQ re-queues runs beside it."""
    first, second = intake(redis_url, "one"), intake(redis_url, "two")
    for expected in (first, second):
        (tried,) = start(redis_url)
        assert tried.id == expected
        assert finish(redis_url, Ending(tried, "failed", error="boom")) == "ok"

    registry = FailedJobRegistry(QUEUE, connection=r)
    registry.requeue(first)
    (again,) = start(redis_url)
    assert again.id == first
    third = intake(redis_url, "three")
    assert status(r, third) == JobStatus.DEFERRED
    registry.requeue(second)
    assert start(redis_url) == []
    assert status(r, second) == JobStatus.DEFERRED

    assert finish(redis_url, Ending(again, "done")) == "ok"
    ran = []
    while jobs := start(redis_url):
        assert len(jobs) == 1, "a contact's events ran side by side"
        ran.append(jobs[0].id)
        assert finish(redis_url, Ending(jobs[0], "done")) == "ok"
    assert ran == [third, second]
