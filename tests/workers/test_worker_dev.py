"""`wabahooks dev` runs one worker per queue next to the receiver and stops them all on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rq import Queue
from rq.job import JobStatus
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.workers import PREFIX, wait_for, worker_env

SECRET = "dev-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dev(redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`wabahooks dev` in its own process group (as a terminal runs it), ended after the test."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "dev", "--port", str(port)],
        cwd=tmp_path,  # its state directory goes here
        env=worker_env(redis_url, WABA_WEBHOOK_SECRET=SECRET),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created: dev and its children
        proc.wait()


def test_dev_runs_a_worker_per_queue_and_ctrl_c_stops_them(
    r: BytesRedis, dev: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, port = dev

    def queues_served() -> set[str]:
        return {(r.hget(key, "queues") or b"").decode() for key in r.smembers("rq:workers")}

    wanted = {PREFIX + name for name in ("messages", "statuses", "other")}
    # dev checks the handlers in a process of its own before starting them: a busy machine
    # takes a while.
    wait_for(
        lambda: queues_served() == wanted or proc.poll() is not None, "three workers", timeout=90
    )
    assert proc.poll() is None
    body, headers = payloads.signed({"event": "test", "data": {"testId": "dev-1"}}, SECRET)
    url = f"http://127.0.0.1:{port}/webhook"
    wait_for(lambda: _accepted(url, body, headers), "the receiver", timeout=60)
    other = Queue(PREFIX + "other", connection=r, serializer=JSONSerializer)
    wait_for(
        lambda: FinishedJobRegistry(queue=other).get_job_ids(),
        "a worker to run the event",
        timeout=60,
    )
    [job] = other.job_class.fetch_many(FinishedJobRegistry(queue=other).get_job_ids(), r)
    assert job is not None and job.get_status() == JobStatus.FINISHED

    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group

    assert proc.wait() == 0
    assert r.smembers("rq:workers") == set()  # every worker registered its death


def _accepted(url: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        return httpx.post(url, content=body, headers=headers).status_code == 200
    except httpx.TransportError:
        return False
