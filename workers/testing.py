"""Unit-testing handlers (``async def`` and plain ``def``) without Redis or a portal.

::

    from workers.testing import Harness, inbound_text

    def test_greets_by_name():
        harness = Harness(router)
        harness.deliver(inbound_text("hello", name="Ana"))
        assert harness.portal.sent == [("919876543210", "Hi Ana!")]

:class:`Harness` runs an event through the same dispatch as the worker, with a
:class:`RecordingPortal`, a :class:`~workers.ledger.MemoryLedger` per event and a
:class:`~workers.context.MemoryStore` per conversation. ``deliver`` again with
the same event replays it as a retried job would (done handlers are skipped).
``deliver`` runs the event on an event loop of its own (``asyncio.run``), plain
``def`` handlers in a thread as in the worker; from an async test, ``await
harness.adeliver(event)`` instead.

Conversations (``ctx.expect`` steps, coalesced bursts) run on the harness's clock
(:class:`~workers.convmemory.Clock`, ``harness.clock.now``): it moves only through
``advance(seconds or timedelta)``, which runs each burst flush and step timeout that falls
due, in order, as the workers would. ``deliver_burst(*events)`` delivers messages a second
apart and then lets their burst flush.

With a ``policy`` table in ``config`` the conversation policy runs too, in memory
(``workers.policy.memory``): ``handed_over``, ``opted_out`` and ``window`` read its state.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from service.portal import Message, Page, SentMessage
from service.samples import message_envelope
from service.typedevents import Event, InboundMessage, StatusUpdate, parse_event
from workers.context import AsyncContext, MemoryStore
from workers.conversation import seconds
from workers.converse import JobTools, route, run_flush, run_timeout
from workers.convmemory import Clock, MemoryConversations, Timer
from workers.dispatch import ContextFactory
from workers.effects import Effects
from workers.ledgermemory import MemoryLedger
from workers.loading import registrations
from workers.policy import router as policy_router
from workers.policy.config import policy_config
from workers.policy.memory import MemoryPolicy
from workers.policy.scope import EventScope
from workers.policy.state import MessagingWindow, window_of
from workers.router import Registration, Router

__all__ = ["Harness", "RecordingPortal", "StoreView", "inbound", "inbound_text", "status_update"]

_ids = itertools.count(1)


@dataclass
class RecordingPortal:
    """A portal that records what handlers did: ``sent`` (to, text) and ``marked`` (id, typing).

    ``messages()`` answers with everything sent, newest first, on one page stamped with
    the current time as the portal's clock (``server_time``).
    """

    sent: list[tuple[str, str]] = field(default_factory=list)
    marked: list[tuple[str, bool]] = field(default_factory=list)
    _history: list[Message] = field(default_factory=list)

    async def send_text(self, to: str, message: str) -> SentMessage:
        message_id = f"wamid.SENT{next(_ids):06d}"
        self.sent.append((to, message))
        self._history.insert(
            0,
            Message(
                id=message_id,
                wa_message_id=message_id,
                direction="outbound",
                type="text",
                content={"text": {"body": message}},
                status="sent",
                timestamp=datetime.now(UTC),
                contact_name=None,
            ),
        )
        return SentMessage(message_id=message_id)

    async def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        self.marked.append((message_id, show_typing_indicator))

    async def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]:
        return Page(tuple(self._history), None, False, server_time=datetime.now(UTC))


def inbound(
    type: str,  # noqa: A002 - WhatsApp's own field name
    body: Mapping[str, Any],
    *,
    sender: str = "919876543210",
    name: str | None = "John Doe",
    message_id: str = "",
) -> InboundMessage:
    """An inbound message event of any WhatsApp ``type`` (``body``: that type's object,
    e.g. ``inbound("image", {"id": "1", "caption": "receipt"})``), as a worker sees it."""
    mid = message_id or f"wamid.TEST{next(_ids):06d}"
    envelope = message_envelope(
        sender=sender, name=name, kind=type, content=dict(body), message_id=mid, project_id="test"
    )
    event = parse_event(envelope, kind="message", event_key=f"message:{mid}")
    assert isinstance(event, InboundMessage)
    return event


def inbound_text(
    text: str, *, sender: str = "919876543210", name: str = "John Doe", message_id: str = ""
) -> InboundMessage:
    """An inbound text message event, as a worker sees it."""
    return inbound("text", {"body": text}, sender=sender, name=name, message_id=message_id)


def status_update(message_id: str, status: str, **data: Any) -> StatusUpdate:
    """A status update event for an outbound message."""
    envelope = {"event": "status", "data": {"messageId": message_id, "status": status, **data}}
    event = parse_event(envelope, kind="status", event_key=f"status:{message_id}:{status}")
    assert isinstance(event, StatusUpdate)
    return event


class StoreView:
    """A :class:`~workers.context.MemoryStore`, read and written without ``await``."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._store.data.get(key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self._store.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self._store.data.pop(key, None)


