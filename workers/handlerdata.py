"""Values handlers and the dispatcher exchange: a handler's :class:`RetryPolicy` (how its
event is retried), the :class:`StatusTransition` a ``status_changed`` handler receives (both
public: ``from workers import RetryPolicy, StatusTransition``), and the :class:`Registration`
a router's decorator makes of a handler (``workers.router``)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.identity import Kind
from service.portal.backoff import full_jitter
from service.settings import (
    DEFAULT_HANDLER_ATTEMPTS,
    DEFAULT_HANDLER_BACKOFF,
    DEFAULT_HANDLER_BACKOFF_CAP,
)
from service.typedevents import Event
from workers.coalesce import Window
from workers.conversation import StepKind

__all__ = [
    "Handler",
    "Predicate",
    "Registration",
    "ReplyDecision",
    "RetryPolicy",
    "StatusTransition",
    "handler_label",
]

#: ``def handler(event, ctx: Context)`` or ``async def handler(event, ctx: AsyncContext)``.
Handler = Callable[[Any, Any], object]
Predicate = Callable[[Any], bool]
#: ``replies=`` may decide per event, before any handler runs (so "typing…" is shown only
#: when a reply will follow): ``async def will_reply(event, ctx: AsyncContext) -> bool``
#: (a plain function returning a bool also works; ``ctx.store`` is awaitable either way).
ReplyDecision = Callable[[Any, Any], "bool | Awaitable[bool]"]


def handler_label(name: str) -> str:
    """A handler's name (``router:qualname``, the ledger's key) as its author wrote it:
    ``mark_read:build.<locals>.mark_read`` reads ``mark_read:mark_read``."""
    router, _, qualname = name.partition(":")
    return f"{router}:{qualname.rsplit('<locals>.', 1)[-1]}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing handler's event is retried: ``max_attempts`` in all, exponential
    backoff from ``base`` seconds up to ``cap``, with full jitter."""

    max_attempts: int = DEFAULT_HANDLER_ATTEMPTS
    base: float = DEFAULT_HANDLER_BACKOFF
    cap: float = DEFAULT_HANDLER_BACKOFF_CAP

    def delay(self, attempt: int, retry_after: float | None = None) -> int:
        """Whole seconds before attempt ``attempt + 1`` (RQ schedules in seconds; at least 1,
        since 0 would not wait): full jitter, at least ``retry_after``."""
        return max(1, math.ceil(full_jitter(attempt, self.base, self.cap, retry_after)))


@dataclass(frozen=True, slots=True)
class StatusTransition:
    """An outbound message's folded status changed: from ``previous`` (None: first seen)
    to ``current`` (``sent`` < ``delivered`` < ``read``; ``failed``, with ``errors``, is final)."""

    message_id: str
    previous: str | None
    current: str
    errors: tuple[Mapping[str, Any], ...] = ()
    recipient: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the transition as a JSON object (how the ledger keeps it)."""
        return {
            "message_id": self.message_id,
            "previous": self.previous,
            "current": self.current,
            "errors": [dict(e) for e in self.errors],
            "recipient": self.recipient,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> StatusTransition:
        """Return the transition :meth:`to_json` described."""
        return cls(
            str(obj["message_id"]),
            obj.get("previous"),
            str(obj["current"]),
            tuple(obj.get("errors") or ()),
            obj.get("recipient"),
        )


@dataclass(frozen=True)
class Registration:
    """One registered handler: the function, the kind it handles, and its filters."""

    func: Handler
    kind: Kind | StepKind
    name: str
    predicates: tuple[Predicate, ...] = ()
    #: Declared by handlers that send a reply (the mark-read built-in shows typing then):
    #: True, or a :data:`ReplyDecision` made for each event before the handlers run.
    replies: bool | ReplyDecision = False
    retry: RetryPolicy | None = None
    router: str = field(default="", compare=False)
    #: Registered by ``status_changed``: runs on the event's StatusTransition, if any.
    transitions: bool = False
    #: The conversation step a ``step``/``timeout``/``mismatch`` registration belongs to.
    step: str | None = None
    #: ``message(coalesce=…)``: messages are gathered and the handler gets a Burst.
    coalesce: Window | None = None
    #: An ``async def`` handler (run on the event loop; else in the thread pool).
    is_async: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))

    @property
    def label(self) -> str:
        """The handler's name as its author wrote it, for logs: ``router:function``.

        :attr:`name` keys the ledger and must not change across deploys, so it keeps the
        full ``__qualname__`` (``build.<locals>.mark_read`` for a function defined in a
        factory); the label drops the ``<locals>`` path."""
        return handler_label(self.name)

    def matches(self, event: Event) -> bool:
        """Return whether this handler wants ``event`` (for a transition handler: its kind;
        its filters apply to the transition, see :meth:`matches_transition`)."""
        if event.kind != self.kind:
            return False
        return self.transitions or all(p(event) for p in self.predicates)

    def matches_transition(self, transition: StatusTransition) -> bool:
        """Return whether this transition handler wants ``transition``."""
        return self.transitions and all(p(transition) for p in self.predicates)
