"""Routers: a handler module's own registry of handler functions and their filters.

::

    router = Router("greetings")

    @router.message(type="text", contains="hello", ignore_case=True, replies=True)
    def greet(event: InboundMessage, ctx: Context) -> None:
        ctx.portal.send_text(event.sender, f"Hi {event.contact.name or 'there'}!")

A decorator registers the function and returns it unchanged; stacking decorators
registers it once per decorator (either filter set matches). Filters within one
decorator must all hold. Handlers run in registration order; a handler returns
:data:`STOP` to stop the handlers after it for this event.

Conversations (``workers.converse``): ``router.message(coalesce=Window(…))`` gets a
contact's burst of messages once, as a ``Burst``; ``router.step(name)`` gets the contact's
next message after a handler's ``ctx.expect(name, …)``, ``router.timeout(name)`` runs if
none came in time.

``router.status_changed(status=…)`` subscribes to folded status changes instead of
raw status events: the handler gets a :class:`StatusTransition`, once per change,
whatever duplicates or reordering the portal delivered (the status-tracking
built-in computes it and returns it; dispatch hands it to the handlers after).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from typing import Final, Literal, TypeVar

from service.identity import Kind
from service.typedevents import InboundMessage, StatusUpdate
from workers.coalesce import Window
from workers.conversation import StepKind
from workers.handlerdata import (
    Handler,
    Predicate,
    Registration,
    ReplyDecision,
    RetryPolicy,
    StatusTransition,
)

__all__ = [
    "STOP",
    "Handler",
    "Registration",
    "ReplyDecision",
    "RetryPolicy",
    "Router",
    "StatusTransition",
]

STEP, TIMEOUT, MISMATCH = StepKind.STEP, StepKind.TIMEOUT, StepKind.MISMATCH

#: Return this from a handler to skip the handlers after it for this event.
STOP: Final = "wabahooks.stop"

F = TypeVar("F", bound=Handler)


def _one_of(value: str | Collection[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset({value} if isinstance(value, str) else value)


def _text_predicates(
    text: str | Collection[str] | None,
    contains: str | Collection[str] | None,
    regex: str | re.Pattern[str] | None,
    ignore_case: bool,
) -> list[Predicate]:
    fold = str.casefold if ignore_case else (lambda s: s)
    predicates: list[Predicate] = []
    if text is not None:
        wanted = {fold(t) for t in _one_of(text) or ()}
        predicates.append(lambda e: e.text is not None and fold(e.text.strip()) in wanted)
    if contains is not None:
        parts = [fold(c) for c in _one_of(contains) or ()]
        predicates.append(lambda e: e.text is not None and any(p in fold(e.text) for p in parts))
    if regex is not None:
        flags = re.IGNORECASE if ignore_case else 0
        pattern = regex if isinstance(regex, re.Pattern) else re.compile(regex, flags)
        predicates.append(lambda e: e.text is not None and pattern.search(e.text) is not None)
    return predicates


class Router:
    """A handler module's registry. Give it a stable ``name``: it keys the exactly-once
    ledger and the module's configuration section."""

    def __init__(self, name: str) -> None:
        if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ValueError(f"router name must be letters, digits, '_', '.', '-': {name!r}")
        self.name = name
        self._registrations: list[Registration] = []

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._registrations)

    def __len__(self) -> int:
        return len(self._registrations)

    def __repr__(self) -> str:
        return f"Router({self.name!r}, handlers={len(self)})"

    def _register(
        self,
        kind: Kind | StepKind,
        predicates: list[Predicate],
        when: Predicate | None,
        replies: bool | ReplyDecision,
        retry: RetryPolicy | None,
        transitions: bool = False,
        *,
        step: str | None = None,
        coalesce: Window | None = None,
    ) -> Callable[[F], F]:
        if when is not None:
            predicates.append(when)

        def decorator(func: F) -> F:
            # The name keys the ledger: stable across deploys, one per function
            # (a function registered by several decorators runs once per event).
            name = f"{self.name}:{getattr(func, '__qualname__', repr(func))}"
            self._registrations.append(
                Registration(
                    func,
                    kind,
                    name,
                    tuple(predicates),
                    replies=replies,
                    retry=retry,
                    router=self.name,
                    transitions=transitions,
                    step=step,
                    coalesce=coalesce,
                )
            )
            return func

        return decorator

    def message(
        self,
        *,
        type: str | Collection[str] | None = None,  # noqa: A002 - WhatsApp's own field name
        text: str | Collection[str] | None = None,
        contains: str | Collection[str] | None = None,
        regex: str | re.Pattern[str] | None = None,
        ignore_case: bool = False,
        sender: str | Collection[str] | None = None,
        when: Callable[[InboundMessage], bool] | None = None,
        replies: bool | ReplyDecision = False,
        retry: RetryPolicy | None = None,
        coalesce: Window | None = None,
    ) -> Callable[[F], F]:
        """Register a handler for inbound messages.

        ``type``: WhatsApp message type(s); ``text``: the whole text equals one of these
        (surrounding spaces ignored); ``contains``: the text contains any of these;
        ``regex``: the pattern is found in the text; ``ignore_case`` applies to all three;
        ``sender``: the contact's number is one of these; ``when``: your own predicate;
        ``replies``: this handler sends a reply (True), or a function deciding it for each
        event before any handler runs (``async def will_reply(event, ctx) -> bool``: it may
        read ``ctx.store``), so "typing…" is never shown for a reply held back;
        ``coalesce``: gather the contact's matching messages and call the handler once per
        burst with a ``workers.Burst`` (``workers.coalesce``).
        """
        predicates: list[Predicate] = []
        types, senders = _one_of(type), _one_of(sender)
        if types is not None:
            predicates.append(lambda e: e.type in types)
        if senders is not None:
            predicates.append(lambda e: e.sender in senders)
        predicates += _text_predicates(text, contains, regex, ignore_case)
        return self._register(
            InboundMessage.kind, predicates, when, replies, retry, coalesce=coalesce
        )

    def step(
        self,
        name: str,
        *,
        filter: Callable[[InboundMessage], bool] | str | re.Pattern[str] | None = None,  # noqa: A002
        on_mismatch: Literal["pass"] | Handler = "pass",
        replies: bool | ReplyDecision = False,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register the handler of step ``name``: it gets the contact's next message after a
        ``ctx.expect(name, …)`` (``ctx.conversation.data``: what that stored), first.
        ``filter`` (a predicate, or a pattern searched in the text) failed: the message goes
        to the other handlers, the step still pending (``on_mismatch="pass"``), or to the
        ``on_mismatch`` function (e.g. to ask again), like a step handler."""
        if isinstance(filter, str | re.Pattern):
            predicates = _text_predicates(None, None, filter, False)
        else:
            predicates = [filter] if filter is not None else []
        if on_mismatch != "pass":
            if not callable(on_mismatch):
                raise ValueError(f"on_mismatch must be 'pass' or a handler: {on_mismatch!r}")
            self._register(MISMATCH, [], None, replies, retry, step=name)(on_mismatch)
        return self._register(STEP, predicates, None, replies, retry, step=name)

    def timeout(self, name: str, *, retry: RetryPolicy | None = None) -> Callable[[F], F]:
        """Register the handler run once if step ``name`` got no answer in time: it gets a
        ``workers.StepTimeout`` (``ctx.conversation.data``: what ``ctx.expect`` stored)."""
        return self._register(TIMEOUT, [], None, False, retry, step=name)

    def status(
        self,
        *,
        status: str | Collection[str] | None = None,
        when: Callable[[StatusUpdate], bool] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register a handler for status updates (``status``: only these values)."""
        statuses = _one_of(status)
        predicates: list[Predicate] = []
        if statuses is not None:
            predicates.append(lambda e: e.status in statuses)
        return self._register(StatusUpdate.kind, predicates, when, False, retry)

    def status_changed(
        self,
        *,
        status: str | Collection[str] | None = None,
        when: Callable[[StatusTransition], bool] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register a handler for changes of an outbound message's folded status.

        The handler gets a :class:`StatusTransition` (not the raw event) only when the
        status-tracking built-in's fold changed: never for a duplicate, nor for a late
        ``delivered`` after ``read``. ``status``: only changes to these values.
        """
        statuses = _one_of(status)
        predicates: list[Predicate] = []
        if statuses is not None:
            predicates.append(lambda t: t.current in statuses)
        return self._register(StatusUpdate.kind, predicates, when, False, retry, True)

    def test(
        self, *, when: Predicate | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[F], F]:
        """Register a handler for the portal's webhook test event."""
        return self._register(Kind.TEST, [], when, False, retry)

    def unknown(
        self, *, when: Predicate | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[F], F]:
        """Register a handler for signed events of a kind this version does not know."""
        return self._register(Kind.OTHER, [], when, False, retry)
