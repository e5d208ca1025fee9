"""Auto-reply: rules, templating, hours, cooldown, agents; and the whole loop."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

from tests.support.builtins import AGENT, CUSTOMER, config, harness, inbound, text
from tests.support.loop import running_loop
from workers.builtins import auto_reply
from workers.config import parse_config
from workers.testing import Harness, status_update

RULES = """
[agents]
numbers = ["919800000001"]

[handlers.auto_reply]
cooldown = 0
default = "Thanks {first_name}, we will get back to you."

[[handlers.auto_reply.rules]]
text = ["hi", "hello"]
reply = "Hello {name}!"

[[handlers.auto_reply.rules]]
contains = "price"
reply = "Prices: https://example.com/prices"

[[handlers.auto_reply.rules]]
regex = 'order\\s*#?(\\d+)'
reply = "Looking into it."

[[handlers.auto_reply.rules]]
payload = "TALK_TO_AGENT"
reply = "An agent is on the way."

[[handlers.auto_reply.rules]]
type = "image"
reply = "Thanks, we got your photo {caption}"

[[handlers.auto_reply.rules]]
type = "reaction"
reply = "Glad you liked it"

[[handlers.auto_reply.rules]]
text = "status"
agents = true
reply = "All systems go"

[[handlers.auto_reply.rules]]
contains = "CaSe"
ignore_case = false
reply = "exact case"
"""


def replies(h: Harness) -> list[str]:
    return [message for _, message in h.portal.sent]


def test_rules_first_match_wins_then_the_default() -> None:
    h = harness(RULES)
    h.deliver(text("  HELLO "))  # exact, case-insensitive, surrounding spaces ignored
    h.deliver(text("what is the PRICE of an order #123?"))  # contains wins over regex: first
    h.deliver(text("Order 4711 is late"))
    h.deliver(inbound("button", {"text": "Talk to us", "payload": "TALK_TO_AGENT"}))
    h.deliver(inbound("image", {"id": "1", "mime_type": "image/jpeg", "caption": "my cat"}))
    h.deliver(text("case"))  # the case-sensitive rule does not match: the default answers
    h.deliver(text("In CaSe"))
    assert replies(h) == [
        "Hello John Doe!",
        "Prices: https://example.com/prices",
        "Looking into it.",
        "An agent is on the way.",
        "Thanks, we got your photo my cat",
        "Thanks John, we will get back to you.",
        "exact case",
    ]


def test_templates_are_filled_safely() -> None:
    template = "Hi {name}{{!}} You said: {text} ({caption}/{payload})"
    h = harness(f"[handlers.auto_reply]\ndefault = '{template}'\n")
    h.deliver(text("{name.__class__} {0} {caption}", name=None))
    # A missing field renders empty; the contact's own braces are never expanded.
    assert replies(h) == ["Hi {!} You said: {name.__class__} {0} {caption} (/)"]


def test_no_reply_to_statuses_tests_reactions_or_agents_unless_a_rule_says_so() -> None:
    h = harness(RULES.replace('type = "reaction"', 'type = "sticker"'))
    assert h.deliver(status_update("wamid.OUT1", "read")) == 0
    h.deliver(inbound("reaction", {"message_id": "wamid.OUT1", "emoji": "👍"}))
    h.deliver(text("hello", sender=AGENT))
    h.deliver(text("anything at all", sender=AGENT))
    assert replies(h) == []
    h.deliver(text("status", sender=AGENT))  # this rule says agents = true
    assert h.portal.sent == [(AGENT, "All systems go")]


def test_a_rule_for_reactions_answers_them() -> None:
    h = harness(RULES)
    h.deliver(inbound("reaction", {"message_id": "wamid.OUT1", "emoji": "👍"}))
    assert replies(h) == ["Glad you liked it"]


def test_the_same_reply_waits_out_the_cooldown_per_contact() -> None:
    now = [datetime(2025, 12, 1, 10, 0, tzinfo=UTC)]
    cfg = config(RULES.replace("cooldown = 0", "cooldown = 600"))
    assert cfg.auto_reply is not None
    h = Harness(auto_reply.build(cfg.auto_reply, clock=lambda: now[0]))
    for _ in range(10):
        h.deliver(text("hello"))
    h.deliver(text("price?"))  # another reply is not held back
    h.deliver(text("hello", sender="447700900123"))  # nor is another contact
    now[0] += timedelta(seconds=601)
    h.deliver(text("hello"))
    assert h.portal.sent == [
        (CUSTOMER, "Hello John Doe!"),
        (CUSTOMER, "Prices: https://example.com/prices"),
        ("447700900123", "Hello John Doe!"),
        (CUSTOMER, "Hello John Doe!"),
    ]


def test_out_of_hours_reply_in_the_business_time_zone() -> None:
    hours = """
