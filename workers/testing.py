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
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.portal import Message, Page, SentMessage
from service.typedevents import Event, InboundMessage, StatusUpdate, parse_event
from workers.context import AsyncContext, MemoryStore
from workers.dispatch import dispatch, run_in_default_executor
from workers.effects import Effects
from workers.ledger import MemoryLedger
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
    envelope = {
        "event": "message",
        "timestamp": datetime.now(UTC).isoformat(),
        "projectId": "test",
        "data": {
            "from": sender,
            "messageId": mid,
            "timestamp": str(int(datetime.now(UTC).timestamp())),
            "type": type,
            "contact": {"name": name, "wa_id": sender},
            type: dict(body),
        },
    }
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

        def context_for(registration: Registration, replies: bool) -> AsyncContext:
            return AsyncContext.build(
                portal=Effects(self.portal, ledger, registration.name),
                store=self._store(conversation),
                config=self.config.get(registration.router, {}),
                replies_expected=replies,
                handler=registration.name,
            )

        return await dispatch(
            event,
            self.registrations,
            ledger=ledger,
            context_for=context_for,
            run_sync=run_in_default_executor,
        )
