"""How executions end in Redis: the endings the engine makes itself, and the group commit.

Most endings come from the job's runner (``workers.running``). The engine makes the rest
(:func:`engine_ending`): a timeout or Redis lost mid-job is retried like a handler's failure
(the default handler backoff) until the job's attempts are spent; a crash of ours fails the
job at once, loudly. :class:`GroupCommit` writes the endings in batches of up to
:data:`MAX_BATCH`, one round trip each (``workers/lua/finish.lua``), which also queues each
conversation's next event.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Awaitable, Callable

import structlog

from workers.handlerdata import RetryPolicy
from workers.maintenance import TRANSIENT
from workers.rqstate import Ending, RQState, StartedJob

__all__ = ["MAX_BATCH", "GroupCommit", "engine_ending"]

log = structlog.get_logger("wabahooks.worker")


#: Most jobs started, or ended, in one round trip.
MAX_BATCH = 64


def engine_ending(
    job: StartedJob,
    error: BaseException,
    max_attempts: int,
    annotate: Callable[[Ending], Ending] = lambda ending: ending,
    hold: float = 0.0,
) -> Ending:
    """The ending of an execution that raised ``error`` out of its runner: a timeout
    (``TimeoutError``) or Redis gone mid-job is retried, anything else is a bug of ours
    and fails the job with its traceback. ``annotate`` adds what the runner knows (the
    archive's entry: ``ExecutionToken.annotate``); should it fail, the ending goes as is.
    ``hold``: the least delay of a retry (a send in doubt, ``ExecutionToken.hold``)."""
    if isinstance(error, TimeoutError):
        log.warning("job.timeout", job_id=job.id, queue=job.origin, timeout=job.timeout)
        reason = f"JobTimeout: the job ran longer than its timeout ({job.timeout} s)"
    elif isinstance(error, TRANSIENT):  # a ledger write, say: try again later
        log.warning("job.redis_unavailable", job_id=job.id, queue=job.origin, error=repr(error))
        reason = f"Redis unavailable during the job: {error!r}"
    else:
        log.error("job.crashed", job_id=job.id, queue=job.origin, exc_info=error)
        reason = "".join(traceback.format_exception(error))
    if isinstance(error, (TimeoutError, *TRANSIENT)) and job.attempt < max_attempts:
        delay = RetryPolicy().delay(job.attempt)
        ending = Ending(job, "retry", error=reason, delay=delay, hold=hold)
    else:
        ending = Ending(job, "failed", error=reason)
    try:
        return annotate(ending)
    except Exception:  # a record of the job, not its fate: the job still ends
        log.exception("job.annotate_failed", job_id=job.id, queue=job.origin)
        return ending


class GroupCommit:
    """Endings queued by the engine's executions, written in batches.

    ``retry_redis`` runs a Redis step until Redis answers; ``committed(count)`` is told of
    each batch written; ``busy()`` says whether enough jobs run that waiting a moment lets
    a few more endings share the round trip; ``keep_results()`` whether a batch keeps its
    results (no while Redis is full: ``workers.pressure``).
    """

    def __init__(
        self,
        state: RQState,
        *,
        retry_redis: Callable[[Callable[[], Awaitable[list[str]]]], Awaitable[list[str]]],
        committed: Callable[[int], None],
        busy: Callable[[], bool],
        gather_wait: float,
        keep_results: Callable[[], bool] = lambda: True,
    ) -> None:
        self.state = state
        self._keep_results = keep_results
        self._retry_redis = retry_redis
        self._committed = committed
        self._busy = busy
        self._gather_wait = gather_wait
        self._endings: list[Ending] = []
        self._ready = asyncio.Event()
        #: Endings written so far.
        self.count = 0

    def add(self, ending: Ending) -> None:
        """Queue ``ending`` for the next batch."""
        self._endings.append(ending)
        self._ready.set()

    async def run(self, closing: Callable[[], bool]) -> None:
        """Write endings as they come, until ``closing()`` (or cancelled: the batch in
        flight is kept for the next run)."""
        while not closing():
            await self._ready.wait()
            if self._busy():
                await asyncio.sleep(self._gather_wait)  # let a few more end with it
            self._ready.clear()
            while self._endings:
                batch = self._endings[:MAX_BATCH]
                del self._endings[:MAX_BATCH]
                try:
                    step = functools.partial(
                        self.state.finish, batch, keep_results=self._keep_results()
                    )
                    statuses = await self._retry_redis(step)
                except BaseException:
                    self._endings[:0] = batch  # cancelled mid-flight: kept for the next try
                    raise
                self.count += len(batch)
                for ending, status in zip(batch, statuses, strict=True):
                    if status == "superseded":
                        log.warning("job.superseded", job_id=ending.job.id, queue=ending.job.origin)
                self._committed(len(batch))
