"""Typed events from envelopes, as WhatsApp shapes them; odd shapes never raise."""

from __future__ import annotations

from typing import Any

from service.typedevents import InboundMessage, StatusUpdate, TestEvent, UnknownEvent, parse_event


def message(kind: str, body: dict[str, Any], **extra: Any) -> InboundMessage:
    data = {"from": "919876543210", "messageId": "wamid.X", "type": kind, kind: body, **extra}
    event = parse_event({"event": "message", "data": data}, kind="message", event_key="k")
    assert isinstance(event, InboundMessage)
    return event


def test_text_message() -> None:
    event = message("text", {"body": "Hello"}, contact={"name": "John", "wa_id": "919876543210"})

    assert (event.text, event.sender, event.message_id, event.type) == (
        "Hello",
        "919876543210",
        "wamid.X",
        "text",
    )
    assert event.contact.name == "John"
    assert event.data["messageId"] == "wamid.X"


def test_button_interactive_media_location_reaction_and_context() -> None:
    button = message("button", {"text": "Yes", "payload": "CONFIRM"})
    choice = message(
        "interactive", {"type": "list_reply", "list_reply": {"id": "r1", "title": "Red"}}
    )
    image = message("image", {"id": "123", "mime_type": "image/jpeg", "caption": "receipt"})
    place = message("location", {"latitude": 12.9, "longitude": 77.6, "name": "Office"})
    reaction = message("reaction", {"message_id": "wamid.OUT", "emoji": "👍"})
    reply = message("text", {"body": "yes"}, context={"id": "wamid.PREV"})

    assert (button.text, button.payload) == ("Yes", "CONFIRM")
    assert (choice.text, choice.payload) == ("Red", "r1")
    assert image.media is not None and image.media.caption == "receipt" and image.text is None
    assert place.location is not None and place.location.latitude == 12.9
    assert (reaction.reaction, reaction.reply_to) == ("👍", "wamid.OUT")
    assert reply.reply_to == "wamid.PREV"


def test_status_test_and_unknown() -> None:
    failed = parse_event(
        {
            "event": "status",
            "data": {"messageId": "m", "status": "failed", "errors": [{"code": 1}]},
        },
        kind="status",
        event_key="k",
    )
    test = parse_event({"data": {"testId": "t1", "message": "hi"}}, kind="test", event_key="k")
    other = parse_event([1, 2], kind="other", event_key="k")

    assert isinstance(failed, StatusUpdate) and failed.errors == ({"code": 1},)
    assert isinstance(test, TestEvent) and test.test_id == "t1"
    assert isinstance(other, UnknownEvent) and other.data == {}


def test_odd_shapes_do_not_raise() -> None:
    event = parse_event(
        {"data": {"type": 5, "text": "not an object"}}, kind="message", event_key="k"
    )

    assert isinstance(event, InboundMessage)
    assert (event.text, event.sender, event.type) == (None, "", "")