out_of_hours = "Closed, back at 9 ({name})"
[handlers.auto_reply.hours]
timezone = "America/New_York"
days = ["mon", "tue", "wed", "thu", "fri"]
open = "09:00"
close = "17:00"
"""
    cfg = parse_config(tomllib.loads(RULES.replace("[[handlers", hours + "[[handlers", 1)), env={})
    assert cfg.auto_reply is not None
    # Monday 1 Dec 2025, 15:00 UTC is 10:00 in New York; 23:00 UTC is 18:00.
    now = [datetime(2025, 12, 1, 15, 0, tzinfo=UTC)]
    h = Harness(auto_reply.build(cfg.auto_reply, clock=lambda: now[0]))
    h.deliver(text("hi"))
    now[0] = datetime(2025, 12, 1, 23, 0, tzinfo=UTC)
    h.deliver(text("hi"))
    h.deliver(text("hi", sender=AGENT))  # agents get no out-of-hours reply either
    assert replies(h) == ["Hello John Doe!", "Closed, back at 9 (John Doe)"]


def test_a_retried_event_is_not_answered_twice() -> None:
    h = harness(RULES)
    event = text("hi")
    h.deliver(event)
    h.deliver(event)
    assert replies(h) == ["Hello John Doe!"]


def test_exactly_one_reply_of_the_right_text_end_to_end(redis_url: str) -> None:
    with running_loop(redis_url, config="[handlers.mark_read]\n" + RULES) as loop:
        loop.chaos(duplicate_rate=1.0)
        photo = loop.inbound("", type="image", content={"id": "77", "mime_type": "image/jpeg"})
        loop.work()
        loop.work()
        history = loop.history()

    assert [(m["to"], m["message"]) for m in history["sent"]] == [
        (CUSTOMER, "Thanks, we got your photo")
    ]
    assert [(m["messageId"], m["showTypingIndicator"]) for m in history["markReads"]] == [
        (photo, True)
    ]


def test_no_reply_to_an_agent_end_to_end(redis_url: str) -> None:
    with running_loop(redis_url, config="[handlers.mark_read]\n" + RULES) as loop:
        message_id = loop.inbound("hello", sender=AGENT, name="Agent Smith")
        loop.work()
        history = loop.history(AGENT)

    assert history["sent"] == []
    assert [(m["messageId"], m["showTypingIndicator"]) for m in history["markReads"]] == [
        (message_id, False)
    ]


def test_numbers_messages_are_forwarded_to_count_as_agents() -> None:
    h = harness(
        '[handlers.auto_reply]\ndefault = "Thanks"\n'
        '[handlers.forward]\n[[handlers.forward.whatsapp]]\nto = "919800000042"\n'
    )
    h.deliver(text("I am on shift", sender="919800000042"))
    assert h.portal.sent == []


def test_a_reply_filled_with_emoji_fits_the_portals_utf16_limit() -> None:
    from service.portal.validation import check_text
    from workers.builtins.auto_reply import render
    from workers.testing import inbound_text

    reply = render("You said: {text}", inbound_text("😀" * 4096))

    assert check_text(reply) is None  # 4,096 code points would be 8,192 UTF-16 units
    assert reply.startswith("You said: 😀") and len(reply.encode("utf-16-le")) // 2 <= 4096
