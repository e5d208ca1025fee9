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

``async def`` handlers run on the event loop; plain ``def`` handlers run through
``run_sync`` (the engine's bounded thread pool) with a blocking :class:`Context`
whose calls go back to this loop. A handler whose execution was superseded
(:class:`~workers.execution.Superseded`) ends the run at once, unwrapped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import structlog

from service import tracing
from service.portal import OutcomeUnknown, PortalError
from service.typedevents import Event
from workers.bridge import Bridge
from workers.context import AsyncContext
from workers.execution import Superseded
from workers.ledger import Ledger
from workers.router import STOP, Registration, RetryPolicy, StatusTransition

__all__ = [
    "NO_METRICS",
    "ContextFactory",
    "HandlerFailed",
    "Metrics",
    "NoMetrics",
    "Permanent",
    "RunSync",
    "Gate",
    "dispatch",
    "replies_expected",
    "run_in_default_executor",
]

log = structlog.get_logger("wabahooks.dispatch")

T = TypeVar("T")


class Permanent(Exception):
    """Raise from a handler for a failure retrying cannot fix: the job fails at once."""


class HandlerFailed(Exception):
    """A handler raised; ``permanent`` says whether retrying can help."""

    def __init__(self, registration: Registration, error: BaseException) -> None:
        self.registration = registration
        self.error = error
        self.permanent = is_permanent(error)
        # Whether it *will* be retried depends on the attempts left, known to the caller.
        advice = " (permanent: not retried)" if self.permanent else ""
        super().__init__(f"handler {registration.label} failed{advice}: {error}")

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


class Metrics(Protocol):
    """Where job and handler outcomes are counted (``workers.metrics.WorkerMetrics``)."""

    def event(self, kind: str, outcome: str) -> None: ...
    def unhandled(self, kind: str) -> None: ...
    def handler(self, handler: str, outcome: str, seconds: float | None = None) -> None: ...


class NoMetrics:
    """Counts nothing: the metrics of a process that exports none (and of the Harness)."""

    def event(self, kind: str, outcome: str) -> None:
        pass

    def unhandled(self, kind: str) -> None:
        pass

    def handler(self, handler: str, outcome: str, seconds: float | None = None) -> None:
        pass


NO_METRICS = NoMetrics()


class RunSync(Protocol):
    """Runs a blocking function off the event loop (the engine's thread pool)."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


async def run_in_default_executor(fn: Callable[..., T], /, *args: Any) -> T:
    """Run ``fn(*args)`` in the running loop's default executor, with this task's context
    (the job's bound log context)."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(None, call)


ContextFactory = Callable[[Registration, bool], AsyncContext]
#: Why a handler that declared ``replies=`` must not run now (None: it may); called with
#: None first, for any reply (whether "typing…" may be shown). ``workers.policy``'s gate.
Gate = Callable[[Event, Registration | None], Awaitable[str | None]]

#: The ledger step under which a publishing handler's transition is kept.
TRANSITION_STEP = "published:transition"


async def _recorded_transition(ledger: Ledger, handler: str) -> StatusTransition | None:
    entry = await ledger.get(handler, TRANSITION_STEP)
    if entry is None or entry.result is None:
        return None
    return StatusTransition.from_json(entry.result)


async def replies_expected(
    event: Event, matching: Sequence[Registration], context_for: ContextFactory
) -> bool:
    """Whether a matching handler will reply: declared, or decided now (before any runs)."""
    for registration in matching:
        decision = registration.replies
        if decision is True:
            return True
        if decision is False:
            continue
        try:
            verdict = decision(event, context_for(registration, False))
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Superseded:
            raise
        except Exception as exc:
            raise HandlerFailed(registration, exc) from exc
        if verdict:
            return True
    return False


async def _call(
    registration: Registration, argument: object, ctx: AsyncContext, run_sync: RunSync
) -> object:
    with tracing.handler_span(registration.name):  # a shared no-op unless traces are on
        if registration.is_async:
            return await registration.func(argument, ctx)  # type: ignore[misc]  # checked: async
        bridge = Bridge(asyncio.get_running_loop())
        try:
            return await run_sync(registration.func, argument, ctx.blocking(bridge))
        except asyncio.CancelledError:
            bridge.cancel()  # the thread goes on; what it asked of the loop does not
            raise


async def dispatch(
    event: Event,
    registrations: Sequence[Registration],
    *,
    ledger: Ledger,
    context_for: ContextFactory,
    run_sync: RunSync = run_in_default_executor,
    metrics: Metrics = NO_METRICS,
    gate: Gate | None = None,
) -> int:
    """Run the handlers that match ``event``; return how many ran.

    ``gate``: asked before each handler that declared ``replies=`` (the conversation
    policy: handover, opt-out, the 24-hour window); a reason skips it, logged.

    Raise :class:`HandlerFailed` (a handler raised) or
    :class:`~workers.execution.Superseded` (this execution may no longer act).
    """
    matching: list[Registration] = []
    for registration in registrations:
        if registration.matches(event) and all(r.name != registration.name for r in matching):
            matching.append(registration)
    if not matching:
        log.info("event.unhandled", kind=event.kind)
        metrics.unhandled(event.kind)
        return 0
    expected = await replies_expected(event, matching, context_for)
    if expected and gate is not None and await gate(event, None) is not None:
        expected = False  # held back: no "typing…"
    transition: StatusTransition | None = None
    ran = 0
    for registration in matching:
        if registration.transitions and (
            transition is None or not registration.matches_transition(transition)
        ):
            continue
        if gate is not None and registration.replies is not False:
            reason = await gate(event, registration)
            if reason is not None:
                _report(metrics, registration, "skipped", reason=reason)
                continue
        if await ledger.handler_done(registration.name):
            _report(metrics, registration, "skipped", reason="done in an earlier attempt")
            transition = transition or await _recorded_transition(ledger, registration.name)
            continue
        argument = transition if registration.transitions else event
        started = time.perf_counter()
        try:
            ctx = context_for(registration, expected)
            result = await _call(registration, argument, ctx, run_sync)
        except Superseded:
            log.warning("handler.superseded", handler=registration.label)
            raise
        except Exception as exc:
            failure = HandlerFailed(registration, exc)
            outcome = "permanent" if failure.permanent else "retry"
            _report(metrics, registration, outcome, started=started, error=exc)
            raise failure from exc
        if isinstance(result, StatusTransition):
            transition = result
            if registration is not matching[-1]:
                await ledger.complete(registration.name, TRANSITION_STEP, result.to_json())
        if registration is not matching[-1] and result != STOP:
            # Only a later handler's failure can make this one's event run again.
            # (After the last one the job finishes; should it ever run again anyway,
            # the ledger's step records still keep its sends from repeating.)
            await ledger.mark_handler_done(registration.name)
        ran += 1
        stopped = result == STOP
        _report(metrics, registration, "stop" if stopped else "ok", started=started)
        if stopped:
            break
    return ran


def _report(
    metrics: Metrics,
    registration: Registration,
    outcome: str,
    *,
    started: float = 0.0,
    reason: str | None = None,
    error: BaseException | None = None,
) -> None:
    """Log and count one handler's outcome, in one place: ``skipped`` (``handler.skipped``,
    with ``reason``), ``ok``/``stop`` (``handler.done``), ``retry``/``permanent``
    (``handler.failed``, with ``error``); ``started``: its ``perf_counter()`` start."""
    handler = registration.label
    if outcome == "skipped":
        log.info("handler.skipped", handler=handler, reason=reason)
        metrics.handler(registration.name, outcome)
        return
    seconds = time.perf_counter() - started
    duration_ms = round(seconds * 1000, 2)
    if error is None:
        log.info("handler.done", handler=handler, outcome=outcome, duration_ms=duration_ms)
    else:
        error_text = f"{type(error).__name__}: {error}"
        log.warning(
            "handler.failed",
            handler=handler,
            outcome=outcome,
            duration_ms=duration_ms,
            error=error_text,
        )
    metrics.handler(registration.name, outcome, seconds)
