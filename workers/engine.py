"""The worker engine: many jobs of one queue in flight on one event loop.

:class:`Engine` pops jobs in batches (``workers.rqstate``: the pop and RQ's started state
are one atomic step), runs each as a task (async handlers on the loop, sync ones in a
bounded thread pool), and ends them in group-committed batches that also release each
conversation's next event (``workers.endings``, with the endings it makes itself). Beside
that, on every worker of the queue (``workers.maintenance``):

- **leases**: each execution's lease is renewed every ``lease / 4`` s; one that was
  re-driven elsewhere (this loop stalled past its lease) is cancelled here, and the fence
  refuses its writes (``workers.lifecycle``) and its sends (``workers.lease``);
- **re-drive**: executions whose lease ended (their worker died) go back to the front
  of the queue within ``lease + redrive_after(lease) + REDRIVE_EVERY`` seconds
  (``workers.lease``: 40 s by default), keeping their conversation's place; those that
  died beside others get their attempt back and run one at a time in their queue's
  quarantine slot, where a kill counts, so a job that keeps killing workers ends up failed
  and its neighbours lose nothing (``workers.rqstate``);
- **scheduled jobs** (retries, conversation flushes and timeouts) are moved onto the queue
  when due (each worker wakes for the earliest, and looks at least every second), so they
  need no scheduler process and survive Redis restarts.

A full Redis (``workers.pressure``): from the high-water mark until memory is back below the
low mark, the engine starts only a few jobs at a time, and its endings keep no results.

Timeouts: an execution that outlives its job's ``timeout`` is cancelled (an async
handler is interrupted; a sync handler's thread cannot be, so it keeps its slot until it
returns and its execution refuses further effects) and retried like a failure.

Stopping: the first SIGTERM/SIGINT stops fetching and lets the jobs in flight finish for
up to ``grace`` seconds, then hands back the rest (back to the front of the queue, not
counted as an attempt); a second signal hands back at once. Nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import redis.exceptions
import structlog

from service.portal.fence import current_fence
from workers.endings import MAX_BATCH, GroupCommit, engine_ending
from workers.execution import LATE_RECORDING, ExecutionToken
from workers.lease import Lease, send_margin
from workers.maintenance import TRANSIENT, InFlight, Maintenance, Running, after_redis_error
from workers.pressure import MemoryPressure
from workers.rqstate import Ending, RQState, StartedJob
from workers.threads import DEFAULT_SYNC_THREADS, Threads, job_deadline
from workers.yielding import Throttle

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_GRACE", "DEFAULT_LEASE", "Engine", "Runner"]

log = structlog.get_logger("wabahooks.worker")

T = TypeVar("T")

#: Jobs in flight per process unless told otherwise (README "Running the workers").
DEFAULT_CONCURRENCY = 200
#: Seconds an execution's lease lasts without renewal.
DEFAULT_LEASE = 30
#: Seconds a warm stop waits for the jobs in flight before handing them back.
DEFAULT_GRACE = 25.0
#: Under load, wait up to this long (seconds) for a few slots before starting jobs.
GATHER_WAIT = 0.004
#: Idle polling of an empty queue: first and longest wait, seconds.
IDLE_MIN, IDLE_MAX = 0.005, 0.1
#: Seconds a cold stop waits for Redis to take the hand-back before leaving anyway.
COLD_STOP_WAIT = 5.0
#: Longest wait between attempts while Redis is unreachable.
BACKOFF_MAX = 2.0


class Runner(Protocol):
    """Runs one started job; returns how it ended (None: superseded, end nothing)."""

    def __call__(self, job: StartedJob, token: ExecutionToken) -> Awaitable[Ending | None]: ...


class Engine:
    """Works one queue with up to ``concurrency`` jobs in flight. Start it with :meth:`run`.

    ``on_abandoned(job_ids)``: told of the jobs the re-drive failed (their workers died on
    every attempt), which no runner ended. ``adaptive``: take fewer jobs while the event loop
    lags (``workers.yielding``; `wabahooks worker` turns it on). ``memory``: Redis's memory
    pressure (``workers.pressure``), which caps the jobs in flight and keeps results or not."""

    def __init__(
        self,
        state: RQState,
        runner: Runner,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        threads: Threads | None = None,
        burst: bool = False,
        grace: float = DEFAULT_GRACE,
        on_abandoned: Callable[[list[str]], Awaitable[None]] | None = None,
        adaptive: bool = False,
        memory: MemoryPressure | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.state = state
        self.concurrency = concurrency
        #: Fewer jobs in flight while the loop lags (``workers.yielding``), if ``adaptive``.
        self.throttle = Throttle(concurrency)
        self._adaptive = adaptive
        self.burst = burst
        self.grace = grace
        self._runner = runner
        self._slot_freed = asyncio.Event()
        self.memory = memory
        if memory is not None:
            memory.on_change = self._slot_freed.set  # relieved: start more jobs at once
        #: Free slots worth a round trip when jobs are in flight (1 at low concurrency).
        self._gather = min(8, max(1, concurrency // 32))
        self.threads = threads or Threads(min(concurrency, DEFAULT_SYNC_THREADS))
        self.threads.on_free = self._slot_freed.set
        #: Executions running, by "<job id>:<execution id>".
        self._inflight: InFlight = {}
        #: Executions started and not yet ended in Redis (running, or their ending queued).
        self._open = 0
        self._commit = GroupCommit(
            state,
            retry_redis=self._retry_redis,
            committed=self._on_committed,
            busy=lambda: self._gather > 1 and len(self._inflight) > self._gather,
            gather_wait=GATHER_WAIT / 2,
            keep_results=lambda: memory is None or memory.keep_results,
        )
        self._stopping = False
        self._closing = False
        self._maintenance = Maintenance(
            state,
            self._inflight,
            wake=self._slot_freed.set,
            closing=lambda: self._closing,
            abandoned=on_abandoned,  # jobs the re-drive failed (``JobRunner.abandoned``)
        )
        self._handing_back = False
        self._signals = 0
        self._done = asyncio.Event()
        self.jobs_run = 0

    @property
    def stop_requested(self) -> bool:
        """Whether a signal (or :meth:`stop`) asked the engine to stop."""
        return self._signals > 0 or self._stopping

    # -- running ----------------------------------------------------------------------

    async def run(self) -> bool:
        """Work until stopped (or, in burst mode, until the queue is empty and nothing runs).

        Return whether any job ran.
        """
        await self._retry_redis(
            lambda: self.state.register_birth(pid=os.getpid(), hostname=socket.gethostname())
        )
        if self.memory is not None:
            await self.memory.read()  # a full Redis: the first jobs are already few
        helpers = [
            asyncio.create_task(self._fetch(), name="fetch"),
            asyncio.create_task(self._commit.run(lambda: self._closing), name="commit"),
            asyncio.create_task(self._maintenance.run(), name="maintain"),
        ]
        if self.memory is not None:
            helpers.append(
                asyncio.create_task(self.memory.run(lambda: self._closing), name="memory")
            )
        if self._adaptive:
            helpers.append(
                asyncio.create_task(self.throttle.run(lambda: self._closing), name="throttle")
            )
        finished = asyncio.create_task(self._done.wait(), name="done")
        try:
            waiting: set[asyncio.Task[object]] = {finished, *helpers}
            while not finished.done():
                ended, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in ended:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        raise error  # a bug of ours: stop loudly rather than hang
        finally:
            finished.cancel()
            self._closing = True
            for task in helpers:
                task.cancel()
            # redis.asyncio can swallow a cancellation that lands mid-command: the helpers
            # also check _closing, and nothing waits for them for long.
            await asyncio.wait(helpers, timeout=5)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self.state.register_death()
        return self.jobs_run > 0

    def stop(self, *, cold: bool = False) -> None:
        """Stop taking jobs; hand back what still runs after ``grace`` s (at once if ``cold``).

        If Redis cannot take the endings (it is down), leave anyway ``COLD_STOP_WAIT`` s after
        the hand-back: the jobs' leases then lapse and the other workers re-drive them."""
        loop = asyncio.get_running_loop()
        if not self._stopping:
            self._stopping = True
            self._slot_freed.set()
            log.info("worker.stopping", queue=self.state.queue, in_flight=len(self._inflight))
            loop.call_later(self.grace, self._hand_back)
            loop.call_later(self.grace + COLD_STOP_WAIT, self._done.set)
        if cold:
            self._hand_back()
            loop.call_later(COLD_STOP_WAIT, self._done.set)
        self._check_done()

    def on_signal(self) -> None:
        """SIGTERM/SIGINT: the first stops warmly, the next ones hand back at once."""
        self._signals += 1
        self.stop(cold=self._signals > 1)

    def _hand_back(self) -> None:
        if self._handing_back or not self._inflight:
            return
        self._handing_back = True
        log.warning("worker.handing_back", queue=self.state.queue, jobs=len(self._inflight))
        for running in self._inflight.values():
            running.token.cancel()
            running.task.cancel()

    def _check_done(self) -> None:
        if self._stopping and self._open == 0:
            self._done.set()

    async def _retry_redis(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` until Redis answers (backing off, logging each failure)."""
        delay = 0.05
        while True:
            try:
                return await step()
            except TRANSIENT as exc:
                log.warning("redis.unavailable", error=f"{type(exc).__name__}: {exc}")
                await after_redis_error(self.state.client, exc)
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)

    # -- fetching ---------------------------------------------------------------------

    def _free(self) -> int:
        limit = self.throttle.limit
        if self.memory is not None:
            limit = self.memory.limit(limit)
        return limit - len(self._inflight) - self.threads.orphans

    async def _fetch(self) -> None:
        idle = IDLE_MIN
        while not self._stopping:
            free = self._free()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if free < self._gather and self._inflight:
                # Under load slots free up one by one: gather a few (at most GATHER_WAIT)
                # so that one round trip starts several jobs.
                deadline = time.monotonic() + GATHER_WAIT
                while self._free() < self._gather and (left := deadline - time.monotonic()) > 0:
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), left)
                free = self._free()
            ids = [uuid.uuid4().hex for _ in range(min(free, MAX_BATCH))]
            committed = self._commit.count  # a burst run stops only if none landed meanwhile
            asked = time.monotonic()  # the leases count from before Redis started the jobs
            try:
                jobs = await self.state.start(ids)
            except TRANSIENT as exc:
                log.warning("redis.unavailable", error=f"{type(exc).__name__}: {exc}")
                await after_redis_error(self.state.client, exc)
                self.state.epoch.stale = True  # a restart or a failover? look before starting
                await asyncio.sleep(idle := min(BACKOFF_MAX, max(idle, 0.05) * 2))
                continue
            if jobs:
                idle = IDLE_MIN
                for job in jobs:
                    self._launch(job, asked)
                continue
            if self.burst and self._open == 0 and self._commit.count == committed:
                # Nothing left, and no ending committed while we looked (one may have queued
                # a contact's next event after our look).
                self.stop()
                return
            self._slot_freed.clear()
            try:
                # Woken when a slot frees or an ending is committed (which may have released
                # a conversation's next event): look again at once.
                await asyncio.wait_for(self._slot_freed.wait(), idle)
                idle = IDLE_MIN
            except TimeoutError:
                idle = min(IDLE_MAX, idle * 2)

    def _launch(self, job: StartedJob, asked: float) -> None:
        token = ExecutionToken(job.id, job.execution_id)
        lease = Lease(token, self.state.lease, asked)
        member = f"{job.id}:{job.execution_id}"
        task = asyncio.create_task(self._execute(member, job, token, lease))
        self._inflight[member] = Running(job, token, task, lease)
        self._open += 1
        self.jobs_run += 1

    async def _execute(
        self, member: str, job: StartedJob, token: ExecutionToken, lease: Lease
    ) -> None:
        ending: Ending | None
        # This task's context (and what it starts: handler threads, their calls back on the
        # loop) carries the execution's send fence and deadline.
        current_fence.set(lease)
        if job.requeued_while_held and job.send_in_doubt:
            # RQ put it back while one of ours held it (a registry cleanup on a clock far
            # ahead, `rq requeue`): that execution may be sending right now. Its requests end
            # before its lease does (less the margin), counted from a renewal before now; the
            # search for its send must come a LATE_RECORDING later, as after a re-drive.
            hold = self.state.lease - send_margin(self.state.lease) + LATE_RECORDING
            log.warning("job.requeued_while_held", job_id=job.id, held_s=round(hold, 3))
            self._inflight.pop(member, None)
            self._slot_freed.set()
            self._commit.add(Ending(job, "handback", hold=hold))
            return
        try:
            async with asyncio.timeout(job.timeout) as deadline:
                job_deadline.set(deadline)
                ending = await self._runner(job, token)
        except asyncio.CancelledError:
            # Handed back (stop), or superseded (its lease was taken over): the latter's
            # ending would be refused anyway.
            hold = token.hold()  # a send in doubt is held until the portal shows it
            ending = Ending(job, "handback", hold=hold) if self._handing_back else None
        except Exception as exc:  # timed out, Redis lost mid-job, or a bug of ours
            token.cancel()  # a sync handler's thread may still run: no more effects
            ending = engine_ending(
                job, exc, self.state.max_attempts, token.annotate, hold=token.hold()
            )
        finally:
            self._inflight.pop(member, None)
            self._slot_freed.set()
        if ending is None:
            self._ended(1)
        else:
            self._commit.add(ending)

    def _ended(self, count: int) -> None:
        self._open -= count
        self._check_done()

    def _on_committed(self, count: int) -> None:
        self._slot_freed.set()  # the contacts' next events may be queued now
        self._ended(count)
