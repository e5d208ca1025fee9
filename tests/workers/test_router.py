"""Routers: filters, order, composition, STOP — through the same dispatch the worker uses."""

from __future__ import annotations

import re

import pytest

from workers import STOP, Context, HandlerFailed, InboundMessage, Router, StatusUpdate
from workers.testing import Harness, inbound_text, status_update


def test_decorators_return_the_function_unchanged() -> None:
    router = Router("r")

    def handler(event: InboundMessage, ctx: Context) -> None:
        pass

    assert router.message(text="hi")(handler) is handler
    assert router.status()(handler) is handler


@pytest.mark.parametrize(
    ("filters", "text", "expected"),
    [
        ({"text": "hello"}, "hello", True),
        ({"text": "hello"}, "  hello ", True),
        ({"text": "hello"}, "Hello", False),
        ({"text": "hello", "ignore_case": True}, "HeLLo", True),
        ({"text": ["hi", "hello"]}, "hi", True),
        ({"contains": "order"}, "where is my order?", True),
        ({"contains": "ORDER", "ignore_case": True}, "where is my order?", True),
        ({"contains": ["refund", "cancel"]}, "please cancel it", True),
        ({"contains": "refund"}, "please cancel it", False),
        ({"regex": r"ORD-\d+"}, "status of ORD-123", True),
        ({"regex": r"ord-\d+", "ignore_case": True}, "status of ORD-123", True),
        ({"regex": re.compile(r"^\d{4}$")}, "1234", True),
        ({"type": "image"}, "hello", False),
        ({"sender": "919876543210", "text": "hello"}, "hello", True),
        ({"sender": "15550000000"}, "hello", False),
        ({"when": lambda e: e.contact.name == "John Doe"}, "x", True),
    ],
)
def test_message_filters(filters: dict[str, object], text: str, expected: bool) -> None:
    router = Router("r")
    seen: list[str] = []

    @router.message(**filters)  # type: ignore[arg-type]
    def handler(event: InboundMessage, ctx: Context) -> None:
        seen.append(event.text or "")

    Harness(router).deliver(inbound_text(text))

    assert bool(seen) is expected


def test_status_filter_and_kinds_do_not_mix() -> None:
    router = Router("r")
    seen: list[str] = []

    @router.status(status=["delivered", "read"])
    def on_status(event: StatusUpdate, ctx: Context) -> None:
        seen.append(event.status)

    harness = Harness(router)
    for value in ("sent", "delivered", "read", "failed"):
        harness.deliver(status_update("wamid.OUT", value))
    harness.deliver(inbound_text("read"))

    assert seen == ["delivered", "read"]


def test_handlers_run_in_order_and_stop_skips_the_rest() -> None:
    first, second = Router("first"), Router("second")
    calls: list[str] = []

    @first.message()
    def a(event: InboundMessage, ctx: Context) -> None:
        calls.append("a")

    @first.message(text="stop")
    def b(event: InboundMessage, ctx: Context) -> str:
        calls.append("b")
        return STOP

    @second.message()
    def c(event: InboundMessage, ctx: Context) -> None:
        calls.append("c")

    harness = Harness(first, second)
    harness.deliver(inbound_text("go"))
    harness.deliver(inbound_text("stop"))

    assert calls == ["a", "c", "a", "b"]


def test_a_function_under_several_decorators_runs_once_when_both_match() -> None:
    router = Router("r")
    calls: list[str] = []

    @router.message(contains="order")
    @router.message(contains="refund")
    def handler(event: InboundMessage, ctx: Context) -> None:
        calls.append(event.text or "")

    harness = Harness(router)
    harness.deliver(inbound_text("order refund"))
    harness.deliver(inbound_text("refund please"))
    harness.deliver(inbound_text("nothing"))

    assert calls == ["order refund", "refund please"]


def test_replies_expected_tells_earlier_handlers_a_reply_will_follow() -> None:
    router = Router("r")
    expected: list[bool] = []

    @router.message()
    def mark(event: InboundMessage, ctx: Context) -> None:
        expected.append(ctx.replies_expected)

    @router.message(text="hi", replies=True)
    def reply(event: InboundMessage, ctx: Context) -> None:
        pass

    harness = Harness(router)
    harness.deliver(inbound_text("hi"))
    harness.deliver(inbound_text("something else"))

    assert expected == [True, False]


def test_router_names_must_be_usable_as_keys() -> None:
    with pytest.raises(ValueError, match="router name"):
        Router("has space")


def test_a_retry_skips_handlers_that_completed_and_reruns_the_failed_one() -> None:
    router = Router("r")
    calls: list[str] = []
    fail = [True]

    @router.message()
    def first(event: InboundMessage, ctx: Context) -> None:
        calls.append("first")
        ctx.portal.send_text(event.sender, "ack")

    @router.message()
    def second(event: InboundMessage, ctx: Context) -> None:
        calls.append("second")
        if fail.pop():
            raise RuntimeError("transient")

    harness = Harness(router)
    event = inbound_text("hi")
    with pytest.raises(HandlerFailed, match="second failed: transient"):
        harness.deliver(event)
    fail.append(False)
    harness.deliver(event)  # the job's retry: same event, same ledger

    assert calls == ["first", "second", "second"]
    assert harness.portal.sent == [("919876543210", "ack")]
