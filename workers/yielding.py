"""A worker that yields the CPU to a receiver beside it (issue 20: a co-located receiver slowed
to a 1.35 s p99 beside two busy workers on two cores, near the portal's 5 s).

Two things, both on by default:

- **a lower priority**: the worker process raises its niceness by :data:`DEFAULT_NICE`
  (``WABAHOOKS_NICE``; 0 keeps the default priority), so that the kernel prefers the receiver,
  whose answer the portal waits for, to the workers, whose backlog can wait a few milliseconds;
- **adaptive concurrency** (:class:`Throttle`): the engine measures its own event loop's lag (how
  late a timer of :data:`PROBE_EVERY` fires); while it lags more than :data:`LAG_HIGH` the engine
  takes fewer new jobs (its limit shrinks by a quarter, never under :data:`MIN_LIMIT`), and it
  climbs back by a twentieth of ``--concurrency`` per probe once the lag is under
  :data:`LAG_LOW`. A loop that lags is one whose process is starved or overloaded: more jobs
  would only make every reply later.

In containers, give the receiver a CPU reservation (compose ``cpus``/``cpu_shares``, Kubernetes
``requests.cpu``) larger than the workers'; see the README's Deploying.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import structlog

__all__ = [
    "DEFAULT_NICE",
    "LAG_HIGH",
    "LAG_LOW",
    "MIN_LIMIT",
    "PROBE_EVERY",
    "Throttle",
    "lower_priority",
]

log = structlog.get_logger("wabahooks.worker")

#: The niceness workers give themselves unless ``WABAHOOKS_NICE`` says otherwise.
DEFAULT_NICE = 10
#: Seconds between two probes of the loop's lag.
PROBE_EVERY = 0.25
#: Loop lag (s) above which the engine takes fewer jobs, and under which it takes more again.
LAG_HIGH, LAG_LOW = 0.05, 0.01
#: The fewest jobs in flight the throttle leaves.
MIN_LIMIT = 4


def lower_priority(nice: int) -> int:
    """Raise this process's niceness by ``nice`` (0: leave it); return the niceness now."""
    return os.nice(nice) if nice > 0 else os.nice(0)


class Throttle:
    """How many jobs the engine may have in flight now: ``concurrency``, less while its loop
    lags (see the module docstring). Feed it lags with :meth:`observe`."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.limit = concurrency
        self._floor = min(MIN_LIMIT, concurrency)
        self._step = max(1, concurrency // 20)

    def observe(self, lag: float) -> None:
        """One probe: the loop ran a timer ``lag`` seconds late."""
        before = self.limit
        if lag > LAG_HIGH:
            self.limit = max(self._floor, self.limit * 3 // 4)
        elif lag < LAG_LOW:
            self.limit = min(self.concurrency, self.limit + self._step)
        if self.limit < before and before == self.concurrency:
            log.info("worker.throttled", lag_ms=round(lag * 1000, 1), limit=self.limit)
        elif self.limit == self.concurrency and before < self.concurrency:
            log.info("worker.unthrottled", limit=self.limit)

    async def run(self, closing: Callable[[], bool]) -> None:
        """Probe the running loop's lag every :data:`PROBE_EVERY` s until ``closing()``."""
        while not closing():
            asked = time.monotonic()
            await asyncio.sleep(PROBE_EVERY)
            self.observe(max(0.0, time.monotonic() - asked - PROBE_EVERY))
