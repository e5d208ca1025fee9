"""Helpers for the built-ins' tests: configuration from TOML text, events of any type."""

from __future__ import annotations

import itertools
import tomllib
from typing import Any

from service.typedevents import InboundMessage
from workers import Router, testing
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
    return testing.inbound(type, body, sender=sender, name=name)


def text(body: str, **kwargs: Any) -> InboundMessage:
    return inbound("text", {"body": body}, **kwargs)
