"""Job format v1: what the intake script writes is what RQ's own API writes.

If an RQ upgrade changes the job layout, these tests fail loudly.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from rq import Queue
from rq.job import Dependency, Job
from rq.serializers import JSONSerializer

from service.identity import classify
from service.intake import Intake, IntakeResult
from service.jobs import JOB_FUNCTION, JobSpec, build_job
from tests.support import payloads
from tests.support.bredis import BytesRedis

# Fields whose values legitimately differ between two jobs built at different times.
_PER_JOB = {"created_at", "enqueued_at", "data"}


def submit(redis_url: str, envelope: Any) -> tuple[IntakeResult, JobSpec]:
    async def run() -> tuple[IntakeResult, JobSpec]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            intake = Intake(client, prefix="wabahooks:", dedupe_ttl=60, deadline=2.0)
            classified = classify(envelope)
            job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
            return await intake.submit(classified, job), job
        finally:
            await client.aclose()

    return asyncio.run(run())


def through_rq(r: BytesRedis, ours: Job, depends_on: str | None = None) -> Job:
    queue = Queue(ours.origin, connection=r, serializer=JSONSerializer)
    return queue.enqueue_call(
        JOB_FUNCTION,
        kwargs=ours.kwargs,
        description=ours.description,
        job_id="rq-built-" + ours.id,
        # Retention travels in the job (README "Retention"): the same TTLs through RQ's API.
        result_ttl=ours.result_ttl,
        failure_ttl=ours.failure_ttl,
        depends_on=Dependency(jobs=[depends_on], allow_failure=True) if depends_on else None,
    )


def comparable(r: BytesRedis, job_id: str) -> dict[bytes, bytes]:
    """The job's fields RQ would write too: not the per-job ones, nor ours (``wh:``, which
    RQ ignores)."""
    fields = r.hgetall(f"rq:job:{job_id}")
    return {
        k: v for k, v in fields.items() if k.decode() not in _PER_JOB and not k.startswith(b"wh:")
    }


def test_a_queued_job_matches_the_one_rq_builds(r: BytesRedis, redis_url: str) -> None:
    result, _ = submit(redis_url, payloads.message())
    ours = Job.fetch(result.job_id, connection=r, serializer=JSONSerializer)

    theirs = through_rq(r, ours)

    assert comparable(r, ours.id) == comparable(r, theirs.id)
    # Ours also names its conversation's tail (workers/lua/start.lua re-chains by it).
    tail = r.hget(f"rq:job:{ours.id}", "wh:tail")
    assert tail == b"wabahooks:tail:message:919876543210" and r.get(tail) == ours.id.encode()
    restored = Job.fetch(theirs.id, connection=r, serializer=JSONSerializer)
    assert (ours.func_name, ours.args, ours.kwargs) == (
        restored.func_name,
        restored.args,
        restored.kwargs,
    )
    # Ours is written uncompressed (RQ's restore accepts both); the call is the same.
    assert json.loads(r.hget(f"rq:job:{ours.id}", "data") or b"") == json.loads(
        zlib.decompress(r.hget(f"rq:job:{theirs.id}", "data") or b"")
    )
    assert r.lrange("rq:queue:wabahooks:messages", 0, -1) == [ours.id.encode(), theirs.id.encode()]
    assert r.smembers("rq:queues") == {b"rq:queue:wabahooks:messages"}


def test_a_deferred_job_matches_the_one_rq_builds(r: BytesRedis, redis_url: str) -> None:
    first, _ = submit(redis_url, payloads.message())
    second, _ = submit(redis_url, payloads.message())
    ours = Job.fetch(second.job_id, connection=r, serializer=JSONSerializer)

    theirs = through_rq(r, ours, depends_on=first.job_id)

    assert second.depends_on == first.job_id
    assert comparable(r, ours.id) == comparable(r, theirs.id)
    assert r.smembers(f"rq:job:{first.job_id}:dependents") == {ours.id.encode(), theirs.id.encode()}
    assert r.smembers(f"rq:job::{ours.id}:dependencies") == {first.job_id.encode()}
    deferred = r.zrange("rq:deferred:wabahooks:messages", 0, -1)
    assert set(deferred) == {ours.id.encode(), theirs.id.encode()}


def test_job_kwargs_are_the_documented_contract(r: BytesRedis, redis_url: str) -> None:
    envelope = payloads.status("wamid.OUT9", "read")
    result, spec = submit(redis_url, envelope)
    job = Job.fetch(result.job_id, connection=r, serializer=JSONSerializer)

    assert job.kwargs == {
        "envelope": envelope,
        "event_key": "status:wamid.OUT9:read",
        "kind": "status",
        "conversation": "wamid.OUT9",
        "received_at": spec.created_at,
        "version": 1,
    }
    assert job.origin == "wabahooks:statuses"
    assert job.description == "status status:wamid.OUT9:read"
    assert datetime.fromisoformat(spec.created_at).tzinfo == UTC


def test_finished_or_missing_predecessors_do_not_hold_a_conversation(
    r: BytesRedis, redis_url: str
) -> None:
    first, _ = submit(redis_url, payloads.message())
    r.hset(f"rq:job:{first.job_id}", "status", "finished")
    second, _ = submit(redis_url, payloads.message())
    r.delete(f"rq:job:{second.job_id}")  # expired
    third, _ = submit(redis_url, payloads.message())

    assert second.depends_on is None
    assert third.depends_on is None
    assert r.hget(f"rq:job:{third.job_id}", "status") == b"queued"


def test_the_optional_traceparent_is_one_more_keyword_argument() -> None:
    # Written only while the receiver traces (README "Traces"); absent otherwise (above).
    envelope = payloads.message()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    spec = build_job(
        envelope, classify(envelope), queue_prefix="wabahooks:", timeout=180, traceparent=parent
    )
    call = json.loads(spec.data)
    assert call[0] == JOB_FUNCTION and call[3]["traceparent"] == parent
    plain = build_job(envelope, classify(envelope), queue_prefix="wabahooks:", timeout=180)
    assert {**json.loads(plain.data)[3], "traceparent": parent} == call[3] | {
        "received_at": json.loads(plain.data)[3]["received_at"]
    }
