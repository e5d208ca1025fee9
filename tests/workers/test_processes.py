"""Real worker processes (`wabahooks worker`): order across workers, and a SIGKILL mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from service.portal.sim import create_sim_app
from tests import payloads
from tests.loop import sim_delivering_to
from tests.portal.support import API_KEY, serve
from tests.service.conftest import SECRET, Receiver

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = "wabahooks:messages"


@contextmanager
def workers(
    count: int, env: dict[str, str], *, burst: bool = False
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` `wabahooks worker --queue messages` processes; stop them all after."""
    argv = [sys.executable, "-m", "service", "worker", "--queue", "messages"]
    procs = [
        subprocess.Popen(
            argv + (["--burst"] if burst else []),
            env={**os.environ, "PYTHONPATH": str(ROOT), "WABAHOOKS_LOG_FORMAT": "json", **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    children: set[int] = set()
    try:
        yield procs
    finally:
        for proc in procs:
            children |= _children(proc.pid)  # the scheduler RQ forks
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _reap(children)


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(child) for child in text.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pids: set[int]) -> None:
    """Wait for processes we caused (not our children any more), ending them if they linger."""
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_three_workers_keep_each_contacts_order_without_holding_up_others(
    receiver: Receiver, r: redis.Redis, redis_url: str
) -> None:
    env = {"REDIS_URL": redis_url, "WABAHOOKS_HANDLERS": "tests.workers.process_handlers:ordering"}
    alice, bob = "447700900001", "447700900002"
    texts = {alice: ["block", "a2", "a3", "a4"], bob: [f"b{n}" for n in range(1, 7)]}

    with workers(3, env):
        for n in range(6):  # interleaved arrival: alice's first message blocks its handler
            for sender in (alice, bob):
                if n < len(texts[sender]):
                    body, headers = payloads.signed(
                        payloads.message(sender=sender, text=texts[sender][n]), SECRET
                    )
                    assert (
                        httpx.post(receiver.webhook_url, content=body, headers=headers).status_code
                        == 200
                    )
        wait_for(lambda: r.llen(f"test:order:{bob}") == 6, "bob's messages while alice's blocks")
        alice_while_blocked = r.lrange(f"test:order:{alice}", 0, -1)
        r.set("test:release", 1)
        wait_for(lambda: r.llen(f"test:order:{alice}") == 4, "alice's messages after the release")

    assert alice_while_blocked == []
    assert [t.decode() for t in r.lrange(f"test:order:{bob}", 0, -1)] == texts[bob]
    assert [t.decode() for t in r.lrange(f"test:order:{alice}", 0, -1)] == texts[alice]


def test_a_worker_killed_after_the_send_does_not_send_it_again(
    start_receiver: Callable[..., Receiver], r: redis.Redis, redis_url: str
) -> None:
    receiver = start_receiver()
    config = sim_delivering_to(receiver.webhook_url, SECRET)
    with serve(create_sim_app(config)) as sim_url, httpx.Client(base_url=sim_url) as sim:
        env = {
            "REDIS_URL": redis_url,
            "WABAHOOKS_HANDLERS": "tests.workers.process_handlers:crash",
            "WABA_API_URL": sim_url,
            "WABA_API_KEY": API_KEY,
        }

        def sent() -> list[str]:
            history = sim.get("/sim/history", params={"phone": "919876543210"}).json()
            return [m["message"] for m in history["sent"]]

        with workers(1, env) as (worker,):
            sim.post(
                "/sim/inbound",
                json={"from": "919876543210", "name": "Ana", "type": "text", "content": "refund?"},
            ).raise_for_status()
            wait_for(lambda: sent() == ["Got it: refund?"], "the reply to reach the simulator")
            wait_for(
                lambda: r.hexists("wabahooks:store:919876543210", "hung"), "the handler to hang"
            )
            scheduler = _children(worker.pid)
            worker.kill()  # SIGKILL: no cleanup, the job is left started
            worker.wait()
            _reap(scheduler)  # RQ's scheduler child notices its worker is gone and stops

        queue = Queue(MESSAGES, connection=r, serializer=JSONSerializer)
        (job_id,) = StartedJobRegistry(queue=queue).get_job_ids()
        # RQ's maintenance, run now as if the job's timeout had long passed.
        StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 3600)
        failed = FailedJobRegistry(queue=queue)
        assert failed.get_job_ids() == [job_id]
        failed.requeue(job_id)
        with workers(1, env, burst=True) as (again,):
            assert again.wait(timeout=60) == 0

        assert queue.finished_job_registry.get_job_ids() == [job_id]
        assert sent() == ["Got it: refund?"]
