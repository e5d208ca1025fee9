"""The RQ surface the engine relies on, pinned: an RQ upgrade that moves it fails here, loudly.

``workers/rqstate.py`` writes RQ's layout with its own scripts. Two kinds of checks:

- the names and signatures it uses (key templates, result types, the started registry's
  member format, the fields RQ's cleanup reads), each with the reason it matters;
- the state itself: the same job run by RQ's own ``SimpleWorker`` and by our engine
  leaves the same keys, fields, registry entries and results (ids, names and times
  aside), for a success, a failure, and each one's release of a dependent.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import rq
from rq import Queue, SimpleWorker
from rq.executions import Execution, ExecutionRegistry
from rq.job import Dependency, Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key, utcformat
from rq.version import VERSION as RQ_VERSION

from service import keys
from tests.support.bredis import BytesRedis
from tests.workers import jobs
from workers import rqstate
from workers.engine import Engine
from workers.running import JobRunner
from workers.threads import Threads

QUEUE = "wabahooks:messages"

# Fields our engine adds to the job hash: ours (``wh:``), and ``retries_left``, which
# makes RQ's own cleanup re-queue an abandoned job instead of failing it (rqstate).
OURS = re.compile(rb"^(wh:.*|retries_left)$")


def test_rq_version_is_the_one_the_scripts_were_checked_against() -> None:
    assert RQ_VERSION.startswith("2.12."), (
        f"rq {RQ_VERSION}: workers/rqstate.py writes RQ 2.12's layout; rerun this module's "
        "comparisons against the new version and update the scripts before upgrading"
    )


def test_key_names_match_rqs() -> None:
    """service/keys.py names RQ's keys; these are RQ's own spellings of them."""
    q = Queue("q", connection=redis.Redis(), serializer=JSONSerializer)
    assert q.key == keys.rq_queue("q")
    assert Queue.redis_queues_keys == keys.RQ_QUEUES
    assert Job.key_for("j") == keys.rq_job("j")
    assert StartedJobRegistry.key_template.format("q") == keys.rq_started("q")
    assert ScheduledJobRegistry.key_template.format("q") == keys.rq_scheduled("q")
    assert FinishedJobRegistry.key_template.format("q") == keys.rq_finished("q")
    assert FailedJobRegistry.key_template.format("q") == keys.rq_failed("q")
    assert DeferredJobRegistry.key_template.format("q") == keys.rq_deferred("q")
    assert ExecutionRegistry.key_template == "rq:executions:{0}"
    assert Execution("e", "j", connection=redis.Redis()).key == "rq:execution:j:e"
    assert Result.get_key("j") == "rq:results:j"
    assert rq.worker.Worker.redis_worker_namespace_prefix + "w" == keys.rq_worker("w")
    assert rq.worker.Worker.redis_workers_keys == keys.RQ_WORKERS
    assert rq.suspension.WORKERS_SUSPENDED == keys.RQ_SUSPENDED
    assert rq.worker_registration.WORKERS_BY_QUEUE_KEY % "q" == keys.rq_queue_workers("q")


def test_formats_and_signatures_match_rqs() -> None:
    # The started registry's members are "<job id>:<execution id>" (our heartbeat and
    # re-drive scripts split them the same way).
    assert parse_composite_key("job:exec") == ("job", "exec")
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert rqstate.rq_timestamp(moment) == utcformat(moment)
    assert [t.value for t in Result.Type] == [1, 2, 3, 4, 5]  # the scripts write 1, 2, 4
    # RQ's cleanup re-queues instead of failing when retries_left > 0: the safety net.
    cleanup = inspect.getsource(StartedJobRegistry.cleanup)
    assert "retries_left" in cleanup and "job.retry(" in cleanup
    assert list(inspect.signature(rq.Retry.get_interval).parameters) == ["count", "intervals"]
    assert "zlib.decompress(b64decode(exc_string))" in inspect.getsource(Result.restore)


def _normalise(r: BytesRedis) -> dict[str, Any]:
    """Every key of the database, with ids, names and times replaced, ours left out."""
    names: dict[bytes, str] = {}
    for key in sorted(r.keys("rq:job:*")):
        job_id = key.split(b":")[2]
        if job_id and job_id not in names:
            names[job_id] = f"JOB{len(names)}"
    for key in r.keys("rq:execution:*"):
        names.setdefault(key.split(b":")[3], "EXEC")
    for member in r.smembers("rq:workers"):
        names.setdefault(member.split(b":")[2], "WORKER")

    def norm(value: bytes) -> str:
        text = value
        for raw, name in names.items():
            text = text.replace(raw, name.encode())
        return re.sub(rb"[0-9a-f]{32}", b"EXEC", text).decode("utf-8", "replace")

    snapshot: dict[str, Any] = {}
    for key in sorted(r.keys("*")):
        # Our own keys (the Redis epoch, ``workers.epoch``) are not RQ's surface.
        if key.startswith((b"rq:worker", b"rq:clean_registries", b"ran", b"wabahooks:")):
            continue
        if key == b"rq:queues":
            continue
        kind = r.type(key).decode()
        ttl = r.ttl(key)
        entry: Any
        if kind == "hash":
            fields = r.hgetall(key)
            entry = {
                k.decode(): norm(v) if k in {b"status", b"origin", b"dependency_id"} else "…"
                for k, v in fields.items()
                if not OURS.match(k)
            }
        elif kind == "zset":
            entry = sorted(norm(m) for m in r.zrange(key, 0, -1))
        elif kind == "set":
            entry = sorted(norm(m) for m in r.smembers(key))
        elif kind == "list":
            entry = [norm(m) for m in r.lrange(key, 0, -1)]
        elif kind == "stream":
            entry = [
                sorted(k.decode() for k in fields) + [fields[b"type"].decode()]
                for _id, fields in r.xrange(key)
            ]
        else:
            entry = kind
        snapshot[norm(key)] = (entry, "expires" if ttl > 0 else "kept")
    return snapshot


def _with_rq(r: BytesRedis) -> None:
    worker = SimpleWorker(
        [Queue(QUEUE, connection=r, serializer=JSONSerializer)],
        connection=r,
        serializer=JSONSerializer,
    )
    worker.work(burst=True, with_scheduler=False)


def _with_ours(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        state = rqstate.RQState(client, QUEUE, worker_name="w", lease=30, max_attempts=3)
        threads = Threads(2)
        await Engine(state, JobRunner(threads), threads=threads, burst=True).run()
        await client.aclose()

    asyncio.run(main())


def _enqueue(redis_url: str, r: BytesRedis, case: str) -> None:
    q = Queue(QUEUE, connection=r, serializer=JSONSerializer)
    first = (
        q.enqueue(jobs.fail, job_id="aaaa", result_ttl=500, failure_ttl=3600)
        if case.startswith("failure")
        else q.enqueue(jobs.record, redis_url, "ran", "1", job_id="aaaa", result_ttl=500)
    )
    if case.endswith("dependent"):
        q.enqueue(
            jobs.record,
            redis_url,
            "ran",
            "2",
            job_id="bbbb",
            depends_on=Dependency([first], allow_failure=True),
            result_ttl=500,
        )


@pytest.mark.parametrize("case", ["success", "failure", "success+dependent", "failure+dependent"])
def test_our_scripts_leave_what_rqs_worker_leaves(redis_url: str, r: BytesRedis, case: str) -> None:
    _enqueue(redis_url, r, case)
    _with_rq(r)
    theirs = _normalise(r)
    assert Job.fetch("aaaa", connection=r, serializer=JSONSerializer).get_status() in (
        JobStatus.FINISHED,
        JobStatus.FAILED,
    )
    r.flushall()

    _enqueue(redis_url, r, case)
    _with_ours(redis_url)
    ours = _normalise(r)

    assert ours == theirs


def test_our_requeue_leaves_what_rqs_requeue_leaves(redis_url: str, r: BytesRedis) -> None:
    """``wabahooks failed requeue`` (``rqstate.requeue_failed``) against RQ's own
    ``FailedJobRegistry.requeue``, for a job with no conversation (it is queued). One
    difference on purpose: RQ leaves the job hash to expire as a failed job would; ours keeps
    it until it ends again, as every waiting job (README "Retention")."""
    _enqueue(redis_url, r, "failure")
    _with_rq(r)
    FailedJobRegistry(QUEUE, connection=r, serializer=JSONSerializer).requeue("aaaa")
    theirs = _normalise(r)
    r.flushall()

    _enqueue(redis_url, r, "failure")
    _with_ours(redis_url)
    assert rqstate.requeue_failed(r, QUEUE, "aaaa") == rqstate.Requeued("queued")
    ours = _normalise(r)

    job = "rq:job:JOB0"
    assert (ours[job][1], theirs[job][1]) == ("kept", "expires")
    assert {**ours, job: ours[job][0]} == {**theirs, job: theirs[job][0]}
    assert Job.fetch("aaaa", connection=r, serializer=JSONSerializer).get_status() == (
        JobStatus.QUEUED
    )


def test_rq_sees_the_worker_idle_or_busy_as_of_its_last_heartbeat(
    redis_url: str, r: BytesRedis
) -> None:
    """`wabahooks status` and `rq info` read RQ's worker state: idle until a job runs here."""
    queue = "wabahooks:messages"

    def rq_state() -> str:
        worker = rq.Worker.find_by_key("rq:worker:w1", connection=r)
        assert worker is not None
        return str(worker.get_state())

    async def states() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        state = rqstate.RQState(client, queue, worker_name="w1", lease=30, max_attempts=5)
        seen = []
        try:
            await state.register_birth(pid=1, hostname="h")
            seen.append(rq_state())
            await state.heartbeat(["job:execution"])
            seen.append(rq_state())
            await state.heartbeat([])
            seen.append(rq_state())
        finally:
            await client.aclose()
        return seen

    assert asyncio.run(states()) == ["idle", "busy", "idle"]


def test_a_worker_unregisters_also_from_a_redis_over_maxmemory(
    redis_url: str, r: BytesRedis
) -> None:
    """A full Redis refuses a MULTI with writes; a worker stopping while it drains must not
    stay listed in rq:workers (its registration and unregistration are allow-oom scripts)."""

    async def lifecycle() -> list[bytes]:
        client = aioredis.Redis.from_url(redis_url)
        state = rqstate.RQState(
            client, "wabahooks:messages", worker_name="w2", lease=30, max_attempts=5
        )
        try:
            await state.register_birth(pid=1, hostname="h")
            before = sorted(r.smembers("rq:workers"))
            r.config_set("maxmemory", 1)  # every ordinary write is refused now
            try:
                with pytest.raises(redis.exceptions.OutOfMemoryError):
                    r.set("probe", "x")
                await state.register_death()
            finally:
                r.config_set("maxmemory", 0)
            return [*before, b"--", *sorted(r.smembers("rq:workers"))]
        finally:
            await client.aclose()

    assert asyncio.run(lifecycle()) == [b"rq:worker:w2", b"--"]
