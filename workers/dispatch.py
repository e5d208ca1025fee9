"""Dispatch: run one event's matching handlers, in order, each at most once.

Order: the registrations' order (built-in modules first, then ``WABAHOOKS_HANDLERS``
in the order listed, then entry-point modules by name; registration order within a
module). A function registered by several decorators runs once. Handlers already
marked done in the ledger (an earlier attempt of this job) are skipped. A handler
returning :data:`~workers.router.STOP` skips the rest. The first handler that
raises ends the run with :class:`HandlerFailed`; the job is retried from there.

A handler that returns a :class:`~workers.router.StatusTransition` (the status
tracker) publishes it: the ``status_changed`` handlers after it get it instead of the
event (none run without one). It is kept in the ledger, so a retry that skips the
tracker still hands the same transition on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from service.model import Event
from service.portal import OutcomeUnknown, PortalError
from workers.context import Context
from workers.ledger import Ledger
from workers.router import STOP, Registration, RetryPolicy, StatusTransition

if TYPE_CHECKING:
    from workers.metrics import WorkerMetrics

__all__ = ["HandlerFailed", "Permanent", "dispatch"]

log = structlog.get_logger("wabahooks.dispatch")


class Permanent(Exception):
    """Raise from a handler for a failure retrying cannot fix: the job fails at once."""


class HandlerFailed(Exception):
    """A handler raised; ``permanent`` says whether retrying can help."""

    def __init__(self, registration: Registration, error: BaseException) -> None:
        self.registration = registration
        self.error = error
        self.permanent = is_permanent(error)
        advice = "not retried" if self.permanent else "will be retried"
        super().__init__(f"handler {registration.name} failed ({advice}): {error}")

    @property
    def retry(self) -> RetryPolicy | None:
        """The failing handler's own retry policy, if it declared one."""
        return self.registration.retry


def is_permanent(error: BaseException) -> bool:
    """Return whether retrying cannot fix ``error`` (the portal's 4xx, validation, Permanent)."""
    if isinstance(error, Permanent):
        return True
    if isinstance(error, OutcomeUnknown):
        return False  # the retry looks for the send before sending again
    if isinstance(error, PortalError):
        return not error.retryable
    return False


ContextFactory = Callable[[Registration, bool], Context]

#: The ledger step under which a publishing handler's transition is kept.
TRANSITION_STEP = "published:transition"


def _recorded_transition(ledger: Ledger, handler: str) -> StatusTransition | None:
    entry = ledger.get(handler, TRANSITION_STEP)
    if entry is None or entry.result is None:
        return None
    return StatusTransition.from_json(entry.result)


def dispatch(
    event: Event,
    registrations: Sequence[Registration],
    *,
    ledger: Ledger,
    context_for: ContextFactory,
    metrics: WorkerMetrics | None = None,
) -> int:
    """Run the handlers that match ``event``; return how many ran. Raise :class:`HandlerFailed`."""
    matching: list[Registration] = []
    for registration in registrations:
        if registration.matches(event) and all(r.name != registration.name for r in matching):
            matching.append(registration)
    if not matching:
        log.info("event.unhandled", kind=event.kind)
        if metrics is not None:
            metrics.unhandled(event.kind)
        return 0
    replies_expected = any(r.replies for r in matching)
    transition: StatusTransition | None = None
    ran = 0
    for registration in matching:
        if registration.transitions and (
            transition is None or not registration.matches_transition(transition)
        ):
            continue
        if ledger.handler_done(registration.name):
            log.info(
                "handler.skipped", handler=registration.name, reason="done in an earlier attempt"
            )
            if metrics is not None:
                metrics.handler(registration.name, "skipped")
            transition = transition or _recorded_transition(ledger, registration.name)
            continue
        argument = transition if registration.transitions else event
        started = time.perf_counter()
        try:
            result = registration.func(argument, context_for(registration, replies_expected))
        except Exception as exc:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            failure = HandlerFailed(registration, exc)
            log.warning(
                "handler.failed",
                handler=registration.name,
                outcome="permanent" if failure.permanent else "retry",
                duration_ms=duration_ms,
                error=f"{type(exc).__name__}: {exc}",
            )
            if metrics is not None:
                outcome = "permanent" if failure.permanent else "retry"
                metrics.handler(registration.name, outcome, duration_ms / 1000)
            raise failure from exc
        if isinstance(result, StatusTransition):
            transition = result
            if registration is not matching[-1]:
                ledger.complete(registration.name, TRANSITION_STEP, result.to_json())
        if registration is not matching[-1] and result != STOP:
            # Only a later handler's failure can make this one's event run again.
            # (After the last one the job finishes; should it ever run again anyway,
            # the ledger's step records still keep its sends from repeating.)
            ledger.mark_handler_done(registration.name)
        ran += 1
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        stopped = result == STOP
        log.info(
            "handler.done",
            handler=registration.name,
            outcome="stop" if stopped else "ok",
            duration_ms=duration_ms,
        )
        if metrics is not None:
            metrics.handler(registration.name, "stop" if stopped else "ok", duration_ms / 1000)
        if stopped:
            break
    return ran
