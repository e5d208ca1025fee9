"""Routing a job through the conversation features, then the ordinary dispatch.

One job is one of three things (its ``kind``):

- **an event** (:func:`route`). For a contact's message: if a step is pending for the
  contact and a ``@router.step`` handles it, the message answers it (check-and-advance of
  the step's generation, recorded in the job's ledger so a retry answers it again) and goes
  to that step handler alone, with the mark-read built-in before it; a message that fails
  the step's filter goes to its ``on_mismatch`` handler, or (``"pass"``) on as below.
  Otherwise each matching coalescing handler gets the message appended to its burst
  (marked read, no typing: by the mark-read built-in if enabled, else here), and the
  other handlers run as usual (``workers.dispatch``).
- **a flush** (:func:`run_flush`): the coalescing handler runs once with the whole
  :class:`~workers.coalesce.Burst`; "typing…" is shown on the last message only when a
  reply follows (the handler's ``replies=``).
- **a step timeout** (:func:`run_timeout`): if the step is still pending in the generation
  the job carries, the ``@router.timeout`` handlers run once with a
  :class:`~workers.conversation.StepTimeout`; otherwise (answered, cancelled, asked again)
  nothing runs.

A pending step does not coalesce: while a step waits, the contact's next message answers
it at once, alone (a step asks one question); the messages after it coalesce again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import structlog

from service.typedevents import Event, InboundMessage
from workers.builtins.mark_read import NAME as MARK_READ
from workers.coalesce import Burst, message_record
from workers.context import AsyncContext
from workers.conversation import (
    CONVERSATION,
    ConversationStore,
    ConversationView,
    StepKind,
    StepTimeout,
)
from workers.dispatch import (
    NO_METRICS,
    ContextFactory,
    Gate,
    Metrics,
    RunSync,
    dispatch,
    replies_expected,
    run_in_default_executor,
)
from workers.ledger import Ledger
from workers.policy.router import NAME as POLICY
from workers.router import MISMATCH, STEP, TIMEOUT, Registration

__all__ = [
    "JOB_KINDS",
    "JobTools",
    "UnknownHandler",
    "route",
    "run_flush",
    "run_job",
    "run_timeout",
]

log = structlog.get_logger("wabahooks.conversation")

#: The job kinds that are not events (job format version 2).
JOB_KINDS = ("flush", "timeout")
#: Routers that see every message, a step's answer too: mark-read, the conversation policy.
ALWAYS = (MARK_READ, POLICY)


class UnknownHandler(Exception):
    """A flush job names a coalescing handler no loaded router has."""


@dataclass(frozen=True)
class JobTools:
    """What a job's handlers run with: the event's ledger, how a handler's context is made,
    the conversations' store, the thread pool for ``def`` handlers, the metrics, and the
    conversation policy's reply gate (``workers.dispatch``)."""

    ledger: Ledger
    context_for: ContextFactory
    store: ConversationStore
    run_sync: RunSync = run_in_default_executor
    metrics: Metrics = NO_METRICS
    gate: Gate | None = None


class _Run:
    """One contact's job: its tools, and contexts that carry the contact's conversation."""

    def __init__(self, contact: str, tools: JobTools) -> None:
        self.contact = contact
        self.tools = tools
        self.store = tools.store
        self.ledger = tools.ledger
        #: The step (name, data) a handler's event answers or timed out, by handler name.
        self.answered: dict[str, tuple[str, Any]] = {}

    def context(self, registration: Registration, replies: bool) -> AsyncContext:
        ctx = self.tools.context_for(registration, replies)
        step, data = self.answered.get(registration.name, (None, None))
        ctx.conversation = ConversationView(
            self.store, self.contact, self.ledger, registration.name, step=step, data=data
        )
        return ctx

    async def dispatch(self, event: object, registrations: Sequence[Registration]) -> int:
        # dispatch reads only the event's .kind; handlers get it as it is (a Burst …).
        tools = self.tools
        return await dispatch(
            cast(Event, event),
            registrations,
            ledger=tools.ledger,
            context_for=self.context,
            run_sync=tools.run_sync,
            metrics=tools.metrics,
            gate=tools.gate,
        )


def _find(registrations: Sequence[Registration], kind: str, step: str) -> Registration | None:
    return next((r for r in registrations if r.kind == kind and r.step == step), None)


async def _step_target(
    run: _Run, event: InboundMessage, steps: Sequence[Registration]
) -> tuple[Registration, str, Any] | None:
    """The step handler (or mismatch handler) that gets ``event``, with the step's name and
    data; None if the message is not a step's answer."""
    entry = await run.ledger.get(CONVERSATION, "answer")
    answer = entry.result if entry is not None else None
    if answer is None:
        missed = await run.ledger.get(CONVERSATION, "mismatch")
        if missed is not None and missed.result is not None:  # a retry: as decided then
            step = str(missed.result["step"])
            handler = _find(steps, MISMATCH, step)
            return None if handler is None else (handler, step, missed.result["data"])
        pending = await run.store.pending(run.contact)
        if pending is None:
            return None
        handler = _find(steps, STEP, pending.step)
        if handler is None:
            log.warning("step.unhandled", step=pending.step)
            return None  # no handler for it (any more): the ordinary handlers get it
        if not all(predicate(event) for predicate in handler.predicates):
            mismatch = _find(steps, MISMATCH, pending.step)
            if mismatch is None:
                return None
            # Recorded: a retry gives the mismatch handler the same step and data, even if
            # it asked again (a new step) before a later failure.
            decided = {"step": pending.step, "data": pending.data, "gen": pending.gen}
            await run.ledger.complete(CONVERSATION, "mismatch", decided)
            log.info("step.mismatch", step=pending.step, gen=pending.gen)
            return mismatch, pending.step, pending.data
        run.ledger.ensure_current()
        answer = await run.store.advance(
            run.contact, how="answer", gen=pending.gen, record=(CONVERSATION, "answer")
        )
        if answer is None:
            return None  # it moved on meanwhile (cancelled by a handover)
    handler = _find(steps, STEP, str(answer["step"]))
    if handler is None:
        return None
    log.info("step.answered", step=answer["step"], gen=answer["gen"])
    return handler, str(answer["step"]), json.loads(answer["data"])


