"""What a verified webhook is: its kind, its identity, and its conversation.

Identity is what deduplication is keyed on (spec §5):

- ``message``: ``data.messageId``
- ``status``: ``data.messageId`` + ``data.status`` (one outbound message yields
  ``sent``, ``delivered``, ``read``: each goes through once)
- ``test``: ``data.testId``
- anything else: a hash of the ``JSON.stringify`` form of the body

Anything signed that does not fit the first three shapes is kind ``other``: the
portal signed it, so it is kept, on the catch-all queue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.signature import js_stringify

__all__ = ["Classified", "Kind", "classify"]


class Kind(StrEnum):
    """The kind of a webhook; each kind has its own queue (see ``service.jobs``)."""

    MESSAGE = "message"
    STATUS = "status"
    TEST = "test"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Classified:
    """A verified envelope's kind, identity key and conversation key."""

    kind: Kind
    event_key: str
    #: The contact's number for messages, the message id for statuses, else None.
    conversation: str | None


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def classify(envelope: Any) -> Classified:
    """Return the kind, identity and conversation of a parsed, verified envelope."""
    data = envelope.get("data") if isinstance(envelope, dict) else None
    event = envelope.get("event") if isinstance(envelope, dict) else None
    if isinstance(data, dict):
        message_id = _text(data, "messageId")
        if event == "message" and message_id:
            sender = _text(data, "from")
            return Classified(Kind.MESSAGE, f"message:{message_id}", sender)
        status = _text(data, "status")
        if event == "status" and message_id and status:
            return Classified(Kind.STATUS, f"status:{message_id}:{status}", message_id)
        test_id = _text(data, "testId")
        if event == "test" and test_id:
            return Classified(Kind.TEST, f"test:{test_id}", None)
    digest = hashlib.sha256(js_stringify(envelope)).hexdigest()
    return Classified(Kind.OTHER, f"other:{digest}", None)