class Harness:
    """Runs events through routers as the worker does, in memory."""

    def __init__(self, *routers: Router, config: Mapping[str, Mapping[str, Any]] | None = None):
        self.registrations: list[Registration] = [r for router in routers for r in router]
        self.portal = RecordingPortal()
        self.config = config or {}
        self.ledgers: dict[str, MemoryLedger] = {}
        self.stores: dict[str | None, MemoryStore] = {}
        #: The harness's time: moved by :meth:`advance` (flushes and timeouts fall due).
        self.clock = Clock()
        self.conversations = MemoryConversations(self.clock)
        #: The conversation policy, when ``config`` has a ``policy`` table (as in the TOML
        #: file): its router runs first, as in the workers; its records are in memory.
        self.policy: MemoryPolicy | None = None
        settings = policy_config(self.config)
        if settings is not None:
            self.policy = MemoryPolicy(
                settings, self.portal, self.conversations, lambda: self.clock.now
            )
            self.registrations[:0] = registrations([policy_router.build()])

    def store(self, conversation: str | None) -> StoreView:
        """The store of one conversation (a contact's number, or a message id), to read or
        prepare from a test: ``get``/``set``/``delete`` without ``await``."""
        return StoreView(self._store(conversation))

    def _store(self, conversation: str | None) -> MemoryStore:
        return self.stores.setdefault(conversation, MemoryStore())

    def deliver(self, event: Event) -> int:
        """Dispatch ``event``; return how many handlers ran (a failing handler raises
        :class:`~workers.dispatch.HandlerFailed`, its error as ``__cause__``)."""
        return asyncio.run(self.adeliver(event))

    async def adeliver(self, event: Event) -> int:
        """:meth:`deliver`, on the running event loop (for async tests)."""
        ledger = self.ledgers.setdefault(event.event_key, MemoryLedger())
        conversation = getattr(event, "sender", None) or getattr(event, "message_id", None)
        scope = None
        if self.policy is not None:
            scope = await self.policy.scope(event, job_id=event.event_key, ledger=ledger)
            await policy_router.clear_steps(scope)  # a STOP or "agent" is no step's answer
        tools = JobTools(
            ledger=ledger,
            context_for=self._context_for(ledger, conversation, scope),
            store=self.conversations.for_job(event.event_key, ledger),
            gate=None if scope is None else scope.gate,
        )
        return await route(event, self.registrations, tools)

    def _context_for(
        self, ledger: MemoryLedger, conversation: str | None, scope: EventScope | None = None
    ) -> ContextFactory:
        def context_for(registration: Registration, replies: bool) -> AsyncContext:
            return AsyncContext.build(
                portal=Effects(self.portal, ledger, registration.name, policy=scope),
                store=self._store(conversation),
                config=self.config.get(registration.router, {}),
                replies_expected=replies,
                handler=registration.name,
                policy=scope,
            )

        return context_for

    def handed_over(self, phone: str) -> bool:
        """Whether ``phone``'s conversation is handed over to a person now (needs ``policy``)."""
        return self._policy().store.record(phone).handover_active(self.clock.now)

    def window(self, phone: str) -> MessagingWindow:
        """``phone``'s 24-hour window now, on the harness's clock (needs ``policy``)."""
        policy = self._policy()
        inbound_at = policy.store.record(phone).inbound_at
        return window_of(inbound_at, self.clock.now, policy.config.window.margin)

    def opted_out(self, phone: str) -> bool:
        """Whether ``phone`` opted out (STOP) and not back in (needs ``policy``)."""
        return phone in self._policy().store.suppressed

    def _policy(self) -> MemoryPolicy:
        if self.policy is None:
            raise RuntimeError("the harness has no policy: give it config={'policy': {...}}")
        return self.policy

    def advance(self, by: timedelta | float) -> int:
        """Move the clock ``by`` (seconds or a timedelta), running each burst flush and step
        timeout that falls due, in order; return how many handlers ran."""
        return asyncio.run(self.aadvance(by))

    async def aadvance(self, by: timedelta | float) -> int:
        """:meth:`advance`, on the running event loop."""
        until = self.clock.now + seconds(by)
        ran = 0
        while (timer := self.conversations.next_due(until)) is not None:
            self.clock.now = max(self.clock.now, timer.due)
            ran += await self._fire(timer)
        self.clock.now = until
        return ran

    def deliver_burst(self, *events: InboundMessage, gap: float = 1.0) -> int:
        """Deliver ``events`` ``gap`` seconds apart, then move the clock until their bursts
        have flushed; return how many handlers ran (each message's, and the flush's)."""
        return asyncio.run(self.adeliver_burst(*events, gap=gap))

    async def adeliver_burst(self, *events: InboundMessage, gap: float = 1.0) -> int:
        """:meth:`deliver_burst`, on the running event loop."""
        ran = 0
        for n, event in enumerate(events):
            if n:
                ran += await self.aadvance(gap)
            ran += await self.adeliver(event)
        flushes = [t.due for t in self.conversations.timers.values() if t.kind == "flush"]
        if flushes:
            ran += await self.aadvance(max(0.0, max(flushes) - self.clock.now))
        return ran

    async def _fire(self, timer: Timer) -> int:
        ledger = self.ledgers.setdefault(timer.job_id, MemoryLedger())
        contact = str(timer.kwargs["conversation"])
        store = self.conversations.for_job(timer.job_id, ledger)
        store.gen = timer.gen
        scope = None
        if self.policy is not None:  # as the workers: flushes and timeouts have their contact's
            scope = await self.policy.scope(
                None, job_id=timer.job_id, ledger=ledger, contact=contact
            )
        tools = JobTools(
            ledger=ledger,
            context_for=self._context_for(ledger, contact, scope),
            store=store,
            gate=None if scope is None else scope.gate,
        )
        run = run_flush if timer.kind == "flush" else run_timeout
        return await run(timer.kwargs, self.registrations, tools)
