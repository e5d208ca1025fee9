"""What Redis must be like for our keys to be safe: no eviction, and room left to drain.

Both are read from ``INFO memory`` (managed Redis often forbids ``CONFIG GET``):

- **Eviction.** Any ``maxmemory-policy`` but ``noeviction`` can delete our keys: ``allkeys-*``
  evicts queues and jobs (acknowledged events never handled), ``volatile-*`` evicts keys with a
  TTL, i.e. every claim (a redelivery becomes a new event). :func:`eviction_problem` says so in
  one line; ``wabahooks serve``, ``wabahooks check`` and ``wabahooks worker`` call it, and the
  first and last refuse to start unless ``WABAHOOKS_ALLOW_EVICTION`` is set.
- **Headroom.** Under ``noeviction`` a full Redis refuses every write, the workers' included, so
  a backlog could never drain. The receiver refuses events from a high-water mark on, which
  leaves a computed headroom: what the jobs in flight hold (``WABAHOOKS_MEMORY_HEADROOM_JOBS``
  × :data:`JOB_IN_FLIGHT_BYTES`, :class:`MemoryMarks`), and resumes only below a lower mark
  (hysteresis, :class:`MemoryState`). Above the mark the workers start few jobs and keep no
  results (``workers.pressure``), so memory falls as the backlog drains. :func:`memory_state`
  reads the state for any process; :class:`MemoryWatch` caches it for the receiver's hot path.

Pure core (:func:`policy_problem`, :func:`parse_memory`), thin adapters over redis-py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.settings import DEFAULT_MEMORY_HEADROOM_JOBS, Settings

__all__ = [
    "ALLOW_EVICTION_VAR",
    "HEADROOM_JOBS_VAR",
    "HIGH_WATER_VAR",
    "JOB_IN_FLIGHT_BYTES",
    "SCRIPTS_BYTES",
    "MemoryMarks",
    "MemoryState",
    "MemoryWatch",
    "eviction_problem",
    "memory_state",
    "parse_memory",
    "policy_problem",
]

ALLOW_EVICTION_VAR = "WABAHOOKS_ALLOW_EVICTION"
HIGH_WATER_VAR = "WABAHOOKS_MEMORY_HIGH_WATER"
HEADROOM_JOBS_VAR = "WABAHOOKS_MEMORY_HEADROOM_JOBS"
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


#: Bytes Redis holds for each job a worker has in flight, measured on Valkey 9.1 (README "A
#: full Redis"): the job's connection, 17.3 KB (every client has a 16 KB reply buffer, counted
#: in ``used_memory``), and the job's started state, ~1.2 KB (execution hash, lease, holder
#: fields, ledger intents).
JOB_IN_FLIGHT_BYTES = 18_500
#: Bytes the workers' Lua scripts take in Redis once loaded, measured on Valkey 9.1: the
#: scripts and the Lua VM they grow (~340 KB; the first worker after a fill loads them).
SCRIPTS_BYTES = 512_000
#: Bytes an admitted event costs beyond its body, measured (Valkey 9.1, bodies of 0.9 and
#: 3.3 KB, most events waiting behind their contact's previous one): its job's fields, claim,
#: tail, and its place in the queue or the deferred registry and its predecessor's dependents.
EVENT_OVERHEAD_BYTES = 2_200
#: Fraction of ``maxmemory`` between the marks: the receiver resumes that far below the
#: high-water mark, and workers keep results only that far below the low one.
MARK_GAP = 0.05


@dataclass(frozen=True, slots=True)
class MemoryMarks:
    """How the marks are placed: the headroom above the high-water mark is what
    ``headroom_jobs`` jobs in flight hold (× :data:`JOB_IN_FLIGHT_BYTES`) plus the workers'
    scripts (:data:`SCRIPTS_BYTES`), unless ``high_fraction`` places the mark itself (a
    fraction of ``maxmemory``)."""

    headroom_jobs: int = DEFAULT_MEMORY_HEADROOM_JOBS
    high_fraction: float | None = None

    @classmethod
    def of(cls, settings: Settings) -> MemoryMarks:
        """The marks ``settings`` ask for (``WABAHOOKS_MEMORY_HEADROOM_JOBS``,
        ``WABAHOOKS_MEMORY_HIGH_WATER``)."""
        return cls(settings.memory_headroom_jobs, settings.memory_high_water)

    @property
    def headroom(self) -> int:
        """Bytes kept above the high-water mark for the jobs in flight and the scripts."""
        return SCRIPTS_BYTES + self.headroom_jobs * JOB_IN_FLIGHT_BYTES

    def levels(self, maxmemory: int) -> tuple[int, int, int]:
        """Return the high-water mark, the low mark and the results limit for ``maxmemory``
        (> 0). The high-water mark never falls below half of ``maxmemory``: a Redis too
        small for its workers' headroom still admits events (``wabahooks check`` warns)."""
        if self.high_fraction is not None:
            high = int(maxmemory * self.high_fraction)
        else:
            high = max(maxmemory - self.headroom, maxmemory // 2)
        gap = int(maxmemory * MARK_GAP)
        low = max(high - gap, 0)
        return high, low, max(low - gap, 0)


@dataclass(frozen=True, slots=True)
class MemoryState:
    """Redis memory as the receiver and the workers judge it: bytes used, ``maxmemory`` (0: no
    limit), the marks (None without a limit), the policy, and whether events are refused.

    ``refusing`` has hysteresis: it starts at the high-water mark and ends only below the low
    mark (:func:`parse_memory` is told whether the previous reading was refusing). Workers
    start few jobs while it holds, and keep a job's result only below ``results_limit``: so
    results never fill the room the backlog frees, and the receiver always resumes."""

    used: int
    maxmemory: int
    high_water: int | None
    policy: str | None
    low_water: int | None = None
    results_limit: int | None = None
    refusing: bool = False

    @property
    def admitting(self) -> bool:
        """Whether events may be written."""
        return not self.refusing

    @property
    def keep_results(self) -> bool:
        """Whether a finished job may keep its result for its result TTL."""
        return self.results_limit is None or self.used < self.results_limit

    def describe(self) -> str:
        """One line for humans, e.g. ``used 81.2 MB of maxmemory 100.0 MB (high water 80.0 MB,
        low 75.0 MB)``."""
        if self.high_water is None:
            return f"used {_mb(self.used)} (no maxmemory: no high-water mark)"
        return (
            f"used {_mb(self.used)} of maxmemory {_mb(self.maxmemory)} "
            f"(high water {_mb(self.high_water)}, low {_mb(self.low_water or 0)})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The state as JSON-ready fields (``/readyz``)."""
        return {
            "used_memory": self.used,
            "maxmemory": self.maxmemory,
            "high_water": self.high_water,
            "low_water": self.low_water,
            "admitting": self.admitting,
        }


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def parse_memory(
    info: Mapping[str, Any], marks: MemoryMarks, *, refusing: bool = False
) -> MemoryState:
    """Return the memory state of an ``INFO memory`` reply under ``marks``; ``refusing``:
    whether the previous reading refused events (the hysteresis)."""
    maxmemory = int(info.get("maxmemory", 0) or 0)
    policy = info.get("maxmemory_policy")
    used = int(info.get("used_memory", 0))
    policy_name = str(policy) if policy is not None else None
    if not maxmemory:
        return MemoryState(used, 0, None, policy_name)
    high, low, results = marks.levels(maxmemory)
    return MemoryState(
        used=used,
        maxmemory=maxmemory,
        high_water=high,
        policy=policy_name,
        low_water=low,
        results_limit=results,
        refusing=used >= high or (refusing and used >= low),
    )


def memory_state(connection: redis.Redis, marks: MemoryMarks) -> MemoryState:
    """Return this Redis's memory state (one ``INFO memory``); raises ``redis.RedisError``.

    Without history: ``refusing`` only at or above the high-water mark (a receiver that
    refused may still refuse down to the low mark)."""
    info: Any = connection.info("memory")
    return parse_memory(info, marks)


class MemoryWatch:
    """The receiver's cached view of Redis memory: :meth:`current` costs a clock read; a reading
    older than ``interval`` is refreshed in the background (the request does not wait for it).

    Between two readings the events this receiver admits are counted (:meth:`admitted`) and
    added to the last reading: a burst of intake cannot carry Redis past the mark, and into
    ``maxmemory``, in the time a reading takes to come."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        marks: MemoryMarks,
        *,
        interval: float = MEMORY_CHECK_INTERVAL,
        on_reading: Callable[[MemoryState], None] = lambda _state: None,
    ) -> None:
        self._redis = redis_client
        self._marks = marks
        self._interval = interval
        self._on_reading = on_reading
        self._state: MemoryState | None = None
        #: Bytes admitted since the watch began (``_counted``: as of the last reading's request).
        self._admitted = 0
        self._counted = 0
        self._read_at = float("-inf")
        self._task: asyncio.Task[MemoryState | None] | None = None

    async def refresh(self) -> MemoryState | None:
        """Read INFO memory now; return the state, or None if Redis did not answer."""
        self._read_at = time.monotonic()
        counted = self._admitted  # what Redis holds by the time it answers
        try:
            info: Any = await self._redis.info("memory")
        except (RedisError, OSError):
            return (
                self._state
            )  # unknown: keep the last reading; the intake will say if Redis is down
        refusing = self._state is not None and self._state.refusing
        self._state = parse_memory(info, self._marks, refusing=refusing)
        self._counted = counted
        self._on_reading(self._state)
        return self._state

    def admitted(self, size: int) -> None:
        """Count an event of ``size`` bytes admitted since the last reading; refuse from now on
        if the last reading plus what was admitted since reaches the high-water mark."""
        self._admitted += size + EVENT_OVERHEAD_BYTES
        state = self._state
        if state is None or state.high_water is None or state.refusing:
            return
        estimate = state.used + self._admitted - self._counted
        if estimate >= state.high_water:
            self._state = replace(state, used=estimate, refusing=True)

    def current(self) -> MemoryState | None:
        """Return the latest reading (None before the first), starting a refresh if it is stale."""
        if time.monotonic() - self._read_at >= self._interval and (
            self._task is None or self._task.done()
        ):
            self._read_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self.refresh())
        return self._state
