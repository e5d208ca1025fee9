"""The worker entry points: :func:`run_event` (the engine's coroutine, one per job) and
:func:`process_event` (TEMPORARY: what RQ's SimpleWorker calls until the engine lands).

``service.jobs.JOB_FUNCTION`` names the job function; the receiver writes jobs that
call it with the keyword arguments documented there (and in the README).

Retries: a handler that raises makes the job retry later (:class:`RetryLater`), after
a jittered delay (exponential backoff with full jitter; the failing handler's own
:class:`~workers.router.RetryPolicy` if it declared one, else the default).
Handlers that already completed for this event are skipped on the retry. An error
retrying cannot fix fails the job at once; so does the last attempt, with the
handler's exception, so the failed registry shows why (:class:`Failed`).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio
import structlog
from rq import Retry, get_current_job

from service.jobs import FORMAT_VERSION
from service.model import parse_event
from service.portal import RateLimited
from workers.dispatch import HandlerFailed, dispatch
from workers.execution import HOLDER_FIELD, ExecutionToken, Superseded
from workers.router import RetryPolicy
from workers.runtime import Runtime, server_kwargs

__all__ = [
    "Done",
    "Failed",
    "RetryLater",
    "UnsupportedJobFormat",
    "get_runtime",
    "process_event",
    "retry_delay",
    "run_event",
    "set_runtime",
]

log = structlog.get_logger("wabahooks.worker")


class UnsupportedJobFormat(Exception):
    """The job was written by a receiver speaking a newer job format."""


@dataclass(frozen=True)
class Done:
    """Every matching handler ran (or none matched): the job is finished."""


@dataclass(frozen=True)
class RetryLater:
    """A handler failed; run the job again in ``delay`` seconds."""

    delay: int
    handler: str
    error: str


FailureReason = Literal["permanent", "exhausted", "unsupported", "superseded"]


@dataclass(frozen=True)
class Failed:
    """The job fails for good (``superseded``: this execution lost the job; drop it quietly)."""

    reason: FailureReason
    #: Text for RQ's failed registry: the traceback of the cause.
    error: str


Outcome = Done | RetryLater | Failed


def retry_delay(policy: RetryPolicy, attempt: int, error: BaseException) -> int:
    """Seconds to wait before attempt ``attempt + 1``: full jitter, at least Retry-After."""
    ceiling = min(policy.cap, policy.base * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if isinstance(error, RateLimited) and error.retry_after:
        delay = max(delay, error.retry_after)
    return max(1, math.ceil(delay))  # RQ schedules in whole seconds; 0 would not wait


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


async def run_event(
    runtime: Runtime,
    *,
    job_id: str,
    queue: str,
    kwargs: Mapping[str, Any],
    ledger_fields: Mapping[str, str] | None,
    attempt: int,
    token: ExecutionToken,
) -> Done | RetryLater | Failed:
    """Run the handlers for one job's event; return what the engine should do with the job.

    ``kwargs``: the job's keyword arguments (format version 1, ``service.jobs``);
    ``ledger_fields``: the job hash's ``wh:…`` fields as fetched (prefix stripped), or
    None to read them; ``attempt``: 1-based, counted by the engine (kills count);
    ``token``: this execution (the ledger refuses writes once it is superseded).
    """
    kind = str(kwargs.get("kind", ""))
    event_key = str(kwargs.get("event_key", ""))
    metrics = runtime.metrics
    with structlog.contextvars.bound_contextvars(
        event_key=event_key, job_id=job_id, queue=queue, kind=kind, attempt=attempt
    ):
        version = kwargs.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            error = UnsupportedJobFormat(
                f"job format {version} is not this worker's {FORMAT_VERSION}: upgrade the workers"
            )
            log.error("event.failed", reason="unsupported job format", version=version)
            metrics.event(kind, "failed_unsupported")
            return Failed("unsupported", _traceback(error))
        try:
            event = parse_event(kwargs["envelope"], kind=kind, event_key=event_key)
        except Exception as exc:  # a job we wrote ourselves: retrying cannot fix it
            log.error("event.failed", reason="unreadable job")
            metrics.event(kind, "failed_permanent")
            return Failed("permanent", _traceback(exc))
        conversation = kwargs.get("conversation")
        ledger = runtime.ledger(token, ledger_fields)
        try:
            await dispatch(
                event,
                runtime.registrations,
                ledger=ledger,
                context_for=lambda registration, replies: runtime.context(
                    registration,
                    ledger=ledger,
                    conversation=conversation,
                    replies_expected=replies,
                ),
                run_sync=runtime.run_sync,
                metrics=metrics,
            )
        except Superseded as exc:
            log.warning("event.superseded", execution=token.execution_id)
            metrics.event(kind, "superseded")
            return Failed("superseded", _traceback(exc))
        except HandlerFailed as failure:
            policy = failure.retry or runtime.retry
            if failure.permanent or attempt >= policy.max_attempts:
                log.error(
                    "event.failed",
                    handler=failure.registration.name,
                    reason="not retryable" if failure.permanent else "attempts exhausted",
                )
                reason: FailureReason = "permanent" if failure.permanent else "exhausted"
                metrics.event(kind, f"failed_{reason}")
                return Failed(reason, _traceback(failure))
            delay = retry_delay(policy, attempt, failure.error)
            log.warning("event.retry", handler=failure.registration.name, in_seconds=delay)
            metrics.event(kind, "retry")
            return RetryLater(delay, failure.registration.name, str(failure))
        metrics.event(kind, "done")
        return Done()


# -- TEMPORARY: RQ's SimpleWorker until the engine lands ----------------------------------
# Everything below is deleted at integration (the engine calls run_event itself). It
# runs run_event on one long-lived event loop in a daemon thread, so the runtime's
# redis.asyncio client serves every job; the job function blocks RQ's thread until done.

_runtime: Runtime | None = None
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def set_runtime(runtime: Runtime | None) -> None:
    """TEMPORARY. Use ``runtime`` for the jobs of this process (``None``: build it from the
    environment); a runtime replaced here is closed."""
    global _runtime
    previous, _runtime = _runtime, runtime
    if previous is not None and previous is not runtime and _loop is not None:
        asyncio.run_coroutine_threadsafe(previous.aclose(), _loop).result()


def get_runtime(connection: redis.Redis | None = None) -> Runtime:
    """TEMPORARY. Return this process's runtime, building it from the environment the first
    time (without ``REDIS_URL``: on the server of ``connection``, RQ's own)."""
    global _runtime
    if _runtime is None:
        client = None
        if connection is not None and not os.environ.get("REDIS_URL", "").strip():
            client = redis.asyncio.Redis(**server_kwargs(connection))
        _runtime = Runtime.from_env(redis=client)
    return _runtime


def _job_loop() -> asyncio.AbstractEventLoop:
    """TEMPORARY. The process's event loop for jobs, in a daemon thread, started once."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="wabahooks-loop", daemon=True).start()
            _loop = loop
        return _loop


def process_event(
    envelope: Any,
    *,
    event_key: str,
    kind: str,
    conversation: str | None,
    received_at: str,
    version: int,
) -> Retry | None:
    """TEMPORARY (deleted with RQ's SimpleWorker): run :func:`run_event` for the current RQ
    job; return a Retry if a handler failed, raise if the job fails for good."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("process_event runs inside an RQ job (the ledger is the job's)")
    runtime = get_runtime(job.connection)
    # The engine writes the holder when it starts a job; RQ's worker does not, so here.
    token = ExecutionToken(job.id, uuid.uuid4().hex)
    job.connection.hset(job.key, HOLDER_FIELD, token.execution_id)
    kwargs = {
        "envelope": envelope,
        "event_key": event_key,
        "kind": kind,
        "conversation": conversation,
        "received_at": received_at,
        "version": version,
    }
    fields = getattr(job, "ledger_fields", None)
    future = asyncio.run_coroutine_threadsafe(
        run_event(
            runtime,
            job_id=job.id,
            queue=job.origin,
            kwargs=kwargs,
            ledger_fields=fields,
            attempt=(job.number_of_retries or 0) + 1,
            token=token,
        ),
        _job_loop(),
    )
    try:
        outcome = future.result()
    except BaseException:  # RQ's job timeout (SIGALRM) or a cold stop: refuse its effects
        token.cancelled = True
        future.cancel()
        raise
    if isinstance(outcome, RetryLater):
        policy = runtime.retry
        for registration in runtime.registrations:
            if registration.name == outcome.handler and registration.retry is not None:
                policy = registration.retry
        return Retry(max=policy.max_attempts - 1, interval=outcome.delay)
    if isinstance(outcome, Failed):
        if outcome.reason == "unsupported":
            raise UnsupportedJobFormat(outcome.error)
        raise JobFailed(outcome.error)
    return None


class JobFailed(Exception):
    """TEMPORARY. The job failed for good; the message is the cause's traceback."""
