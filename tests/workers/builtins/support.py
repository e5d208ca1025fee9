"""Helpers for the built-ins' tests: configuration from TOML text, events of any type."""

from __future__ import annotations

import itertools
import tomllib
from datetime import UTC, datetime
from typing import Any

from service.model import InboundMessage, parse_event
from workers import Router
from workers.builtins import routers
from workers.config import Config, parse_config
from workers.testing import Harness

_ids = itertools.count(1)
CUSTOMER = "919876543210"
AGENT = "919800000001"


def config(text: str, **env: str) -> Config:
    return parse_config(tomllib.loads(text), env=env)


def harness(text: str, *user: Router) -> Harness:
    """A Harness running the built-ins ``text`` enables around ``user``'s routers."""
    cfg = config(text)
    return Harness(*routers(cfg, user), config=cfg.raw.get("handlers", {}))


def inbound(
    type: str,  # noqa: A002 - WhatsApp's own field name
    body: dict[str, Any],
    *,
    sender: str = CUSTOMER,
    name: str | None = "John Doe",
) -> InboundMessage:
    """An inbound message event of any ``type`` (``body``: that type's object)."""
    mid = f"wamid.BUILTIN{next(_ids):06d}"
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
            type: body,
        },
    }
    event = parse_event(envelope, kind="message", event_key=f"message:{mid}")
    assert isinstance(event, InboundMessage)
    return event


def text(body: str, **kwargs: Any) -> InboundMessage:
    return inbound("text", {"body": body}, **kwargs)
