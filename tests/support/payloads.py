"""Realistic webhook envelopes (spec §5) and the production signer, for tests."""

from __future__ import annotations

import itertools
from typing import Any

from service.signature import js_stringify, sign

_counter = itertools.count(1)


def message(
    sender: str = "919876543210", text: str = "Hello", message_id: str | None = None
) -> dict[str, Any]:
    """An inbound text message envelope with a fresh message id."""
    mid = message_id or f"wamid.TEST{next(_counter):08d}"
    return {
        "event": "message",
        "timestamp": "2024-01-15T10:30:00Z",
        "projectId": "test-project",
        "data": {
            "from": sender,
            "messageId": mid,
            "timestamp": "1705314600",
            "type": "text",
            "contact": {"name": "John Doe", "wa_id": sender},
            "text": {"body": text},
        },
    }


def status(message_id: str, value: str) -> dict[str, Any]:
    """A status envelope for an outbound message."""
    return {
        "event": "status",
        "timestamp": "2024-01-15T10:30:05Z",
        "projectId": "test-project",
        "data": {"messageId": message_id, "status": value, "timestamp": "1705314605"},
    }


def signed(envelope: Any, secret: str) -> tuple[bytes, dict[str, str]]:
    """Return the portal's bytes for ``envelope`` and the headers it sends with them."""
    body = js_stringify(envelope)
    return body, {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, secret)}
