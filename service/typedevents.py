"""Typed events: what handlers receive, built from a job's verified envelope.

Four kinds, each keeping the raw ``envelope`` (and ``data``) for anything not
typed here:

- :class:`InboundMessage` — a contact wrote (``text``, ``image``, ``button``,
  ``interactive``, ``location``, ``reaction`` … as WhatsApp defines them);
- :class:`StatusUpdate` — an outbound message was ``sent``, ``delivered``,
  ``read`` or ``failed`` (with ``errors``);
- :class:`TestEvent` — the portal's webhook test;
- :class:`UnknownEvent` — anything else the portal signed.

Building never raises on odd shapes: a missing field is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from service.identity import Kind

__all__ = [
    "Contact",
    "Event",
    "InboundMessage",
    "Location",
    "Media",
    "StatusUpdate",
    "TestEvent",
    "UnknownEvent",
    "parse_event",
]

_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Contact:
    """Who wrote: their profile name and WhatsApp id (their number)."""

    name: str | None
    wa_id: str | None


@dataclass(frozen=True, slots=True)
class Media:
    """An image, video, audio, document or sticker: the portal's media id, type, caption."""

    id: str | None
    mime_type: str | None
    caption: str | None


@dataclass(frozen=True, slots=True)
class Location:
    """A shared location."""

    latitude: float | None
    longitude: float | None
    name: str | None
    address: str | None


@dataclass(frozen=True)
class _Base:
    event_key: str
    envelope: Any = field(repr=False)

    @property
    def data(self) -> Mapping[str, Any]:
        """The envelope's raw ``data`` object (empty if it had none)."""
        return _obj(_obj(self.envelope).get("data"))


@dataclass(frozen=True)
class InboundMessage(_Base):
    """A message a contact sent to the business."""

    kind: ClassVar[Kind] = Kind.MESSAGE

    message_id: str = ""
    #: The contact's number (``data.from``): digits with country code.
    sender: str = ""
    #: WhatsApp's message type: ``text``, ``image``, ``button``, ``interactive`` …
    type: str = ""
    contact: Contact = Contact(None, None)
    #: What the contact said: a text's body, a button's text, an interactive reply's title.
    text: str | None = None
    #: A quick-reply button's payload (type ``button``) or interactive reply id.
    payload: str | None = None
    media: Media | None = None
    location: Location | None = None
    #: For a reaction: the emoji (empty when a reaction is removed).
    reaction: str | None = None
    #: The message this one replies or reacts to (``context.id`` / ``reaction.message_id``).
    reply_to: str | None = None


@dataclass(frozen=True)
class StatusUpdate(_Base):
    """A change in the delivery status of a message the business sent."""

    kind: ClassVar[Kind] = Kind.STATUS

    message_id: str = ""
    status: str = ""
    recipient: str | None = None
    #: For ``failed``: the portal's error objects, as sent.
    errors: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class TestEvent(_Base):
    """The portal's webhook test (``POST /api/v1/webhook/test``)."""

    kind: ClassVar[Kind] = Kind.TEST
    __test__: ClassVar[bool] = False  # not a pytest test class, though its name says Test…

    test_id: str = ""
    message: str | None = None


@dataclass(frozen=True)
class UnknownEvent(_Base):
    """A signed event of a kind this version does not know; see ``envelope``."""

    kind: ClassVar[Kind] = Kind.OTHER


Event = InboundMessage | StatusUpdate | TestEvent | UnknownEvent


def _message(event_key: str, envelope: Any, data: Mapping[str, Any]) -> InboundMessage:
    kind = _str(data.get("type")) or ""
    body = _obj(data.get(kind))
    text = payload = reaction = reply_to = None
    media = location = None
    if kind == "text":
        text = _str(body.get("body"))
    elif kind == "button":
        text, payload = _str(body.get("text")), _str(body.get("payload"))
    elif kind == "interactive":
        reply = _obj(body.get("button_reply") or body.get("list_reply"))
        text, payload = _str(reply.get("title")), _str(reply.get("id"))
    elif kind in _MEDIA_TYPES:
        media = Media(_str(body.get("id")), _str(body.get("mime_type")), _str(body.get("caption")))
    elif kind == "location":
        lat, lon = body.get("latitude"), body.get("longitude")
        location = Location(
            float(lat) if isinstance(lat, int | float) else None,
            float(lon) if isinstance(lon, int | float) else None,
            _str(body.get("name")),
            _str(body.get("address")),
        )
    elif kind == "reaction":
        reaction = _str(body.get("emoji"))
        reply_to = _str(body.get("message_id"))
    reply_to = reply_to or _str(_obj(data.get("context")).get("id"))
    contact = _obj(data.get("contact"))
    return InboundMessage(
        event_key=event_key,
        envelope=envelope,
        message_id=_str(data.get("messageId")) or "",
        sender=_str(data.get("from")) or "",
        type=kind,
        contact=Contact(_str(contact.get("name")), _str(contact.get("wa_id"))),
        text=text,
        payload=payload,
        media=media,
        location=location,
        reaction=reaction,
        reply_to=reply_to,
    )


def parse_event(envelope: Any, *, kind: str, event_key: str) -> Event:
    # ``kind`` is the job's field, a :class:`Kind` value (compared as the str it is).
    """Return the typed event for a job's ``envelope`` (``kind`` as the receiver classified it)."""
    data = _obj(_obj(envelope).get("data"))
    if kind == Kind.MESSAGE:
        return _message(event_key, envelope, data)
    if kind == Kind.STATUS:
        errors = data.get("errors")
        return StatusUpdate(
            event_key=event_key,
            envelope=envelope,
            message_id=_str(data.get("messageId")) or "",
            status=_str(data.get("status")) or "",
            recipient=_str(data.get("recipient")) or _str(data.get("recipient_id")),
            errors=tuple(e for e in errors if isinstance(e, Mapping))
            if isinstance(errors, list)
            else (),
        )
    if kind == Kind.TEST:
        return TestEvent(
            event_key=event_key,
            envelope=envelope,
            test_id=_str(data.get("testId")) or "",
            message=_str(data.get("message")),
        )
    return UnknownEvent(event_key=event_key, envelope=envelope)
