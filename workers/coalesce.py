"""Coalescing: a contact's burst of messages reaches a handler once, as one :class:`Burst`.

People type in bursts ("hi" / "I have a problem" / "with order 4521"). A handler
registered with ``@router.message(coalesce=Window(quiet=4, max_wait=15, max_messages=50))``
is not called for each message. Instead each matching message's job appends it to the
conversation's burst (atomically, once per message id) and marks it read (no typing), and
(re-)arms one flush timer per conversation and handler: ``quiet`` seconds after the latest
message, but never later than ``max_wait`` seconds after the first; ``max_messages`` makes
it due at once. When the timer fires, the flush job enters the contact's chain (the
intake's own chain step) and runs the handler once with the whole burst, in order.

The moving parts (Redis scripts, the flush job) are ``workers.convredis`` and
``workers.converse``; this module holds the handler-facing types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from service.typedevents import Contact, InboundMessage, parse_event

__all__ = ["Burst", "Window"]


@dataclass(frozen=True, slots=True)
class Window:
    """When a burst is flushed: ``quiet`` s after its latest message, at most ``max_wait`` s
    after its first, or as soon as it holds ``max_messages`` (then within a second)."""

    quiet: float = 5.0
    max_wait: float = 15.0
    max_messages: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.quiet <= self.max_wait:
            raise ValueError(
                f"Window(quiet={self.quiet}, max_wait={self.max_wait}): need "
                "0 < quiet <= max_wait (seconds)"
            )
        if self.max_messages < 1:
            raise ValueError(f"Window(max_messages={self.max_messages}): need at least 1")


@dataclass(frozen=True)
class Burst:
    """A contact's messages that arrived close together, in arrival order.

    ``text``: the texts joined by newlines (messages without text left out);
    ``first_id`` / ``last_id``: the first and latest message ids.
    """

    kind: ClassVar[str] = "burst"

    event_key: str
    messages: tuple[InboundMessage, ...]

    @property
    def sender(self) -> str:
        """The contact's number."""
        return self.messages[-1].sender

    @property
    def contact(self) -> Contact:
        """Who wrote (as on the latest message)."""
        return self.messages[-1].contact

    @property
    def texts(self) -> list[str]:
        """Each message's text, in order (messages without text left out)."""
        return [m.text for m in self.messages if m.text]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    @property
    def first_id(self) -> str:
        return self.messages[0].message_id

    @property
    def last_id(self) -> str:
        return self.messages[-1].message_id

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> Burst:
        """Return the burst of the stored messages (``{"event_key", "envelope"}`` each)."""
        messages = []
        for record in records:
            event = parse_event(record["envelope"], kind="message", event_key=record["event_key"])
            assert isinstance(event, InboundMessage)
            messages.append(event)
        return cls(f"burst:{messages[0].message_id}", tuple(messages))


def message_record(event: InboundMessage) -> dict[str, Any]:
    """What a burst keeps of one message: enough to rebuild the event."""
    return {"event_key": event.event_key, "envelope": event.envelope}
