"""Redis errors that pass: the server is away, out of memory, or being failed over.

A failover (Sentinel, a managed Redis, a replica promoted behind the same address) shows
itself to a client as ``READONLY`` (it still talks to the demoted primary, now a replica),
``MASTERDOWN`` (a replica that lost its primary) or ``TRYAGAIN``; redis-py raises these as
``ResponseError`` subclasses, which would otherwise read as bugs. They are
:data:`TRANSIENT`, like a lost connection: the caller waits and tries again. On ``READONLY``
and ``MASTERDOWN`` the connections must go too (:func:`after_redis_error`), or the pool keeps
talking to the demoted node: new connections resolve the address again and find the new
primary.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis.exceptions

__all__ = ["TRANSIENT", "after_redis_error"]

#: Redis errors waited out rather than raised.
TRANSIENT: tuple[type[redis.exceptions.RedisError], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
)


async def after_redis_error(client: Any, error: BaseException) -> None:
    """After ``error`` from ``client`` (``redis.asyncio.Redis``): on ``READONLY`` or
    ``MASTERDOWN``, drop the pool's connections so that the next command connects to whatever
    is primary now. Never raises: a failing disconnect is one more error the caller waits out."""
    if isinstance(error, (redis.exceptions.ReadOnlyError, redis.exceptions.MasterDownError)):
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await client.connection_pool.disconnect()
