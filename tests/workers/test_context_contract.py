"""One contract, two implementations: the in-memory kit users test with, and Redis.

Ledger, store and effects behave the same whether a handler runs in
``workers.testing.Harness`` or in a worker against Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from service.portal import InvalidPhoneNumber, OutcomeUnknown, SentMessage
from workers.context import MemoryStore, RedisStore, Store
from workers.effects import Effects
from workers.ledger import Ledger, MemoryLedger, RedisLedger
from workers.testing import RecordingPortal


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.fixture
def ledger(backend: str, request: pytest.FixtureRequest) -> Ledger:
    if backend == "memory":
        return MemoryLedger()
    r: redis.Redis = request.getfixturevalue("r")
    return RedisLedger(r, "rq:job:contract")


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> Store:
    if backend == "memory":
        return MemoryStore()
    r: redis.Redis = request.getfixturevalue("r")
    return RedisStore(r, "919876543210", ttl=60)


class FlakyPortal(RecordingPortal):
    """Accepts sends, but can answer the next ones with OutcomeUnknown or a refusal."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_answers = 0
        self.refuse = False

    def send_text(self, to: str, message: str) -> SentMessage:
        if self.refuse:
            raise InvalidPhoneNumber("send_text", "Invalid phone number format")
        sent = super().send_text(to, message)
        if self.lose_answers:
            self.lose_answers -= 1
            raise OutcomeUnknown("send_text", "the portal answered 500 after accepting")
        return sent


def test_store_round_trips_json_values(store: Store) -> None:
    store.set("count", 3)
    store.set("profile", {"name": "Ana", "tags": ["vip"]})

    assert store.get("count") == 3
    assert store.get("profile") == {"name": "Ana", "tags": ["vip"]}
    assert store.get("missing", "default") == "default"
    store.delete("count")
    assert store.get("count") is None


def test_ledger_records_handlers_and_steps(ledger: Ledger) -> None:
    assert not ledger.handler_done("h")
    ledger.intend("h", "send_text#1")
    intent = ledger.get("h", "send_text#1")
    ledger.complete("h", "send_text#1", {"message_id": "wamid.1"})
    ledger.mark_handler_done("h")

    assert intent is not None and intent.state == "intent"
    done = ledger.get("h", "send_text#1")
    assert done is not None and done.state == "done" and done.result == {"message_id": "wamid.1"}
    assert ledger.handler_done("h")
    assert ledger.get("other", "send_text#1") is None


def test_a_completed_send_is_not_repeated_on_a_retry(ledger: Ledger) -> None:
    portal = RecordingPortal()

    first = Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")
    again = Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")

    assert portal.sent == [("919876543210", "Thanks!")]
    assert first == again


def test_an_unknown_outcome_is_reconciled_from_history_not_resent(ledger: Ledger) -> None:
    portal = FlakyPortal()
    portal.lose_answers = 1

    with pytest.raises(OutcomeUnknown):
        Effects(portal, ledger, "h").send_text("919876543210", "Your order shipped")
    retried = Effects(portal, ledger, "h").send_text("919876543210", "Your order shipped")

    assert portal.sent == [("919876543210", "Your order shipped")]
    assert retried.message_id.startswith("wamid.SENT")


def test_an_intent_that_never_reached_the_portal_is_sent_on_the_retry(ledger: Ledger) -> None:
    portal = RecordingPortal()
    ledger.intend("h", "send_text#1")  # the worker died before the request went out

    Effects(portal, ledger, "h").send_text("919876543210", "Hello")

    assert portal.sent == [("919876543210", "Hello")]


def test_an_earlier_identical_send_is_not_mistaken_for_the_lost_one(ledger: Ledger) -> None:
    portal = FlakyPortal()
    Effects(portal, ledger, "earlier").send_text("919876543210", "Thanks!")  # another event's
    portal.lose_answers = 1

    with pytest.raises(OutcomeUnknown):
        Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")
    Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")

    # The lost send is found (it is newer and not attributed), so two in all, not three.
    assert portal.sent == [("919876543210", "Thanks!")] * 2


def test_a_refused_send_leaves_no_intent_behind(ledger: Ledger) -> None:
    portal = FlakyPortal()
    portal.refuse = True

    with pytest.raises(InvalidPhoneNumber):
        Effects(portal, ledger, "h").send_text("919876543210", "Hello")

    assert ledger.get("h", "send_text#1") is None


def test_mark_read_once_and_steps_named_by_order(ledger: Ledger) -> None:
    portal = RecordingPortal()
    for _ in range(2):
        effects = Effects(portal, ledger, "h")
        effects.mark_read("wamid.IN", show_typing_indicator=True)
        effects.send_text("919876543210", "one")
        effects.send_text("919876543210", "two")

    assert portal.marked == [("wamid.IN", True)]
    assert portal.sent == [("919876543210", "one"), ("919876543210", "two")]


def test_only_send_and_mark_read_are_offered_as_effects() -> None:
    effects = Effects(RecordingPortal(), MemoryLedger(), "h")

    with pytest.raises(AttributeError, match="ctx.portal.client.conversations"):
        effects.conversations  # noqa: B018
