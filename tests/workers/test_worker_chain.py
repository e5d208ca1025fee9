"""The receiver's per-conversation chain, run by real workers: a failure releases the next."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import httpx
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer

from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import PREFIX, WorkerProcess


def deliver(receiver: Receiver, envelope: object) -> None:
    body, headers = payloads.signed(envelope, SECRET)
    httpx.post(receiver.webhook_url, content=body, headers=headers).raise_for_status()


def test_a_job_that_fails_for_good_releases_the_next_of_its_conversation(
    receiver: Receiver, r: BytesRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = Queue(PREFIX + "messages", connection=r, serializer=JSONSerializer)
    deliver(receiver, payloads.message(sender="919876543210", text="first"))
    deliver(receiver, payloads.message(sender="919876543210", text="second"))
    [first_id] = q.job_ids
    [second_id] = DeferredJobRegistry(queue=q).get_job_ids()
    second = Job.fetch(second_id, connection=r, serializer=JSONSerializer)
    assert second.dependency_ids == [first_id] and second.allow_dependency_failures
    # The first event's job fails for good (no retry): it calls a failing test job instead.
    call = JSONSerializer.dumps(["tests.workers.jobs.fail", None, [], {}])
    r.hset(Job.key_for(first_id), "data", zlib.compress(call))

    worker = start_worker("--queue", "messages", "--burst")  # no handlers configured

    output = worker.output()
    assert worker.proc.returncode == 0, output
    assert first_id in FailedJobRegistry(queue=q)
    assert second.get_status(refresh=True) == JobStatus.FINISHED
    assert DeferredJobRegistry(queue=q).get_job_ids() == []
    assert "9876543210" not in output
