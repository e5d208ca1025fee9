"""Realistic webhook envelopes (spec §5), as the portal sends them: for ``wabahooks trigger``.

Pure: values in, envelopes out. Message ids look like the portal's (``wamid.`` and base64).
"""

from __future__ import annotations

import base64
import random
import secrets
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_ERROR",
    "MESSAGE_TYPES",
    "STATUSES",
    "message_content",
    "message_envelope",
    "new_message_id",
    "out_of_order",
    "status_envelope",
    "test_envelope",
]

#: Every message type the model reads (``service.typedevents``), as ``trigger message --type``.
MESSAGE_TYPES = (
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "button",
    "interactive",
    "location",
    "reaction",
)
_MEDIA = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg; codecs=opus",
    "document": "application/pdf",
    "sticker": "image/webp",
}
STATUSES = ("sent", "delivered", "read", "failed")
#: What a ``failed`` status carries when no error is given (WhatsApp's shape).
DEFAULT_ERROR: dict[str, Any] = {
    "code": 131026,
    "title": "Message undeliverable",
    "message": "Message undeliverable",
    "error_data": {"details": "The recipient's phone number is not a WhatsApp number."},
}
PROJECT_ID = "wabahooks-trigger"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def new_message_id(phone: str) -> str:
    """Return a fresh id shaped like the portal's: ``wamid.`` + base64."""
    tail = base64.b64encode(f"{phone}:{secrets.token_hex(10).upper()}".encode()).decode()
    return f"wamid.{tail}"


def message_content(
    kind: str,
    text: str | None,
    payload: str | None = None,
    *,
    reply_to: str | None = None,
    list_reply: bool = False,
) -> dict[str, Any]:
    """Return the object a message of type ``kind`` carries under its type's name.

    ``text``: a text's body, a media caption (a document's file name), a button's or an
    interactive reply's title, a location's name, a reaction's emoji. ``payload``: a
    button's payload, an interactive reply's id. ``reply_to``: the message a reaction is
    for. ``list_reply``: an interactive list's reply instead of a reply button's."""
    if kind == "text":
        return {"body": text if text is not None else "Hello"}
    if kind in _MEDIA:
        content: dict[str, Any] = {
            "id": str(random.randrange(10**15, 10**16)),
            "mime_type": _MEDIA[kind],
        }
        if kind == "document":
            content["filename"] = text or "invoice.pdf"
        elif kind == "audio":
            content["voice"] = True
        elif text:
            content["caption"] = text
        return content
    if kind == "button":
        label = text if text is not None else "Yes"
        return {"text": label, "payload": payload or label.upper().replace(" ", "_")}
    if kind == "interactive":
        title = text if text is not None else "Track my order"
        reply = {"id": payload or title.lower().replace(" ", "_"), "title": title}
        if list_reply:
            reply["description"] = ""
            return {"type": "list_reply", "list_reply": reply}
        return {"type": "button_reply", "button_reply": reply}
    if kind == "location":
        return {
            "latitude": 12.9716,
            "longitude": 77.5946,
            "name": text or "Cubbon Park",
            "address": "Kasturba Road, Bengaluru",
        }
    if kind == "reaction":
        return {"message_id": reply_to or "", "emoji": text if text is not None else "\U0001f44d"}
    raise ValueError(f"unknown message type {kind!r}: one of {', '.join(MESSAGE_TYPES)}")


def _envelope(event: str, data: dict[str, Any], when: datetime) -> dict[str, Any]:
    return {"event": event, "timestamp": _iso(when), "projectId": PROJECT_ID, "data": data}


def message_envelope(
    *,
    sender: str,
    name: str,
    kind: str = "text",
    text: str | None = None,
    payload: str | None = None,
    reply_to: str | None = None,
    message_id: str | None = None,
    content: dict[str, Any] | None = None,
    list_reply: bool = False,
) -> dict[str, Any]:
    """Return an inbound message envelope from ``sender`` (``content``: the type's object as
    given, instead of one made from ``text`` and ``payload``)."""
    when = _now()
    if content is None:
        content = message_content(kind, text, payload, reply_to=reply_to, list_reply=list_reply)
    data: dict[str, Any] = {
        "from": sender,
        "messageId": message_id or new_message_id(sender),
        "timestamp": str(int(when.timestamp())),
        "type": kind,
        "contact": {"name": name, "wa_id": sender},
        kind: content,
    }
    if reply_to and kind != "reaction":  # a reaction names its message in its own object
        data["context"] = {"id": reply_to}
    return _envelope("message", data, when)


def status_envelope(
    message_id: str,
    status: str,
    *,
    recipient: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return a status envelope for the outbound message ``message_id``."""
    when = _now()
    data: dict[str, Any] = {
        "messageId": message_id,
        "status": status,
        "timestamp": str(int(when.timestamp())),
    }
    if recipient:
        data["recipient"] = recipient
    if status == "failed":
        data["errors"] = errors if errors is not None else [dict(DEFAULT_ERROR)]
    return _envelope("status", data, when)


def test_envelope(test_id: str | None = None) -> dict[str, Any]:
    """Return the portal's test event."""
    data = {
        "message": "This is a test webhook from WABA Portal",
        "testId": test_id or secrets.token_hex(8),
    }
    return _envelope("test", data, _now())


def out_of_order(sequence: list[str], rand: random.Random | None = None) -> list[str]:
    """Return ``sequence`` shuffled so that (with two or more distinct items) it is not in order."""
    rand = rand or random.Random()
    if len(set(sequence)) < 2:
        return list(sequence)
    shuffled = list(sequence)
    while shuffled == sequence:
        rand.shuffle(shuffled)
    return shuffled
