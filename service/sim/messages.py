"""The simulator's stored messages and the portal's cursor pagination over them (spec §2)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.portal.validation import (
    CONVERSATIONS_MAX_LIMIT,
    MESSAGES_MAX_LIMIT,
    check_limit,
    check_phone,
)
from service.sim.config import Refusal, iso

__all__ = ["StoredMessage", "conversations_page", "messages_page"]


@dataclass
class StoredMessage:
    """A message in a conversation, as the portal keeps it."""

    seq: int
    id: str
    wa_message_id: str
    phone: str
    direction: str
    type: str
    content: dict[str, Any]
    status: str
    timestamp: datetime
    contact_name: str | None
    #: When it appears in its conversation's history (a send recorded late, ``record_delay``);
    #: None: at once.
    recorded_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "waMessageId": self.wa_message_id,
            "direction": self.direction,
            "type": self.type,
            "content": self.content,
            "status": self.status,
            "timestamp": iso(self.timestamp),
            "contactName": self.contact_name,
        }

    def summary(self) -> str:
        body = self.content.get(self.type)
        if isinstance(body, dict):
            for key in ("body", "caption", "text"):
                if isinstance(body.get(key), str):
                    return str(body[key])
        return f"[{self.type}]"


def _encode_cursor(message: StoredMessage) -> str:
    raw = json.dumps(
        {"timestamp": iso(message.timestamp), "seq": message.seq}, separators=(",", ":")
    )
    return base64.b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        seq = json.loads(base64.b64decode(cursor, validate=True))["seq"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise Refusal(400, "Invalid parameter") from None
    if not isinstance(seq, int):
        raise Refusal(400, "Invalid parameter")
    return seq


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    value = int(raw) if raw.isdigit() else -1
    if check_limit(value, maximum):
        raise Refusal(400, "Invalid parameter")
    return value


def conversations_page(
    messages: list[StoredMessage],
    contacts: Mapping[str, tuple[str | None, Any]],
    cursor: str | None,
    limit: str | None,
) -> dict[str, Any]:
    """A page of conversations (their last message), the latest first."""
    size = _limit(limit, 20, CONVERSATIONS_MAX_LIMIT)
    before = _decode_cursor(cursor)
    last: dict[str, StoredMessage] = {}
    for message in messages:
        last[message.phone] = message
    ordered = sorted(last.values(), key=lambda m: m.seq, reverse=True)
    if before is not None:
        ordered = [m for m in ordered if m.seq < before]
    page = ordered[:size]
    data = [
        {
            "phoneNumber": m.phone,
            "contactName": contacts.get(m.phone, (None, None))[0],
            "lastMessage": {
                "id": m.id,
                "content": m.summary(),
                "type": m.type,
                "direction": m.direction,
                "timestamp": iso(m.timestamp),
            },  # fmt: skip
            "unreadCount": sum(
                1
                for x in messages
                if x.phone == m.phone and x.direction == "inbound" and x.status != "read"
            ),  # fmt: skip
        }
        for m in page
    ]
    return _paged(data, page, len(ordered) > size)


def messages_page(
    messages: list[StoredMessage],
    phone: str,
    cursor: str | None,
    limit: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A page of one conversation's messages, the latest first (as of ``now``: without the
    sends not recorded yet)."""
    if check_phone(phone):
        raise Refusal(400, "Invalid phone number format")
    size = _limit(limit, 30, MESSAGES_MAX_LIMIT)
    before = _decode_cursor(cursor)
    ordered = [
        m for m in reversed(messages)
        if m.phone == phone and (before is None or m.seq < before)
        and (m.recorded_at is None or now is None or m.recorded_at <= now)
    ]  # fmt: skip
    page = ordered[:size]
    return _paged([m.to_json() for m in page], page, len(ordered) > size)


def _paged(data: list[Any], page: list[StoredMessage], more: bool) -> dict[str, Any]:
    cursor = _encode_cursor(page[-1]) if more and page else None
    return {"data": data, "pagination": {"nextCursor": cursor, "hasMore": more}}
