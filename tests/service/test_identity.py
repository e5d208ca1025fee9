"""Event identity and conversation keys (spec §5)."""

from __future__ import annotations

from service.identity import Kind, classify
from service.logs import mask_phone
from tests.support import payloads


def test_message_identity_is_its_message_id_and_conversation_the_sender() -> None:
    classified = classify(payloads.message(sender="919876543210", message_id="wamid.A"))

    assert (classified.kind, classified.event_key, classified.conversation) == (
        Kind.MESSAGE,
        "message:wamid.A",
        "919876543210",
    )


def test_status_identity_includes_the_status_and_conversation_is_the_message() -> None:
    sent = classify(payloads.status("wamid.B", "sent"))
    read = classify(payloads.status("wamid.B", "read"))

    assert sent.event_key == "status:wamid.B:sent"
    assert read.event_key == "status:wamid.B:read"
    assert sent.conversation == read.conversation == "wamid.B"


def test_test_event_identity_is_its_test_id() -> None:
    classified = classify({"event": "test", "data": {"testId": "abc"}})

    assert (classified.kind, classified.event_key, classified.conversation) == (
        Kind.TEST,
        "test:abc",
        None,
    )


def test_anything_else_is_other_identified_by_its_canonical_form() -> None:
    one = classify({"event": "message", "data": {"text": "no id"}})
    reordered = classify({"data": {"text": "no id"}, "event": "message"})
    pretty = classify({"event": "message", "data": {"text": "no id"}})

    assert one.kind is Kind.OTHER and one.event_key.startswith("other:")
    assert one.event_key == pretty.event_key
    assert one.event_key != reordered.event_key  # key order is part of what the portal signed
    assert classify([1, 2]).kind is Kind.OTHER


def test_phone_numbers_are_masked_to_their_last_four_digits() -> None:
    assert mask_phone("919876543210") == "********3210"
    assert mask_phone("123") == "123"
    assert mask_phone(None) is None
