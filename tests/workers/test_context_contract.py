"""One contract, two implementations: the in-memory kit users test with, and Redis.

Ledger, store and effects behave the same whether a handler runs in
``workers.testing.Harness`` or in a worker against Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from service.portal import InvalidPhoneNumber, OutcomeUnknown, SentMessage
from tests.support.bredis import BytesRedis
from workers.context import AsyncStore, MemoryStore, RedisStore
from workers.effects import Effects
from workers.execution import HOLDER_FIELD, ExecutionToken, Superseded
from workers.ledger import Ledger, RedisLedger
from workers.ledgermemory import MemoryLedger
from workers.testing import RecordingPortal

T = TypeVar("T")
Run = Callable[[Callable[[redis.asyncio.Redis], Awaitable[T]]], T]
TOKEN = ExecutionToken("contract", "exec-1")


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.fixture
def run(redis_url: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """Run ``body(client)`` on a fresh event loop with a redis.asyncio client of its own."""

    def run_body(body: Callable[..., Awaitable[Any]]) -> Any:
        async def main() -> Any:
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                return await body(client)
            finally:
                await client.aclose()

        return asyncio.run(main())

    return run_body


def make_ledger(backend: str, client: redis.asyncio.Redis) -> Ledger:
    if backend == "memory":
        return MemoryLedger()
    return RedisLedger(client, TOKEN)


def make_store(backend: str, client: redis.asyncio.Redis) -> AsyncStore:
    if backend == "memory":
        return MemoryStore()
    return RedisStore(client, "919876543210", ttl=60)


@pytest.fixture(autouse=True)
def held(r: BytesRedis) -> None:
    """The engine started the job: this test's execution holds it."""
    r.hset("rq:job:contract", mapping={HOLDER_FIELD: TOKEN.execution_id, "status": "started"})


class FlakyPortal(RecordingPortal):
    """Accepts sends, but can answer the next ones with OutcomeUnknown or a refusal."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_answers = 0
        self.refuse = False

    async def send_text(self, to: str, message: str) -> SentMessage:
        if self.refuse:
            raise InvalidPhoneNumber("send_text", "Invalid phone number format")
        sent = await super().send_text(to, message)
        if self.lose_answers:
            self.lose_answers -= 1
            raise OutcomeUnknown("send_text", "the portal answered 500 after accepting")
        return sent


def test_store_round_trips_json_values(backend: str, run: Run[None]) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        store = make_store(backend, client)
        await store.set("count", 3)
        await store.set("profile", {"name": "Ana", "tags": ["vip"]})

        assert await store.get("count") == 3
        assert await store.get("profile") == {"name": "Ana", "tags": ["vip"]}
        assert await store.get("missing", "default") == "default"
        await store.delete("count")
        assert await store.get("count") is None

    run(body)


def test_ledger_records_handlers_and_steps(backend: str, run: Run[None]) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        assert not await ledger.handler_done("h")
        await ledger.intend("h", "send_text#1")
        intent = await ledger.get("h", "send_text#1")
        await ledger.complete("h", "send_text#1", {"message_id": "wamid.1"})
        await ledger.mark_handler_done("h")

        assert intent is not None and intent.state == "intent"
        done = await ledger.get("h", "send_text#1")
        assert done is not None and done.state == "done"
        assert done.result == {"message_id": "wamid.1"}
        assert await ledger.handler_done("h")
        assert await ledger.get("other", "send_text#1") is None

    run(body)


def test_a_completed_send_is_not_repeated_on_a_retry(backend: str, run: Run[None]) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        portal = RecordingPortal()

        first = await Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")
        again = await Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")

        assert portal.sent == [("919876543210", "Thanks!")]
        assert first == again
        assert await ledger.sent_ids("919876543210") == {first.message_id}

    run(body)


def test_an_unknown_outcome_is_reconciled_from_history_not_resent(
    backend: str, run: Run[None]
) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        portal = FlakyPortal()
        portal.lose_answers = 1

        with pytest.raises(OutcomeUnknown):
            await Effects(portal, ledger, "h").send_text("919876543210", "Your order shipped")
        retried = await Effects(portal, ledger, "h").send_text("919876543210", "Your order shipped")

        assert portal.sent == [("919876543210", "Your order shipped")]
        assert retried.message_id.startswith("wamid.SENT")

    run(body)


def test_an_intent_that_never_reached_the_portal_is_sent_on_the_retry(
    backend: str, run: Run[None]
) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        portal = RecordingPortal()
        await ledger.intend("h", "send_text#1")  # the worker died before the request went out

        await Effects(portal, ledger, "h").send_text("919876543210", "Hello")

        assert portal.sent == [("919876543210", "Hello")]

    run(body)


def test_an_earlier_identical_send_is_not_mistaken_for_the_lost_one(
    backend: str, run: Run[None]
) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        portal = FlakyPortal()
        await Effects(portal, ledger, "earlier").send_text("919876543210", "Thanks!")
        portal.lose_answers = 1

        with pytest.raises(OutcomeUnknown):
            await Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")
        await Effects(portal, ledger, "h").send_text("919876543210", "Thanks!")

        # The lost send is found (it is newer and not attributed), so two in all, not three.
        assert portal.sent == [("919876543210", "Thanks!")] * 2

    run(body)


def test_a_refused_send_leaves_no_intent_behind(backend: str, run: Run[None]) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        portal = FlakyPortal()
        portal.refuse = True

        with pytest.raises(InvalidPhoneNumber):
            await Effects(portal, ledger, "h").send_text("919876543210", "Hello")

        assert await ledger.get("h", "send_text#1") is None

    run(body)


def test_mark_read_once_and_steps_named_by_order(backend: str, run: Run[None]) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        ledger = make_ledger(backend, client)
        portal = RecordingPortal()
        for _ in range(2):
            effects = Effects(portal, ledger, "h")
            await effects.mark_read("wamid.IN", show_typing_indicator=True)
            await effects.send_text("919876543210", "one")
            await effects.send_text("919876543210", "two")

        assert portal.marked == [("wamid.IN", True)]
        assert portal.sent == [("919876543210", "one"), ("919876543210", "two")]

    run(body)


def test_a_cancelled_execution_is_refused_before_anything_goes_out(
    backend: str, run: Run[None]
) -> None:
    async def body(client: redis.asyncio.Redis) -> None:
        token = ExecutionToken("contract", TOKEN.execution_id, cancelled=True)
        ledger: Ledger = MemoryLedger(token) if backend == "memory" else RedisLedger(client, token)
        portal = RecordingPortal()
        effects = Effects(portal, ledger, "h")

        with pytest.raises(Superseded):
            await effects.send_text("919876543210", "Hello")
        with pytest.raises(Superseded):
            await effects.mark_read("wamid.IN")
        with pytest.raises(Superseded):
            await effects.once("post", lambda: {"ran": True})

        assert portal.sent == [] and portal.marked == []
        assert await ledger.get("h", "send_text#1") is None

    run(body)


def test_only_send_and_mark_read_are_offered_as_effects() -> None:
    effects = Effects(RecordingPortal(), MemoryLedger(), "h")

    with pytest.raises(AttributeError, match="ctx.portal.client.conversations"):
        effects.conversations  # noqa: B018
