"""Memory pressure: how a worker behaves while Redis is full (README "A full Redis").

The receiver refuses events from Redis's high-water mark on, until used memory is back
below the low mark (``service.redisguard``: the marks, and the hysteresis). For as long as
it refuses, a worker is *pressed*:

- it starts at most :data:`PRESSED_CONCURRENCY` jobs at a time: every job in flight holds
  memory before its end frees any (its execution, lease and ledger intents, and a Redis
  connection of ~17 KB), so the backlog drains without first using the room it needs;
- and it keeps no results: a finished job is deleted at once (``workers/lua/finish.lua``
  frees the job and its execution before it writes anything) and a retry writes no result
  entry. A result costs ~6.4 KB for its TTL, more than the queued job it replaces.

Results are kept again only well below the low mark (``MemoryState.keep_results``), so
they never refill the room the backlog freed and keep the receiver refusing.

:class:`MemoryPressure` reads ``INFO memory`` every :data:`PRESSURE_CHECK_INTERVAL` s on
the engine's loop; the engine asks it how many jobs to start (:meth:`MemoryPressure.limit`)
and whether endings keep results (:attr:`MemoryPressure.keep_results`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
import structlog

from service.redisguard import MemoryMarks, MemoryState, MemoryWatch

__all__ = ["PRESSED_CONCURRENCY", "PRESSURE_CHECK_INTERVAL", "MemoryPressure"]

log = structlog.get_logger("wabahooks.worker")

#: Jobs a pressed worker has in flight at most.
PRESSED_CONCURRENCY = 4
#: Seconds between two readings of INFO memory (cheap; a short interval bounds what a worker
#: writes, results included, before it notices the mark).
PRESSURE_CHECK_INTERVAL = 0.1


class MemoryPressure:
    """One worker's view of Redis memory (see the module docstring). ``on_change()`` is
    called when the worker becomes pressed or is relieved (the engine looks for jobs again)."""

    def __init__(
        self,
        client: aioredis.Redis,
        marks: MemoryMarks,
        *,
        queue: str = "",
        interval: float = PRESSURE_CHECK_INTERVAL,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._watch = MemoryWatch(client, marks)
        self._queue = queue
        self._interval = interval
        self.on_change = on_change
        #: The latest reading (None before the first, or while Redis never answered).
        self.state: MemoryState | None = None

    @property
    def pressed(self) -> bool:
        """Whether Redis is between the marks on the way down (the receiver refuses)."""
        return self.state is not None and self.state.refusing

    @property
    def keep_results(self) -> bool:
        """Whether endings keep their results (unknown memory: as configured)."""
        return self.state is None or self.state.keep_results

    def limit(self, concurrency: int) -> int:
        """How many jobs may be in flight, of ``concurrency``."""
        return min(concurrency, PRESSED_CONCURRENCY) if self.pressed else concurrency

    async def read(self) -> MemoryState | None:
        """Read INFO memory now (an unanswered reading keeps the last state)."""
        was_pressed = self.pressed
        self.state = await self._watch.refresh()
        if self.state is None or self.pressed == was_pressed:
            return self.state
        fields = {
            "queue": self._queue,
            "used_memory": self.state.used,
            "high_water": self.state.high_water,
            "low_water": self.state.low_water,
        }
        if self.pressed:
            # Its idle connections stay open: closing them under a pool that hands them out
            # makes the next command fail ("closed before write"); the headroom counts them.
            log.warning("worker.memory_high", in_flight=PRESSED_CONCURRENCY, **fields)
        else:
            log.info("worker.memory_low", **fields)
        self.on_change()
        return self.state

    async def run(self, closing: Callable[[], bool]) -> None:
        """Read INFO memory every interval until ``closing()``."""
        while not closing():
            await self.read()
            await asyncio.sleep(self._interval)
