"""Realistic webhook envelopes (spec §5) and the production signer, for tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from service import samples
from service.signature import js_stringify, sign

_counter = itertools.count(1)


#: The instant every test envelope carries (a fixed past: replay-tolerance tests rely on it).
WHEN = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
PROJECT = "test-project"


def message(
    sender: str = "919876543210", text: str = "Hello", message_id: str | None = None
) -> dict[str, Any]:
    """An inbound text message envelope with a fresh message id (the one envelope builder,
    ``service.samples``, at :data:`WHEN`)."""
    mid = message_id or f"wamid.TEST{next(_counter):08d}"
    return samples.message_envelope(
        sender=sender, name="John Doe", text=text, message_id=mid, when=WHEN, project_id=PROJECT
    )


def status(message_id: str, value: str) -> dict[str, Any]:
    """A status envelope for an outbound message, 5 s after :data:`WHEN`."""
    return samples.status_envelope(
        message_id, value, when=WHEN + timedelta(seconds=5), project_id=PROJECT
    )


def signed(envelope: Any, secret: str) -> tuple[bytes, dict[str, str]]:
    """Return the portal's bytes for ``envelope`` and the headers it sends with them."""
    body = js_stringify(envelope)
    return body, {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, secret)}
