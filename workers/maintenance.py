"""What an engine does beside running jobs: renew its executions' leases (heartbeat), re-drive
the jobs of workers that died (their leases lapsed), and move due scheduled jobs (retries,
conversation flushes and timeouts, agent nudges) onto the queue. Every worker does all three,
atomically in Redis (``workers.rqstate``), so no scheduler process is needed.

A re-drive charges a worker's death to the job that caused it only: the jobs that died beside
others get their attempt back and become suspects, which run one at a time in their queue's
quarantine slot; a death in the slot counts (``workers.rqstate``, "The quarantine"). Each look
also releases a slot whose holder vanished without an ending of ours, so no suspect waits for
it for ever.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from service.redisfailover import TRANSIENT, after_redis_error
from workers.execution import ExecutionToken
from workers.lease import BEATS_PER_LEASE, Lease
from workers.rqstate import RQState, StartedJob

__all__ = [
    "SWEEP_EVERY",
    "PROMOTE_EVERY",
    "PROMOTE_MIN",
    "REDRIVE_EVERY",
    "TRANSIENT",
    "InFlight",
    "Maintenance",
    "Running",
    "after_redis_error",
]

log = structlog.get_logger("wabahooks.worker")

#: Seconds between looks for expired leases (each worker; jittered).
REDRIVE_EVERY = 5.0
#: Seconds between steps of the deferred registry's sweep and of the search for RQ's
#: compaction leftovers (each worker; jittered): operator actions never strand a chain.
SWEEP_EVERY = 10.0
#: Longest time between looks for due scheduled jobs (sooner when the next one is due sooner).
PROMOTE_EVERY = 1.0
#: Shortest time between them: with timers due every few ms (many conversations), a worker
#: promotes at most 100 times a second, each time all that is due.
PROMOTE_MIN = 0.01


@dataclass(frozen=True, slots=True)
class Running:
    """One execution in flight: its job, token, task and lease."""

    job: StartedJob
    token: ExecutionToken
    task: asyncio.Task[None]
    lease: Lease


#: The engine's executions in flight, by member (``<job id>:<execution id>``).
InFlight = dict[str, Running]


class Maintenance:
    """The engine's periodic work: ``inflight`` is its executions by member
    (``<job id>:<execution id>``), ``wake`` tells its fetcher to look again (jobs may have
    been queued), ``closing`` says when to stop, ``abandoned`` is told the jobs the re-drive
    failed (their workers kept dying on them)."""

    def __init__(
        self,
        state: RQState,
        inflight: InFlight,
        *,
        wake: Callable[[], None],
        closing: Callable[[], bool],
        abandoned: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.state = state
        self._inflight = inflight
        self._wake = wake
        self._closing = closing
        self._abandoned = abandoned

    async def run(self) -> None:
        """Heartbeat every lease/4 (at least 1 s), re-drive every ~5 s (jittered across
        workers), promote when the next scheduled job is due (at least every second), until
        ``closing``."""
        beat_every = max(1.0, self.state.lease / BEATS_PER_LEASE)
        now = time.monotonic()
        next_beat, next_redrive, next_promote = now, now + random.uniform(0, REDRIVE_EVERY), now
        next_sweep = now + random.uniform(0, SWEEP_EVERY)
        while not self._closing():
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + beat_every
                    await self.heartbeat()
                if now >= next_redrive:
                    next_redrive = now + REDRIVE_EVERY * random.uniform(0.8, 1.2)
                    done = await self.state.redrive()
                    if done.requeued or done.failed:
                        log.warning(
                            "job.redriven",
                            queue=self.state.queue,
                            redriven=done.requeued,
                            suspects=done.suspects,
                            failed=done.failed,
                        )
                        self._wake()
                    if done.failed and self._abandoned is not None:
                        await self._record_abandoned(done.failed)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_EVERY * random.uniform(0.8, 1.2)
                    await self.sweep()
                if now >= next_promote:
                    if await self.state.promote():
                        self._wake()
                    # Wake for the next scheduled job when it is due (a flush or timeout set
                    # by this or another worker meanwhile is seen within PROMOTE_EVERY).
                    due_in = self.state.next_due_in
                    wait = PROMOTE_EVERY if due_in is None else min(PROMOTE_EVERY, due_in)
                    wait = max(PROMOTE_MIN, wait)
                    next_promote = time.monotonic() + wait
            except TRANSIENT as exc:
                log.warning("redis.unavailable", error=f"{type(exc).__name__}: {exc}")
                await after_redis_error(self.state.client, exc)
                self.state.epoch.stale = True  # look again before the next job starts
                next_beat = min(next_beat, now + 1)  # renew leases as soon as Redis is back
            due = min(next_beat, next_redrive, next_promote, next_sweep)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def sweep(self) -> None:
        """Release the deferred jobs operators stranded, adopt RQ's compaction leftovers."""
        released = await self.state.sweep()
        adopted = await self.state.adopt_leftovers()
        if released:
            log.warning("chain.released", queue=self.state.queue, jobs=released)
        if adopted:
            log.warning("queue.leftovers_adopted", queue=self.state.queue, jobs=adopted)
        if released or adopted:
            self._wake()

    async def _record_abandoned(self, failed: list[str]) -> None:
        assert self._abandoned is not None
        try:
            await self._abandoned(failed)
        except TRANSIENT:
            raise
        except Exception:  # a record (the archive's), not the jobs' fate: they failed already
            log.exception("job.abandoned_unrecorded", queue=self.state.queue, jobs=failed)

    async def heartbeat(self) -> None:
        """Renew every lease in flight; cancel the executions whose lease was lost (another
        worker re-drove the job: this one must not act any more)."""
        await self.state.epoch.check()  # a restart or failover since the last beat?
        members = list(self._inflight)
        asked = time.monotonic()  # the renewals count from before Redis took them
        lost = await self.state.heartbeat(members)
        for member in members:
            running = self._inflight.get(member)
            if running is None:
                continue
            if member not in lost:
                running.lease.renewed(asked)
                continue
            job = running.job
            log.warning("job.superseded", job_id=job.id, queue=job.origin, reason="lease lost")
            running.token.cancel()
            running.task.cancel()
