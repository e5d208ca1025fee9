"""The worker entry function that every job of format version 1 calls.

``service.jobs.JOB_FUNCTION`` names it; the receiver writes jobs that call it
with the keyword arguments documented there (and in the README).

Retries: a handler that raises makes the job return a jittered ``rq.Retry``
(exponential backoff with full jitter; the failing handler's own
:class:`~workers.router.RetryPolicy` if it declared one, else the default).
Handlers that already completed for this event are skipped on the retry. An
error retrying cannot fix fails the job at once; so does the last attempt, with
the handler's exception, so the failed registry shows why.
"""

from __future__ import annotations

import math
import random
from typing import Any

import structlog
from rq import Retry, get_current_job

from service.jobs import FORMAT_VERSION
from service.model import parse_event
from service.portal import RateLimited
from workers.dispatch import HandlerFailed, dispatch
from workers.router import RetryPolicy
from workers.runtime import Runtime

__all__ = ["UnsupportedJobFormat", "get_runtime", "process_event", "set_runtime"]

log = structlog.get_logger("wabahooks.worker")

_runtime: Runtime | None = None


class UnsupportedJobFormat(Exception):
    """The job was written by a receiver speaking a newer job format."""


def set_runtime(runtime: Runtime | None) -> None:
    """Use ``runtime`` for the jobs of this process (``None``: build it from the environment)."""
    global _runtime
    _runtime = runtime


def get_runtime(connection: Any = None) -> Runtime:
    """Return this process's runtime, building it from the environment the first time."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_env(connection=connection)
    return _runtime


def retry_delay(policy: RetryPolicy, attempt: int, error: BaseException) -> int:
    """Seconds to wait before attempt ``attempt + 1``: full jitter, at least Retry-After."""
    ceiling = min(policy.cap, policy.base * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if isinstance(error, RateLimited) and error.retry_after:
        delay = max(delay, error.retry_after)
    return max(1, math.ceil(delay))  # RQ schedules in whole seconds; 0 would not wait


def process_event(
    envelope: Any,
    *,
    event_key: str,
    kind: str,
    conversation: str | None,
    received_at: str,
    version: int,
) -> Retry | None:
    """Run the handlers for one received event; return a Retry if one failed."""
    if version > FORMAT_VERSION:
        raise UnsupportedJobFormat(
            f"job format {version} is newer than this worker's {FORMAT_VERSION}: "
            "upgrade the workers"
        )
    job = get_current_job()
    if job is None:
        raise RuntimeError("process_event runs inside an RQ job (the ledger is the job's)")
    runtime = get_runtime(job.connection)
    attempt = (job.number_of_retries or 0) + 1
    with structlog.contextvars.bound_contextvars(
        event_key=event_key, job_id=job.id, queue=job.origin, kind=kind, attempt=attempt
    ):
        event = parse_event(envelope, kind=kind, event_key=event_key)
        ledger = runtime.ledger(job)
        metrics = runtime.metrics
        try:
            dispatch(
                event,
                runtime.registrations,
                ledger=ledger,
                context_for=lambda registration, replies: runtime.context(
                    registration,
                    ledger=ledger,
                    conversation=conversation,
                    replies_expected=replies,
                ),
                metrics=metrics,
            )
        except HandlerFailed as failure:
            policy = failure.retry or runtime.retry
            if failure.permanent or attempt >= policy.max_attempts:
                log.error(
                    "event.failed",
                    handler=failure.registration.name,
                    reason="not retryable" if failure.permanent else "attempts exhausted",
                )
                if metrics is not None:
                    reason = "permanent" if failure.permanent else "exhausted"
                    metrics.event(kind, f"failed_{reason}")
                raise
            delay = retry_delay(policy, attempt, failure.error)
            log.warning("event.retry", handler=failure.registration.name, in_seconds=delay)
            if metrics is not None:
                metrics.event(kind, "retry")
            return Retry(max=policy.max_attempts - 1, interval=delay)
        if metrics is not None:
            metrics.event(kind, "done")
    return None
