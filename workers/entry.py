"""The worker's entry point: :func:`run_event`, the engine's coroutine for one job.

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

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog

from service.identity import Kind
from service.portal import RateLimited
from service.typedevents import Event, parse_event
from workers.archive import Journey, replayed_registrations
from workers.converse import JOB_KINDS, JobTools, run_job
from workers.convredis import CONVERSATION_VERSION
from workers.dispatch import HandlerFailed
from workers.effects import CLOCK_SKEW
from workers.execution import ExecutionToken, Superseded
from workers.policy.nudge import NUDGE_KIND
from workers.policy.router import clear_steps
from workers.router import RetryPolicy
from workers.runtime import Runtime

__all__ = [
    "Done",
    "Failed",
    "RetryLater",
    "UnsupportedJobFormat",
    "process_event",
    "retry_delay",
    "run_event",
]

log = structlog.get_logger("wabahooks.worker")


class UnsupportedJobFormat(Exception):
    """The job was written by a receiver (or worker) speaking a newer job format."""


#: The newest job format this worker reads: 1 (events), 2 (flush and timeout jobs).
READS_VERSION = CONVERSATION_VERSION
#: Every job kind this worker knows: the events', conversations' flush and timeout, and the
#: conversation policy's agent nudge (an envelope like an event's, format 1).
KNOWN_KINDS = frozenset([*(k.value for k in Kind), *JOB_KINDS, NUDGE_KIND])


@dataclass(frozen=True)
class Done:
    """Every matching handler ran (or none matched): the job is finished.

    ``sent``: sends recorded but not yet written, (sent set key, message id), which the
    engine writes with the job's end (``workers.ledger``)."""

    sent: tuple[tuple[str, str], ...] = ()


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
    """Seconds to wait before attempt ``attempt + 1``: the policy's backoff, at least the
    portal's Retry-After when it rate-limited us."""
    retry_after = error.retry_after if isinstance(error, RateLimited) else None
    return policy.delay(attempt, retry_after or None)


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
    journey: Journey | None = None,
    unproven: bool = False,
) -> Done | RetryLater | Failed:
    """Run the handlers for one job's event; return what the engine should do with the job.

    ``kwargs``: the job's keyword arguments (format version 1, ``service.jobs``);
    ``ledger_fields``: the job hash's ``wh:…`` fields as fetched (prefix stripped), or
    None to read them; ``attempt``: 1-based, counted by the engine (kills count);
    ``token``: this execution (the ledger refuses writes once it is superseded);
    ``journey``: records the handlers' outcomes and the ledger for the archive;
    ``unproven``: the job was enqueued before Redis last restarted or failed over
    (``workers.epoch``): its sends without an intent look in the history first, back to
    :func:`unproven_since`.
    """
    kind = str(kwargs.get("kind", ""))
    event_key = str(kwargs.get("event_key", ""))
    metrics = runtime.metrics if journey is None else journey
    with structlog.contextvars.bound_contextvars(
        event_key=event_key, job_id=job_id, queue=queue, kind=kind, attempt=attempt
    ):
        version = kwargs.get("version")
        if not isinstance(version, int) or version > READS_VERSION or kind not in KNOWN_KINDS:
            error = UnsupportedJobFormat(
                f"job format {version} (kind {kind!r}) is not this worker's (format "
                f"{READS_VERSION}, kinds {', '.join(sorted(KNOWN_KINDS))}): upgrade the "
                "workers, then `wabahooks failed requeue` it"
            )
            log.error("event.failed", reason="unsupported job format", version=version)
            metrics.event(kind, "failed_unsupported")
            return Failed("unsupported", _traceback(error))
        event: Event | None = None
        try:
            if kind not in JOB_KINDS:
                event = parse_event(kwargs["envelope"], kind=kind, event_key=event_key)
        except Exception as exc:  # a job we wrote ourselves: retrying cannot fix it
            log.error("event.failed", reason="unreadable job")
            metrics.event(kind, "failed_permanent")
            return Failed("permanent", _traceback(exc))
        conversation = kwargs.get("conversation")
        ledger = runtime.ledger(token, ledger_fields)
        lost_from = unproven_since(kwargs, await ledger.clock()) if unproven else None
        if journey is not None:
            journey.attach(ledger)
        try:
            conduct = runtime.policy  # the conversation policy (not a RetryPolicy)
            scope = None
            if conduct is not None and event is not None:
                scope = await conduct.scope(event, job_id=job_id, ledger=ledger)
                await clear_steps(scope)  # a STOP or "agent" is no step's answer
            elif conduct is not None and kind in ("flush", "timeout"):
                # A burst's replies are gated too; a step's timeout sees ctx.window and the
                # opt-out check like any handler (its contact: the conversation).
                contact = str(conversation or "")
                scope = await conduct.scope(None, job_id=job_id, ledger=ledger, contact=contact)
            await run_job(
                kind,
                event,
                kwargs,
                replayed_registrations(runtime.registrations_for(kind), kwargs),
                JobTools(
                    ledger=ledger,
                    context_for=lambda registration, replies: runtime.context(
                        registration,
                        ledger=ledger,
                        conversation=conversation,
                        replies_expected=replies,
                        policy=scope,
                        unproven_since=lost_from,
                    ),
                    store=runtime.conversations(token, queue),
                    run_sync=runtime.run_sync,
                    metrics=metrics,
                    gate=None if scope is None else scope.gate,
                ),
            )
        except Superseded as exc:
            log.warning("event.superseded", execution=token.execution_id)
            metrics.event(kind, "superseded")
            return Failed("superseded", _traceback(exc))
        except HandlerFailed as failure:
            try:
                await ledger.flush()  # what the handlers before it did, for the next attempt
            except Superseded as exc:
                log.warning("event.superseded", execution=token.execution_id)
                metrics.event(kind, "superseded")
                return Failed("superseded", _traceback(exc))
            policy = failure.retry or runtime.retry
            if failure.permanent or attempt >= policy.max_attempts:
                log.error(
                    "event.failed",
                    handler=failure.registration.label,
                    reason="not retryable" if failure.permanent else "attempts exhausted",
                )
                reason: FailureReason = "permanent" if failure.permanent else "exhausted"
                metrics.event(kind, f"failed_{reason}")
                return Failed(reason, _traceback(failure))
            delay = retry_delay(policy, attempt, failure.error)
            log.warning("event.retry", handler=failure.registration.label, in_seconds=delay)
            metrics.event(kind, "retry")
            return RetryLater(delay, failure.registration.name, str(failure))
        metrics.event(kind, "done")
        return Done(tuple(ledger.take_sent()))


#: How far back an unproven job's sends are looked for when its event says nothing of when
#: it arrived (a flush or a step's timeout; ``received_at`` is the receiver's clock).
UNPROVEN_LOOKBACK = 3600.0


def unproven_since(kwargs: Mapping[str, Any], now: float) -> float:
    """From when (the ledger's clock) an unproven job's lost sends may be in the history: its
    event's arrival at the receiver, less the clock skew the history search allows; else an
    hour back."""
    received = kwargs.get("received_at")
    if isinstance(received, str):
        try:
            at = datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
        else:
            return min(now, at) - CLOCK_SKEW.total_seconds()
    return now - UNPROVEN_LOOKBACK


def process_event(*_args: Any, **_kwargs: Any) -> None:
    """The job format's function name (``service.jobs.JOB_FUNCTION``). ``wabahooks worker``
    never calls it (it runs :func:`run_event`); another RQ worker would: refuse, saying how."""
    raise RuntimeError(
        "wabahooks jobs run under `wabahooks worker`, not RQ's own worker (which keeps neither "
        "their order nor their exactly-once ledger): stop this worker, start `wabahooks "
        "worker`, then `wabahooks failed requeue --all`"
    )
