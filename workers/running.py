"""What the engine runs for each job: our events through the handlers, anything else as RQ would.

A job of format version 1 (``service.jobs.JOB_FUNCTION``) goes to
``workers.entry.run_event`` (handlers, ledger, retries). Any other job on the queue
(``rq enqueue`` by hand, a test's helper) runs its function as RQ's worker would: a
coroutine function on the loop, anything else in the thread pool; a returned
``rq.Retry`` schedules it again; an exception fails it.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import structlog
from rq import Retry
from rq.utils import import_attribute

from service import tracing
from service.jobs import JOB_FUNCTION
from workers.archive import Journey
from workers.entry import Done, Failed, RetryLater, run_event
from workers.execution import ExecutionToken
from workers.ledger import ledger_fields
from workers.rqstate import ABANDONED, Ending, RQState, StartedJob
from workers.runtime import Runtime
from workers.threads import Threads

__all__ = ["JobRunner"]

log = structlog.get_logger("wabahooks.worker")


class JobRunner:
    """Runs started jobs for the engine (see the module docstring)."""

    def __init__(self, threads: Threads, runtime: Runtime | None = None) -> None:
        self._threads = threads
        self._runtime = runtime

    async def __call__(self, job: StartedJob, token: ExecutionToken) -> Ending | None:
        try:
            func, args, kwargs = job.call()
        except Exception as exc:  # corrupt or foreign data: nothing to retry
            return Ending(job, "failed", error=f"the job's data cannot be read: {exc!r}")
        if func == JOB_FUNCTION and self._runtime is not None:
            return await self._event(self._runtime, job, token, kwargs)
        return await self._foreign(job, func, args, kwargs)

    async def _event(
        self, runtime: Runtime, job: StartedJob, token: ExecutionToken, kwargs: dict[str, Any]
    ) -> Ending | None:
        archive = runtime.archive
        if archive is None:
            return await self._ending(runtime, job, token, kwargs, None)
        journey = Journey(runtime.metrics)
        # An ending the engine makes itself (a timeout, Redis lost mid-job) is archived too.
        token.annotate = lambda ending: archive.record(ending, kwargs, journey)
        ending = await self._ending(runtime, job, token, kwargs, journey)
        return None if ending is None else token.annotate(ending)  # written with the ending

    async def abandoned(self, state: RQState, job_ids: list[str]) -> None:
        """Archive the events whose jobs the re-drive failed (their workers died on their last
        attempt): failed, with the reason, and no handler outcomes (the record of an attempt
        before, if one ended, is replaced)."""
        archive = self._runtime.archive if self._runtime is not None else None
        if archive is None:
            return
        specs = []
        for job_id in job_ids:
            fields = await state.job_fields(job_id)
            attempts = int(fields.get(b"wh:attempts", b"0") or 0)
            job = StartedJob(job_id, "", attempts, fields, started=0.0)
            try:
                func, _args, kwargs = job.call()
            except Exception:  # gone, or not ours: nothing to archive
                continue
            if func == JOB_FUNCTION:
                ending = Ending(job, "failed", error=ABANDONED)
                specs.append(archive.record(ending, kwargs, Journey()).archive)
        await state.write_archive(specs)

    async def _ending(
        self,
        runtime: Runtime,
        job: StartedJob,
        token: ExecutionToken,
        kwargs: dict[str, Any],
        journey: Journey | None,
    ) -> Ending | None:
        with tracing.consumer_span(
            kwargs, job_id=job.id, queue=job.origin, attempt=job.attempt
        ) as span:  # a shared no-op unless traces are on
            outcome = await run_event(
                runtime,
                job_id=job.id,
                queue=job.origin,
                kwargs=kwargs,
                ledger_fields=ledger_fields(job.fields),
                attempt=job.attempt,
                token=token,
                journey=journey,
                unproven=job.unproven,
            )
            span.outcome(*_outcome(outcome))
        if isinstance(outcome, Done):
            return Ending(job, "done", sent=outcome.sent, sent_ttl=runtime.sent_ttl)
        if isinstance(outcome, RetryLater):
            hold = token.hold()  # an unknown outcome: held until the portal shows the send
            return Ending(job, "retry", error=outcome.error, delay=outcome.delay, hold=hold)
        assert isinstance(outcome, Failed)
        if outcome.reason == "superseded":
            return None
        return Ending(job, "failed", error=outcome.error)

    async def _foreign(
        self, job: StartedJob, func: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Ending:
        try:
            function = import_attribute(func)
            if asyncio.iscoroutinefunction(function):
                result = await function(*args, **kwargs)
            else:
                result = await self._threads.run(function, *args, **kwargs)
        except Exception as exc:
            log.warning("job.failed", job_id=job.id, queue=job.origin, error=repr(exc))
            return Ending(job, "failed", error="".join(traceback.format_exception(exc)))
        if isinstance(result, Retry):
            tries = int(job.fields.get(b"number_of_retries", b"0") or 0)
            if tries >= result.max:
                return Ending(job, "failed", error=f"retries exhausted ({result.max} allowed)")
            delay = Retry.get_interval(tries, result.intervals)
            return Ending(job, "retry", error="the job asked to be retried", delay=delay)
        return Ending(job, "done", value=result)


def _outcome(outcome: Done | RetryLater | Failed) -> tuple[str, bool]:
    """The trace's name for how a job attempt ended (``wabahooks_events_total``'s), and
    whether that is a failure."""
    if isinstance(outcome, Done):
        return "done", False
    if isinstance(outcome, RetryLater):
        return "retry", True
    return ("superseded" if outcome.reason == "superseded" else f"failed_{outcome.reason}"), True
