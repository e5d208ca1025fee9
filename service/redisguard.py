"""What Redis must be like for our keys to be safe: no eviction, and room left to drain.

Both are read from ``INFO memory`` (managed Redis often forbids ``CONFIG GET``):

- **Eviction.** Any ``maxmemory-policy`` but ``noeviction`` can delete our keys: ``allkeys-*``
  evicts queues and jobs (acknowledged events never handled), ``volatile-*`` evicts keys with a
  TTL, i.e. every claim (a redelivery becomes a new event). :func:`eviction_problem` says so in
  one line; ``wabahooks serve``, ``wabahooks check`` and ``wabahooks worker`` call it, and the
  first and last refuse to start unless ``WABAHOOKS_ALLOW_EVICTION`` is set.
- **Headroom.** Under ``noeviction`` a full Redis refuses every write, the workers' included, so
  a backlog could never drain. The receiver admits events only while ``used_memory`` is below a
  high-water mark (``WABAHOOKS_MEMORY_HIGH_WATER`` × ``maxmemory``), keeping the rest for what
  workers write while draining (results, registries). :func:`memory_state` reads the state for
  any process; :class:`MemoryWatch` caches it for the receiver's hot path.

Pure core (:func:`policy_problem`, :func:`parse_memory`), thin adapters over redis-py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = [
    "ALLOW_EVICTION_VAR",
    "HIGH_WATER_VAR",
    "MemoryState",
    "MemoryWatch",
    "eviction_problem",
    "memory_state",
    "parse_memory",
    "policy_problem",
]

ALLOW_EVICTION_VAR = "WABAHOOKS_ALLOW_EVICTION"
HIGH_WATER_VAR = "WABAHOOKS_MEMORY_HIGH_WATER"
SAFE_POLICY = "noeviction"
#: Seconds the receiver reuses one reading of INFO memory (a refresh runs in the background).
MEMORY_CHECK_INTERVAL = 0.5


def policy_problem(policy: str | None) -> str | None:
    """Return why ``maxmemory-policy`` ``policy`` can lose our keys (one line), or None."""
    fix = f"set maxmemory-policy {SAFE_POLICY} (or {ALLOW_EVICTION_VAR}=1 if you know why not)"
    if policy == SAFE_POLICY:
        return None
    if policy is None:
        return f"Redis does not report maxmemory_policy in INFO memory, so it may evict: {fix}"
    if policy.startswith("volatile-"):
        what = "evicts keys with a TTL, i.e. the claims: redeliveries would become new events"
    else:
        what = "can evict queues, jobs and claims: acknowledged events would be lost or repeated"
    return f"Redis maxmemory-policy is {policy}, which {what}; {fix}"


def eviction_problem(connection: redis.Redis, *, allow_eviction: bool = False) -> str | None:
    """Return why this Redis can evict our keys, in one line, or None (also None when
    ``allow_eviction``: the operator's explicit override). Raises ``redis.RedisError``."""
    info: Any = connection.info("memory")
    problem = policy_problem(info.get("maxmemory_policy"))
    return None if allow_eviction else problem


@dataclass(frozen=True, slots=True)
class MemoryState:
    """Redis memory as the receiver judges it: bytes used, ``maxmemory`` (0: no limit), the
    high-water mark above which events are refused (None without a limit), and the policy."""

    used: int
    maxmemory: int
    high_water: int | None
    policy: str | None

    @property
    def admitting(self) -> bool:
        """Whether events may be written: below the high-water mark (or no limit)."""
        return self.high_water is None or self.used < self.high_water

    def describe(self) -> str:
        """One line for humans, e.g. ``used 81.2 MB of maxmemory 100.0 MB (high water 80.0 MB)``."""
        if self.high_water is None:
            return f"used {_mb(self.used)} (no maxmemory: no high-water mark)"
        return (
            f"used {_mb(self.used)} of maxmemory {_mb(self.maxmemory)} "
            f"(high water {_mb(self.high_water)})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The state as JSON-ready fields (``/readyz``)."""
        return {
            "used_memory": self.used,
            "maxmemory": self.maxmemory,
            "high_water": self.high_water,
            "admitting": self.admitting,
        }


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def parse_memory(info: Mapping[str, Any], high_water: float) -> MemoryState:
    """Return the memory state of an ``INFO memory`` reply; ``high_water`` is a fraction of
    ``maxmemory`` (from ``Settings.memory_high_water``)."""
    maxmemory = int(info.get("maxmemory", 0) or 0)
    policy = info.get("maxmemory_policy")
    return MemoryState(
        used=int(info.get("used_memory", 0)),
        maxmemory=maxmemory,
        high_water=int(maxmemory * high_water) if maxmemory else None,
        policy=str(policy) if policy is not None else None,
    )


def memory_state(connection: redis.Redis, high_water: float) -> MemoryState:
    """Return this Redis's memory state (one ``INFO memory``); raises ``redis.RedisError``.

    ``high_water``: ``Settings.memory_high_water``. A worker can use it to report, or to know
    that the receiver is refusing events."""
    info: Any = connection.info("memory")
    return parse_memory(info, high_water)


class MemoryWatch:
    """The receiver's cached view of Redis memory: :meth:`current` costs a clock read; a reading
    older than ``interval`` is refreshed in the background (the request does not wait for it)."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        high_water: float,
        *,
        interval: float = MEMORY_CHECK_INTERVAL,
        on_reading: Callable[[MemoryState], None] = lambda _state: None,
    ) -> None:
        self._redis = redis_client
        self._high_water = high_water
        self._interval = interval
        self._on_reading = on_reading
        self._state: MemoryState | None = None
        self._read_at = float("-inf")
        self._task: asyncio.Task[MemoryState | None] | None = None

    async def refresh(self) -> MemoryState | None:
        """Read INFO memory now; return the state, or None if Redis did not answer."""
        self._read_at = time.monotonic()
        try:
            info: Any = await self._redis.info("memory")
        except (RedisError, OSError):
            return (
                self._state
            )  # unknown: keep the last reading; the intake will say if Redis is down
        self._state = parse_memory(info, self._high_water)
        self._on_reading(self._state)
        return self._state

    def current(self) -> MemoryState | None:
        """Return the latest reading (None before the first), starting a refresh if it is stale."""
        if time.monotonic() - self._read_at >= self._interval and (
            self._task is None or self._task.done()
        ):
            self._read_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self.refresh())
        return self._state
