"""Wait-for-reply steps: a handler asks for the contact's next message and returns at once.

::

    @router.message(text="status", ignore_case=True, replies=True)
    async def ask(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, "Your order number?")
        await ctx.expect("order_number", timeout=timedelta(minutes=10))

    @router.step("order_number", filter=r"^\\d{4,}$")
    async def got_it(event: InboundMessage, ctx: AsyncContext) -> None: ...

    @router.timeout("order_number")
    async def too_late(event: StepTimeout, ctx: AsyncContext) -> None: ...

The pending step is per conversation in Redis (``wabahooks:conv:<phone>``: which step,
the data the handler stored, a generation number, a deadline; kept
``WABAHOOKS_STORE_TTL`` after its last change). Nothing waits in a worker: the contact's
next message is routed to the step handler (``workers.converse``), and the step's timeout
is a scheduled job that enters the contact's chain only when it fires, so it never holds
the answer back. Each step has a generation: the answer, the timeout, ``ctx.cancel()``
and a new ``ctx.expect`` each move it on with one atomic check-and-advance, so whichever
comes second sees it moved and does nothing (the timeout runs at most once, and never
after an answer). Every such step is recorded in the job's ledger, so a retried job
repeats none of them.

This module holds the types; ``workers.convredis`` (Redis) and ``workers.convmemory``
(the test harness) implement :class:`ConversationStore`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from workers.bridge import Bridge
from workers.coalesce import Window
from workers.ledger import Ledger

__all__ = [
    "CONVERSATION",
    "NO_CONVERSATION",
    "BlockingConversation",
    "ConversationStore",
    "ConversationView",
    "NoConversation",
    "Pending",
    "StepKind",
    "StepTimeout",
    "no_conversation",
    "seconds",
]

#: The ledger's handler name for a job's own conversation records (its answer, its burst).
CONVERSATION = "conversation"


class StepKind(StrEnum):
    """Registration kinds of the conversation features: no webhook event has them, so
    dispatch never runs them on one; ``workers.converse`` does (as a burst, a step's answer
    or mismatch, a step's timeout)."""

    STEP = "step"
    MISMATCH = "mismatch"
    TIMEOUT = "timeout"
    BURST = "burst"


@dataclass(frozen=True)
class StepTimeout:
    """A step got no answer in time: what ``@router.timeout(step)`` handlers receive."""

    kind: ClassVar[str] = "timeout"

    event_key: str
    #: The contact's number.
    sender: str
    step: str
    #: What ``ctx.expect(…, data=…)`` stored (also ``ctx.conversation.data``).
    data: Any = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A conversation's pending step."""

    step: str
    gen: int
    data: Any
    #: Epoch seconds (Redis' clock) when its timeout fires.
    deadline: float


class ConversationStore(Protocol):
    """The conversation state, for one job's execution (its writes are conditional on it
    still holding its job, and recorded in its ledger)."""

    async def pending(self, contact: str) -> Pending | None: ...

    async def expect(
        self, contact: str, step: str, *, timeout: float, data: Any, record: tuple[str, str]
    ) -> int:
        """Make ``step`` the pending step (a new generation; the previous step's timeout
        will not run) and schedule its timeout; record the generation as ``record``
        (handler, step) in the job's ledger. Return the generation."""
        ...

    async def advance(
        self, contact: str, *, how: str, gen: int | None, record: tuple[str, str] | None
    ) -> dict[str, Any] | None:
        """Check-and-advance: if the pending step's generation is ``gen`` (any, if None;
        for ``how="timeout"``, the one this timeout job carries), end it and return
        ``{"step", "data" (JSON text), "gen", "how"}``, recorded as ``record`` in the job's
        ledger; else return None (it moved on). ``how``: answer | timeout | cancel."""
        ...

    async def append(
        self, contact: str, handler: str, window: Window, message: dict[str, Any]
    ) -> bool:
        """Add a message to the burst of (``contact``, ``handler``) once; (re-)arm its flush.
        Return False if it was already in it."""
        ...

    async def seal(self, contact: str, handler: str) -> list[dict[str, Any]] | None:
        """Take this flush job's burst (the messages, in order), recorded in its ledger."""
        ...


def seconds(value: timedelta | float) -> float:
    """Return ``value`` in seconds (a timedelta, or a number of seconds)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class ConversationView:
    """``ctx.conversation`` of one handler run: the step this event answers (or timed out),
    its data, and :meth:`expect` / :meth:`cancel` (each at most once per event)."""

    def __init__(
        self,
        store: ConversationStore,
        contact: str,
        ledger: Ledger,
        handler: str,
        *,
        step: str | None = None,
        data: Any = None,
    ) -> None:
        self._store = store
        self.contact = contact
        self._ledger = ledger
        self._handler = handler
        #: The step this event answers, or whose timeout this is (None otherwise).
        self.step = step
        #: What the ``ctx.expect`` call that asked for this step stored.
        self.data = data
        self._counts: dict[str, int] = {}

    def _tag(self, kind: str) -> str:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return f"{kind}#{self._counts[kind]}"

    async def expect(self, step: str, *, timeout: timedelta | float, data: Any = None) -> None:
        """Route the contact's next message to ``@router.step(step)``; run
        ``@router.timeout(step)`` if none comes within ``timeout``."""
        if not step:
            raise ValueError("ctx.expect needs a step name")
        limit = seconds(timeout)
        if limit <= 0:
            raise ValueError(f"ctx.expect({step!r}): the timeout must be positive, not {limit}")
        try:
            json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"ctx.expect({step!r}, data=…): data must be JSON ({exc})") from exc
        tag = self._tag("expect")
        if await self._ledger.get(self._handler, tag) is not None:
            return  # done in an earlier attempt of this job
        self._ledger.ensure_current()
        await self._store.expect(
            self.contact, step, timeout=limit, data=data, record=(self._handler, tag)
        )

    async def cancel(self) -> None:
        """End the pending step, if any: its timeout will not run."""
        tag = self._tag("cancel")
        if await self._ledger.get(self._handler, tag) is not None:
            return
        self._ledger.ensure_current()
        await self._store.advance(self.contact, how="cancel", gen=None, record=(self._handler, tag))


class BlockingConversation:
    """:class:`ConversationView` for a plain ``def`` handler: its calls block."""

    def __init__(self, view: ConversationView | NoConversation, bridge: Bridge | None) -> None:
        self._view = view
        self._bridge = bridge
        self.step = view.step
        self.data = view.data

    def expect(self, step: str, *, timeout: timedelta | float, data: Any = None) -> None:
        if self._bridge is None or isinstance(self._view, NoConversation):
            raise no_conversation("ctx.expect")
        self._bridge.run(self._view.expect(step, timeout=timeout, data=data))

    def cancel(self) -> None:
        if self._bridge is None or isinstance(self._view, NoConversation):
            raise no_conversation("ctx.cancel")
        self._bridge.run(self._view.cancel())


def no_conversation(call: str) -> RuntimeError:
    """The error of ``ctx.expect``/``ctx.cancel`` called without a contact's conversation."""
    return RuntimeError(
        f"{call} needs a contact's conversation: call it from a message, burst, step or "
        "timeout handler (not a status or test handler)"
    )


class NoConversation:
    """``ctx.conversation`` of an event without a contact (statuses, tests)."""

    step: str | None = None
    data: Any = None

    async def expect(self, step: str, *, timeout: timedelta | float, data: Any = None) -> None:
        raise no_conversation("ctx.expect")

    async def cancel(self) -> None:
        raise no_conversation("ctx.cancel")


NO_CONVERSATION = NoConversation()
