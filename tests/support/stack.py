"""End-to-end stacks: the portal simulator delivering to the receiver, and real
``wabahooks worker`` processes (stopped by SIGTERM, by PID) running the tests' handlers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import IO

import httpx

from service.sim.app import create_sim_app
from tests.support.loop import sim_delivering_to
from tests.support.portal import API_KEY, serve
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import ROOT

MESSAGES = "wabahooks:messages"


@contextmanager
def simulator(receiver: Receiver, **chaos: float) -> Iterator[httpx.Client]:
    """The portal simulator delivering to ``receiver``; a client on its API and controls."""
    with serve(create_sim_app(sim_delivering_to(receiver.webhook_url, SECRET))) as url:
        with httpx.Client(base_url=url, timeout=30) as sim:
            if chaos:
                sim.put("/sim/chaos", json=chaos).raise_for_status()
            yield sim


def portal_env(sim: httpx.Client, redis_url: str, handlers: str) -> dict[str, str]:
    """A worker's environment against ``sim``: no rate limit to speak of, the default lease
    (a busy machine does not take a live worker's jobs away; a test that kills a worker ends
    the dead one's leases itself, with ``tests.support.workers.expire_leases``)."""
    return {
        "REDIS_URL": redis_url,
        "WABAHOOKS_HANDLERS": handlers,
        "WABA_API_URL": str(sim.base_url),
        "WABA_API_KEY": API_KEY,
        "WABA_API_RATE": "10000",
    }


@contextmanager
def worker_processes(
    env: dict[str, str], queues: Sequence[str], *args: str, log: IO[bytes] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One `wabahooks worker --queue Q ARGS` process per queue (output to ``log``, else
    dropped); SIGTERM to each after, SIGKILL to any still running 30 s later."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service", "worker", "--queue", queue, *args],
            env={**os.environ, "PYTHONPATH": str(ROOT), "WABAHOOKS_LOG_FORMAT": "json", **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL if log is None else log,
            stderr=None if log is None else subprocess.STDOUT,
        )
        for queue in queues
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def workers(
    count: int, env: dict[str, str], *args: str
) -> AbstractContextManager[list[subprocess.Popen[bytes]]]:
    """``count`` `wabahooks worker --queue messages` processes (see :func:`worker_processes`)."""
    return worker_processes(env, ["messages"] * count, *args)


def sent(sim: httpx.Client, phone: str) -> list[str]:
    """The texts the simulator's portal sent to ``phone``, in order."""
    history = sim.get("/sim/history", params={"phone": phone}).json()
    return [m["message"] for m in history["sent"]]
