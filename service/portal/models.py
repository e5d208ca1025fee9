"""Typed results of portal calls, parsed from the portal's JSON (spec §1–4).

Each ``from_json`` raises :class:`ValueError` when the JSON does not have the documented
shape; the client turns that into a :class:`~service.portal.errors.PortalError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

__all__ = [
    "Conversation",
    "LastMessage",
    "Message",
    "Page",
    "SentMessage",
    "Template",
    "WebhookConfig",
    "WebhookTestResult",
    "parse_time",
]

T = TypeVar("T")


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is missing or not a string")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def parse_time(value: Any) -> datetime:
    """Parse an ISO-8601 timestamp such as ``2025-12-01T10:30:00.000Z``."""
    if not isinstance(value, str):
        raise ValueError("timestamp is not a string")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class SentMessage:
    """An accepted text message: its WhatsApp id (``wamid.…``)."""

    message_id: str

    @classmethod
    def from_json(cls, body: Any) -> SentMessage:
        return cls(message_id=_str(_obj(body, "response"), "messageId"))


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a cursor-paginated list; pass ``next_cursor`` to get the next one."""

    items: tuple[T, ...]
    next_cursor: str | None
    has_more: bool
    #: The portal's own clock when it answered (its ``Date`` header), if it sent one: the
    #: anchor for searching its history without trusting our clock to agree with its.
    server_time: datetime | None = None


def _pagination(body: Mapping[str, Any]) -> tuple[str | None, bool]:
    pagination = _obj(body.get("pagination", {}), "pagination")
    has_more = pagination.get("hasMore", False)
    if not isinstance(has_more, bool):
        raise ValueError("pagination.hasMore is not a boolean")
    return _opt_str(pagination, "nextCursor"), has_more


def _page(body: Any, item: Callable[[Any], T]) -> Page[T]:
    """One page of a paginated list response, each element read by ``item``."""
    obj = _obj(body, "response")
    data = obj.get("data")
    if not isinstance(data, list):
        raise ValueError("data is not a list")
    return Page(tuple(item(element) for element in data), *_pagination(obj))


@dataclass(frozen=True, slots=True)
class LastMessage:
    """The newest message of a conversation, as the conversation list shows it."""

    id: str
    content: str
    type: str
    direction: str
    timestamp: datetime

    @classmethod
    def from_json(cls, value: Any) -> LastMessage:
        obj = _obj(value, "lastMessage")
        return cls(
            id=_str(obj, "id"),
            content=_str(obj, "content"),
            type=_str(obj, "type"),
            direction=_str(obj, "direction"),
            timestamp=parse_time(obj.get("timestamp")),
        )


@dataclass(frozen=True, slots=True)
class Conversation:
    """A contact and the newest message exchanged with them."""

    phone_number: str
    contact_name: str | None
    last_message: LastMessage | None
    unread_count: int

    @classmethod
    def from_json(cls, value: Any) -> Conversation:
        obj = _obj(value, "conversation")
        last = obj.get("lastMessage")
        unread = obj.get("unreadCount", 0)
        if not isinstance(unread, int):
            raise ValueError("unreadCount is not a number")
        return cls(
            phone_number=_str(obj, "phoneNumber"),
            contact_name=_opt_str(obj, "contactName"),
            last_message=None if last is None else LastMessage.from_json(last),
            unread_count=unread,
        )

    @classmethod
    def page(cls, body: Any) -> Page[Conversation]:
        return _page(body, cls.from_json)


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation, inbound or outbound (ours)."""

    id: str
    wa_message_id: str | None
    direction: str
    type: str
    content: Mapping[str, Any]
    status: str | None
    timestamp: datetime
    contact_name: str | None

    @property
    def text(self) -> str | None:
        """The body of a text message, else None."""
        text = self.content.get("text")
        body = text.get("body") if isinstance(text, Mapping) else None
        return body if isinstance(body, str) else None

    @classmethod
    def from_json(cls, value: Any) -> Message:
        obj = _obj(value, "message")
        return cls(
            id=_str(obj, "id"),
            wa_message_id=_opt_str(obj, "waMessageId"),
            direction=_str(obj, "direction"),
            type=_str(obj, "type"),
            content=_obj(obj.get("content", {}), "content"),
            status=_opt_str(obj, "status"),
            timestamp=parse_time(obj.get("timestamp")),
            contact_name=_opt_str(obj, "contactName"),
        )

    @classmethod
    def page(cls, body: Any) -> Page[Message]:
        return _page(body, cls.from_json)


@dataclass(frozen=True, slots=True)
class Template:
    """A message template and its review status (APPROVED, PENDING, REJECTED …)."""

    id: str
    name: str
    status: str
    category: str
    language: str
    components: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_json(cls, value: Any) -> Template:
        obj = _obj(value, "template")
        components = obj.get("components", [])
        if not isinstance(components, list):
            raise ValueError("components is not a list")
        return cls(
            id=str(obj.get("id", "")) or _str(obj, "id"),
            name=_str(obj, "name"),
            status=_str(obj, "status"),
            category=_str(obj, "category"),
            language=_str(obj, "language"),
            components=tuple(_obj(c, "component") for c in components),
        )


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where and what the portal delivers. The secret is left out of ``repr``."""

    phone_number: str | None
    webhook_url: str
    webhook_secret: str | None = field(repr=False)
    enabled: bool
    events: tuple[str, ...]

    @classmethod
    def from_json(cls, value: Any) -> WebhookConfig:
        obj = _obj(value, "data")
        events = obj.get("webhookEvents") or []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ValueError("webhookEvents is not a list of strings")
        return cls(
            phone_number=_opt_str(obj, "phoneNumber"),
            webhook_url=_opt_str(obj, "webhookUrl") or "",
            webhook_secret=_opt_str(obj, "webhookSecret"),
            enabled=bool(obj.get("webhookEnabled", False)),
            events=tuple(events),
        )


@dataclass(frozen=True, slots=True)
class WebhookTestResult:
    """What happened when the portal sent a test event to our endpoint."""

    success: bool
    webhook_url: str | None
    status_code: int | None
    status_text: str | None
    duration: str | None
    response_body: str | None
    test_id: str | None
    test_payload: Mapping[str, Any] | None
    error: str | None

    @classmethod
    def from_json(cls, body: Any) -> WebhookTestResult:
        obj = _obj(body, "response")
        data = _obj(obj.get("data") or {}, "data")
        payload = data.get("testPayload")
        payload = payload if isinstance(payload, Mapping) else None
        payload_data = payload.get("data") if payload else None
        test_id = payload_data.get("testId") if isinstance(payload_data, Mapping) else None
        status_code = data.get("statusCode")
        return cls(
            success=obj.get("success") is True,
            webhook_url=_opt_str(data, "webhookUrl"),
            status_code=status_code if isinstance(status_code, int) else None,
            status_text=_opt_str(data, "statusText"),
            duration=_opt_str(data, "duration"),
            response_body=_opt_str(data, "responseBody"),
            test_id=test_id if isinstance(test_id, str) else None,
            test_payload=payload,
            error=_opt_str(obj, "error"),
        )
