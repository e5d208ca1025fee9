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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from service.model import Event, InboundMessage, StatusUpdate

if TYPE_CHECKING:
    from workers.context import Context

__all__ = ["STOP", "Handler", "Registration", "RetryPolicy", "Router"]

#: Return this from a handler to skip the handlers after it for this event.
STOP: Final = "wabahooks.stop"

Handler = Callable[[Any, "Context"], object]
Predicate = Callable[[Any], bool]
F = TypeVar("F", bound=Handler)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing handler's event is retried: ``max_attempts`` in all, exponential
    backoff from ``base`` seconds up to ``cap``, with full jitter."""

    max_attempts: int = 5
    base: float = 5.0
    cap: float = 600.0


def _one_of(value: str | Collection[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset({value} if isinstance(value, str) else value)


@dataclass(frozen=True)
class Registration:
    """One registered handler: the function, the kind it handles, and its filters."""

    func: Handler
    kind: str
    name: str
    predicates: tuple[Predicate, ...] = ()
    #: Declared by handlers that send a reply (the mark-read built-in shows typing then).
    replies: bool = False
    retry: RetryPolicy | None = None
    router: str = field(default="", compare=False)

    def matches(self, event: Event) -> bool:
        """Return whether this handler wants ``event``."""
        return event.kind == self.kind and all(p(event) for p in self.predicates)


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
        kind: str,
        predicates: list[Predicate],
        when: Predicate | None,
        replies: bool,
        retry: RetryPolicy | None,
    ) -> Callable[[F], F]:
        if when is not None:
            predicates.append(when)

        def decorator(func: F) -> F:
            # The name keys the ledger: stable across deploys, one per function
            # (a function registered by several decorators runs once per event).
            name = f"{self.name}:{getattr(func, '__qualname__', repr(func))}"
            self._registrations.append(
                Registration(func, kind, name, tuple(predicates), replies, retry, self.name)
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
        replies: bool = False,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register a handler for inbound messages.

        ``type``: WhatsApp message type(s); ``text``: the whole text equals one of these
        (surrounding spaces ignored); ``contains``: the text contains any of these;
        ``regex``: the pattern is found in the text; ``ignore_case`` applies to all three;
        ``sender``: the contact's number is one of these; ``when``: your own predicate;
        ``replies``: this handler sends a reply.
        """
        predicates: list[Predicate] = []
        types, senders = _one_of(type), _one_of(sender)
        if types is not None:
            predicates.append(lambda e: e.type in types)
        if senders is not None:
            predicates.append(lambda e: e.sender in senders)
        predicates += _text_predicates(text, contains, regex, ignore_case)
        return self._register(InboundMessage.kind, predicates, when, replies, retry)

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

    def test(
        self, *, when: Predicate | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[F], F]:
        """Register a handler for the portal's webhook test event."""
        return self._register("test", [], when, False, retry)

    def unknown(
        self, *, when: Predicate | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[F], F]:
        """Register a handler for signed events of a kind this version does not know."""
        return self._register("other", [], when, False, retry)
