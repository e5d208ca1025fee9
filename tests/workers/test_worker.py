"""The RQ worker: burst draining, one queue, warm shutdown, SIGKILL recovery, delayed retries."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from tests.workers import jobs
from tests.workers.conftest import PREFIX, WorkerProcess, alive, wait_for
from workers.worker import OneQueuePerProcess, WabaWorker

MESSAGES = PREFIX + "messages"


def queue(r: redis.Redis, name: str = MESSAGES) -> Queue:
    return Queue(name, connection=r, serializer=JSONSerializer)


def status(r: redis.Redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=r, serializer=JSONSerializer).get_status(refresh=True)


def nothing_in_limbo(q: Queue) -> None:
    """No job of ``q`` is started, half-dequeued (intermediate list) or waiting."""
    assert q.connection.llen(q.intermediate_queue_key) == 0
    assert StartedJobRegistry(queue=q).get_job_ids(cleanup=False) == []
    assert q.count == 0


def test_a_burst_worker_drains_its_queue_in_order(redis_url: str, r: redis.Redis) -> None:
    q = queue(r)
    ids = [q.enqueue(jobs.record, redis_url, "ran", str(i)).id for i in range(3)]
    before = signal.getsignal(signal.SIGTERM)

    worked = WabaWorker(q, connection=r).run(burst=True)

    assert worked
    assert r.lrange("ran", 0, -1) == [b"0", b"1", b"2"]
    assert [status(r, i) for i in ids] == [JobStatus.FINISHED] * 3
    nothing_in_limbo(q)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored after run()


def test_the_worker_is_json_only_and_never_logs_descriptions(r: redis.Redis) -> None:
    worker = WabaWorker(MESSAGES, connection=r, serializer="pickle", log_job_description=True)

    assert worker.serializer is JSONSerializer
    assert worker.log_job_description is False
    assert worker.queues[0].serializer is JSONSerializer


@pytest.mark.parametrize("queues", [[MESSAGES, PREFIX + "statuses"], []])
def test_a_worker_refuses_anything_but_one_queue(r: redis.Redis, queues: list[str]) -> None:
    with pytest.raises(OneQueuePerProcess, match="one worker process per queue"):
        WabaWorker(queues, connection=r)


def test_sigterm_lets_the_running_job_finish_then_exits_0(
    redis_url: str, r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    job = queue(r).enqueue(jobs.block, redis_url, "slow")
    worker = start_worker("--queue", "messages")
    worker.wait_started()
    wait_for(lambda: r.get("slow:started"), "the job to start")

    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # give a wrong (cold) shutdown the chance to show
    assert worker.proc.poll() is None
    assert status(r, job.id) == JobStatus.STARTED
    r.rpush("slow:release", "go")

    assert worker.proc.wait() == 0, worker.output()
    assert status(r, job.id) == JobStatus.FINISHED
    assert Job.fetch(job.id, connection=r, serializer=JSONSerializer).return_value() == "released"
    assert worker.scheduler_pid is not None and not alive(worker.scheduler_pid)
    assert r.get(f"rq:scheduler-lock:{MESSAGES}") is None  # released for the next worker
    nothing_in_limbo(queue(r))


def test_sigterm_on_an_idle_worker_exits_0_promptly(
    r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("--queue", "statuses")
    worker.wait_started()

    worker.proc.send_signal(signal.SIGTERM)

    wait_for(lambda: worker.proc.poll() is not None, "the worker to exit", timeout=10)
    assert worker.proc.returncode == 0, worker.output()
    assert worker.scheduler_pid is not None and not alive(worker.scheduler_pid)
    assert r.smembers("rq:workers") == set()


def test_after_sigkill_maintenance_fails_the_job_and_releases_its_dependent(
    redis_url: str, r: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = queue(r)
    first = q.enqueue(jobs.block, redis_url, "doomed")
    second = q.enqueue(
        jobs.record, redis_url, "ran", "second", depends_on=Dependency([first], allow_failure=True)
    )
    worker = start_worker("--queue", "messages")
    worker.wait_started()
    wait_for(lambda: r.get("doomed:started"), "the job to start")

    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    # The orphaned scheduler child notices and stops by itself, releasing its lock.
    assert worker.scheduler_pid is not None
    wait_for(lambda: not alive(worker.scheduler_pid or 0), "the scheduler child to stop")
    wait_for(lambda: r.get(f"rq:scheduler-lock:{MESSAGES}") is None, "the scheduler lock")
    assert status(r, first.id) == JobStatus.STARTED  # in limbo, until maintenance
    assert status(r, second.id) == JobStatus.DEFERRED

    # What the next worker's maintenance does once the entry expires (timeout + 60 s).
    StartedJobRegistry(queue=q).cleanup(timestamp=time.time() + 3600)

    assert status(r, first.id) == JobStatus.FAILED
    assert first.id in FailedJobRegistry(queue=q)
    assert status(r, second.id) == JobStatus.QUEUED
    WabaWorker(q, connection=r).run(burst=True)
    assert r.lrange("ran", 0, -1) == [b"second"]
    nothing_in_limbo(q)


def test_a_job_stuck_in_the_intermediate_list_is_failed_by_maintenance(
    redis_url: str, r: redis.Redis
) -> None:
    q = queue(r)
    job = q.enqueue(jobs.record, redis_url, "ran", "x")
    # A worker dies right after BLMOVE, before it registers the job as started.
    r.lmove(q.key, q.intermediate_queue_key)
    worker = WabaWorker(q, connection=r)

    worker.clean_registries()  # first sight: RQ notes the time
    first_seen = q.intermediate_queue.get_first_seen_key(job.id)
    r.set(first_seen, time.time() - 120)  # a minute later, without waiting for it
    worker.clean_registries()

    assert status(r, job.id) == JobStatus.FAILED
    assert job.id in FailedJobRegistry(queue=q)
    nothing_in_limbo(q)


def test_a_delayed_retry_is_run_again_by_the_scheduler(
    redis_url: str, r: redis.Redis, start_worker: Callable[..., WorkerProcess]
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
    latest = Job.fetch(gives_up.id, connection=r, serializer=JSONSerializer).latest_result()
    assert latest is not None and latest.type == Result.Type.MAX_RETRIES_EXCEEDED
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait() == 0, worker.output()
    assert worker.scheduler_pid is not None and not alive(worker.scheduler_pid)


def test_rq_logs_no_phone_number_of_a_failing_job(
    redis_url: str, r: redis.Redis, start_worker: Callable[..., WorkerProcess]
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
