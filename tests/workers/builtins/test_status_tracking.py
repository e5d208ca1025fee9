"""Status tracking: the fold, status_changed subscriptions, retries; and the whole loop."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from tests.support.builtins import harness
from tests.support.loop import running_loop
from workers import Context, HandlerFailed, Router, StatusTransition, StatusUpdate
from workers.builtins.status_tracking import advances
from workers.testing import status_update

TRACKING = "[handlers.status_tracking]\n"
_n = itertools.count()


def status(message_id: str, value: str, **data: object) -> StatusUpdate:
    """A status event with an identity of its own (the intake drops true duplicates; these
    stand for redeliveries after the dedupe window), so the Harness does not replay it."""
    event = status_update(message_id, value, **data)
    return replace(event, event_key=f"{event.event_key}:{next(_n)}")


ERRORS = [{"code": 131026, "title": "Message undeliverable"}]


def subscriber(seen: list[tuple[str | None, str]], **filters: str) -> Router:
    router = Router("mine")

    @router.status_changed(**filters)  # type: ignore[arg-type]
    def changed(transition: StatusTransition, ctx: Context) -> None:
        seen.append((transition.previous, transition.current))

    return router


@pytest.mark.parametrize(
    ("previous", "status", "changes"),
    [
        (None, "sent", True),
        (None, "read", True),
        ("sent", "delivered", True),
        ("read", "delivered", False),
        ("read", "read", False),
        ("read", "failed", True),
        ("failed", "read", False),
        ("failed", "failed", False),
        ("sent", "deleted", False),  # not a status the fold knows
    ],
)
def test_the_fold_is_monotonic_and_failed_is_final(
    previous: str | None, status: str, changes: bool
) -> None:
    assert advances(previous, status) is changes


def test_subscribers_see_each_change_once_whatever_the_order() -> None:
    seen: list[tuple[str | None, str]] = []
    h = harness(TRACKING, subscriber(seen))
    for value in ["delivered", "sent", "delivered", "read", "delivered", "read"]:
        h.deliver(status("wamid.OUT1", value))
    h.deliver(status("wamid.OUT1", "failed", errors=ERRORS))
    h.deliver(status("wamid.OUT1", "read"))
    assert seen == [(None, "delivered"), ("delivered", "read"), ("read", "failed")]
    record = h.store("wamid.OUT1").get("status")
    assert (record["status"], record["previous"], record["errors"]) == ("failed", "read", ERRORS)


def test_a_status_filter_applies_to_the_folded_status() -> None:
    seen: list[tuple[str | None, str]] = []
    h = harness(TRACKING, subscriber(seen, status="read"))
    for value in ["sent", "read", "delivered", "read"]:
        h.deliver(status("wamid.OUT2", value))
    assert seen == [("sent", "read")]


def test_a_failed_delivery_is_logged_at_warning_with_the_portals_errors() -> None:
    h = harness(TRACKING)
    with capture_logs() as logs:
        h.deliver(status_update("wamid.OUT3", "failed", errors=ERRORS, recipient="919876543210"))
    failed = [line for line in logs if line["event"] == "status.failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["errors"] == ERRORS
    assert failed[0]["recipient"] == "********3210"


def test_a_retry_hands_the_same_transition_on() -> None:
    calls: list[StatusTransition] = []
    flaky = Router("flaky")

    @flaky.status_changed()
    def once_failing(transition: StatusTransition, ctx: Context) -> None:
        calls.append(transition)
        if len(calls) == 1:
            raise RuntimeError("downstream unavailable")

    h = harness(TRACKING, flaky)
    event = status_update("wamid.OUT4", "delivered")
    with pytest.raises(HandlerFailed):
        h.deliver(event)
    h.deliver(event)  # the retry: the tracker is skipped, its transition is not lost
    assert [(t.previous, t.current) for t in calls] == [(None, "delivered")] * 2


def test_subscribing_to_changes_switches_the_tracker_on() -> None:
    seen: list[tuple[str | None, str]] = []
    h = harness("", subscriber(seen))
    h.deliver(status_update("wamid.OUT5", "sent"))
    assert seen == [(None, "sent")]


def test_statuses_folded_with_out_of_order_and_duplicate_delivery(redis_url: str) -> None:
    seen: list[tuple[str | None, str]] = []
    config = TRACKING + '[handlers.auto_reply]\ndefault = "Got it"\ncooldown = 0\n'
    with running_loop(redis_url, subscriber(seen), config=config) as loop:
        loop.chaos(out_of_order=True, duplicate_rate=1.0)
        loop.inbound("hello")
        loop.work()  # the reply is sent; the simulator reports read, delivered, sent
        loop.settle()
        loop.work()
        reply = loop.history()["sent"][0]["messageId"]
        loop.status(reply, "failed", errors=ERRORS)
        loop.status(reply, "delivered")
        loop.work()
        history = loop.history()
        record = loop.r.hget(f"wabahooks:store:{reply}", "status")

    statuses = [
        d["payload"]["data"]["status"] for d in history["deliveries"] if d["event"] == "status"
    ]
    assert statuses[:6] == ["read", "read", "delivered", "delivered", "sent", "sent"]
    assert seen == [(None, "read"), ("read", "failed")]
    assert record is not None and b'"status": "failed"' in record
