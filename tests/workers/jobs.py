"""Small job functions for the worker tests, independent of the handler API.

Each takes the Redis URL it reports to, so a worker in another process can run it.
"""

from __future__ import annotations

import os
import signal
import time

import redis
from rq import Retry


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def record(url: str, key: str, value: str) -> str:
    """Append ``value`` to the list ``key``; return it."""
    with _client(url) as client:
        client.rpush(key, value)
    return value


def block(url: str, key: str, timeout: int = 30) -> str:
    """Mark ``key:started``, then wait (up to ``timeout`` s) for something on ``key:release``."""
    with _client(url) as client:
        client.set(f"{key}:started", "1")
        released = client.blpop([f"{key}:release"], timeout=timeout)
        client.set(f"{key}:ended", "1")
    return "released" if released else "timed out"


def fail(message: str = "the job failed on purpose", **_event: object) -> None:
    """Raise, so the job lands in the failed registry (keyword arguments are ignored)."""
    raise RuntimeError(message)


def flaky(url: str, key: str, succeed_on: int, interval: int = 1) -> str | Retry:
    """Count runs in ``key``; ask for a retry ``interval`` s later until run number
    ``succeed_on``."""
    with _client(url) as client:
        runs = int(client.incr(key))
    if runs < succeed_on:
        return Retry(max=2, interval=[interval, interval])
    return f"ran {runs} times"


async def nap(url: str, key: str, value: str, seconds: float) -> str:
    """An async job: note ``value`` in ``key:started`` (and how many run at once in
    ``key:running``), sleep, then append it to ``key``."""
    import asyncio

    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.rpush(f"{key}:started", value)
        await client.rpush(f"{key}:running", await client.incr(f"{key}:now"))
        await asyncio.sleep(seconds)
        await client.decr(f"{key}:now")
        await client.rpush(key, value)
    finally:
        await client.aclose()
    return value


def neighbour(url: str, key: str, value: str) -> str:
    """A job that shares its worker with :func:`poison`: its first run counts itself in
    ``key:started`` and waits (up to 60 s) to be killed with its worker; a later run appends
    ``value`` to ``key``. ``key:runs`` counts each value's runs."""
    with _client(url) as client:
        if client.hincrby(f"{key}:runs", value, 1) == 1:
            client.incr(f"{key}:started")
            client.blpop([f"{key}:never"], timeout=60)
        client.rpush(key, value)
    return value


def poison(url: str, key: str, neighbours: int) -> None:
    """Kill the worker process running it (SIGKILL, as the OOM killer would), once
    ``neighbours`` jobs have started (``key:started``, up to 60 s), at every run (counted in
    ``key:poison``)."""
    with _client(url) as client:
        client.incr(f"{key}:poison")
        deadline = time.monotonic() + 60
        while int(client.get(f"{key}:started") or 0) < neighbours:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)
