"""Workers under test: ``wabahooks worker`` processes (ended by PID), and an in-process drain."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import redis

from tests.support.bredis import BytesRedis
from workers.execution import LATE_RECORDING
from workers.rqstate import RQ_MARGIN

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "wabahooks:"

T = TypeVar("T")


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    """A clean environment for a worker process: no secret, no handlers (allowed: these
    tests run plain RQ jobs), JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    env.update(
        REDIS_URL=redis_url,
        WABAHOOKS_LOG_FORMAT="json",
        WABAHOOKS_CONFIG="",
        WABAHOOKS_ALLOW_NO_HANDLERS="1",
    )
    env.update(extra)
    return env


def expire_leases(r: BytesRedis, queue: str) -> None:
    """Move every lease of ``queue``'s started registry into the past (as if its workers
    had died long enough ago: the lease ended longer ago than any re-drive waits for,
    ``workers.lease.redrive_after``): the next re-drive takes them."""
    key = f"rq:wip:{queue}"
    for member, _score in r.zrange(key, 0, -1, withscores=True):
        r.zadd(key, {member: time.time() + RQ_MARGIN - LATE_RECORDING - 1})


def make_due(r: redis.Redis, queue: str) -> int:
    """Make every scheduled job of ``queue`` (a retry, a conversation's flush or step
    timeout) due now, without waiting for its time: its score goes to 0, only while it is
    still scheduled (``XX``: one a worker promoted meanwhile is not put back). A worker's
    own promoter then moves it onto the queue (within a second); return how many."""
    key = f"rq:scheduled:{queue}"
    members: list[Any] = r.zrange(key, 0, -1)
    if members:
        r.zadd(key, dict.fromkeys(members, 0), xx=True)
    return len(members)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``condition`` every 20 ms until it holds and return its value; fail naming
    ``what`` after ``timeout`` seconds (generous: a bound on a hang, not a speed check, and
    the machines running the suite may be busy)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


class WorkerProcess:
    """A ``wabahooks worker`` child process and what it registered in Redis."""

    def __init__(self, proc: subprocess.Popen[bytes], log: IO[bytes], r: BytesRedis) -> None:
        self.proc = proc
        self._log = log  # a file, not a pipe: a chatty worker never blocks on a full pipe
        self._r = r

    @property
    def pid(self) -> int:
        return self.proc.pid

    def name(self) -> str | None:
        """The RQ worker name this process registered, once it has."""
        for key in self._r.smembers("rq:workers"):
            if self._r.hget(key, "pid") == str(self.pid).encode():
                return key.decode().rsplit(":", 1)[1]
        return None

    def wait_started(self) -> None:
        """Wait until the worker is registered in Redis (it takes jobs from then on)."""
        wait_for(lambda: self.name() is not None or self.proc.poll() is not None, "the worker")
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        """Everything the process printed, stdout and stderr (waits for it to exit)."""
        self.proc.wait()
        return self.printed()

    def printed(self) -> str:
        """What the process has printed so far (it may still be running)."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")


def drain(r: redis.Redis, queue: str) -> bool:
    """Run ``queue``'s jobs with the worker engine in burst mode, in this process, with no
    handlers (our events end unhandled; plain RQ jobs run as RQ would); return whether any
    job ran."""
    import asyncio

    import redis.asyncio as aioredis

    from workers.engine import Engine
    from workers.rqstate import RQState
    from workers.running import JobRunner
    from workers.runtime import Runtime, UnconfiguredPortal

    kwargs = r.connection_pool.connection_kwargs

    async def main() -> bool:
        client = aioredis.Redis(host=kwargs["host"], port=kwargs["port"])
        runtime = Runtime(redis=client, portal=UnconfiguredPortal(), registrations=[])
        try:
            state = RQState(client, queue, worker_name="test", lease=30, max_attempts=5)
            runner = JobRunner(runtime.threads, runtime)
            return await Engine(state, runner, threads=runtime.threads, burst=True).run()
        finally:
            await runtime.aclose()

    return asyncio.run(main())