async def route(
    event: Event,
    registrations: Sequence[Registration],
    tools: JobTools,
) -> int:
    """Run one event's handlers (see the module docstring); return how many ran or took it."""
    if not isinstance(event, InboundMessage) or not event.sender:
        return await dispatch(
            event,
            registrations,
            ledger=tools.ledger,
            context_for=tools.context_for,
            run_sync=tools.run_sync,
            metrics=tools.metrics,
            gate=tools.gate,
        )
    ledger, store = tools.ledger, tools.store
    run = _Run(event.sender, tools)
    steps = [r for r in registrations if r.kind in (STEP, MISMATCH)]
    if steps and (target := await _step_target(run, event, steps)) is not None:
        handler, step, data = target
        run.answered[handler.name] = (step, data)
        # Mark-read and the conversation policy (its window, relays) see every message.
        marks = [r for r in registrations if r.router in ALWAYS and r.matches(event)]
        # Its filter was decided (and the answer recorded) already: it runs unconditionally.
        chosen = replace(handler, kind=event.kind, predicates=())
        return await run.dispatch(event, [*marks, chosen])
    coalescing = [r for r in registrations if r.coalesce is not None and r.matches(event)]
    for registration in coalescing:
        assert registration.coalesce is not None
        if await ledger.get(registration.name, "coalesce") is None:
            ledger.ensure_current()
            record = message_record(event)
            await store.append(event.sender, registration.name, registration.coalesce, record)
    if coalescing and not any(r.router == MARK_READ for r in registrations):
        ctx = run.context(coalescing[0], False)
        await ctx.portal.mark_read(event.message_id, step="coalesce")
    others = [r for r in registrations if r.coalesce is None]
    if coalescing and not any(r.matches(event) for r in others):
        return len(coalescing)
    return len(coalescing) + await run.dispatch(event, others)


async def run_flush(
    kwargs: Mapping[str, Any],
    registrations: Sequence[Registration],
    tools: JobTools,
) -> int:
    """Run a flush job: the coalescing handler, once, on its burst; return 1 (0: empty)."""
    ledger, store = tools.ledger, tools.store
    contact, name = str(kwargs["conversation"]), str(kwargs["handler"])
    handler = next((r for r in registrations if r.name == name and r.coalesce), None)
    if handler is None:
        raise UnknownHandler(
            f"a burst is due for handler {name!r}, which no loaded router has (was it renamed "
            "or removed?): deploy it, then `wabahooks failed requeue` this job"
        )
    entry = await ledger.get(CONVERSATION, "burst")
    if entry is not None and entry.result is not None:
        records = entry.result["messages"]
    else:
        ledger.ensure_current()
        records = await store.seal(contact, name) or []
    if not records:
        log.info("burst.empty", handler=name)
        return 0
    burst = Burst.from_records(records)
    log.info("burst.flush", handler=name, messages=len(burst.messages))
    run = _Run(contact, tools)
    flushed = replace(handler, kind=StepKind.BURST, predicates=(), coalesce=None)
    held = tools.gate is not None and await tools.gate(cast(Event, burst), None) is not None
    if not held and await replies_expected(cast(Event, burst), [flushed], run.context):
        ctx = run.context(flushed, True)
        await ctx.portal.mark_read(burst.last_id, show_typing_indicator=True, step="burst")
    return await run.dispatch(burst, [flushed])


async def run_timeout(
    kwargs: Mapping[str, Any],
    registrations: Sequence[Registration],
    tools: JobTools,
) -> int:
    """Run a step's timeout job: its handlers, if the step is still pending; return how many."""
    ledger, store = tools.ledger, tools.store
    contact = str(kwargs["conversation"])
    entry = await ledger.get(CONVERSATION, "answer")
    answer = entry.result if entry is not None else None
    if answer is None:
        ledger.ensure_current()
        answer = await store.advance(
            contact, how="timeout", gen=None, record=(CONVERSATION, "answer")
        )
    if answer is None:
        log.info("step.timeout_skipped", step=kwargs.get("step"), reason="the step moved on")
        return 0
    step, data = str(answer["step"]), json.loads(answer["data"])
    log.info("step.timeout", step=step, gen=answer["gen"])
    run = _Run(contact, tools)
    handlers = [
        replace(r, kind=StepKind.TIMEOUT)
        for r in registrations
        if r.kind == TIMEOUT and r.step == step
    ]
    run.answered = {r.name: (step, data) for r in handlers}
    event = StepTimeout(f"timeout:{step}:{answer['gen']}", contact, step, data)
    return await run.dispatch(event, handlers)


async def run_job(
    kind: str,
    event: Event | None,
    kwargs: Mapping[str, Any],
    registrations: Sequence[Registration],
    tools: JobTools,
) -> int:
    """Run one job: a flush, a step timeout, or an event (``event``)."""
    if kind == "flush":
        return await run_flush(kwargs, registrations, tools)
    if kind == "timeout":
        return await run_timeout(kwargs, registrations, tools)
    assert event is not None
    return await route(event, registrations, tools)
