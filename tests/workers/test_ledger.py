"""The Redis ledger on real Valkey: every write conditional on holding the job, one atomic
write per transition (a completed send included)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis
import redis.asyncio

from tests.support.bredis import BytesRedis
from workers.effects import Effects
from workers.execution import HOLDER_FIELD, ExecutionToken, Superseded
from workers.ledger import RedisLedger
from workers.testing import RecordingPortal

JOB = "rq:job:j1"
PHONE = "919876543210"


def run(redis_url: str, body: Callable[[redis.asyncio.Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await body(client)
        finally:
            await client.aclose()

    asyncio.run(main())


def ledger_fields(r: BytesRedis) -> dict[bytes, bytes]:
    return {k: v for k, v in r.hgetall(JOB).items() if k.startswith(b"wh:") and k != b"wh:holder"}


def test_the_holder_writes_each_transition(redis_url: str, r: BytesRedis) -> None:
    r.hset(JOB, mapping={"status": "started", HOLDER_FIELD: "e1"})

    async def body(client: redis.asyncio.Redis) -> None:
        ledger = RedisLedger(client, ExecutionToken("j1", "e1"))
        await ledger.intend("h", "send_text#1")
        await ledger.record_sent("h", "send_text#1", PHONE, "wamid.1")
        await ledger.intend("h", "send_text#2")
        await ledger.abandon("h", "send_text#2")
        await ledger.mark_handler_done("h")  # deferred: written by the next write or a flush
        assert await client.hget(JOB, "wh:h:h") is None
        await ledger.flush()

    run(redis_url, body)
    assert set(ledger_fields(r)) == {b"wh:s:h:send_text#1", b"wh:h:h"}
    assert b'"done"' in r.hget(JOB, "wh:s:h:send_text#1")  # type: ignore[operator]
    assert r.smembers(f"wabahooks:sent:{PHONE}") == {b"wamid.1"}
    assert 0 < r.ttl(f"wabahooks:sent:{PHONE}") <= 7 * 86400


@pytest.mark.parametrize(
    ("holder", "status"),
    [
        ("e2", "started"),  # re-driven to another execution
        (None, None),  # the job is gone
        ("e1", "queued"),  # re-queued by RQ's own tools, which keep our holder field
        ("e1", "failed"),  # failed by RQ's cleanup (no retries left)
    ],
)
def test_a_superseded_execution_writes_nothing_and_sends_nothing(
    redis_url: str, r: BytesRedis, holder: str | None, status: str | None
) -> None:
    if holder is not None and status is not None:
        r.hset(JOB, mapping={"status": status, HOLDER_FIELD: holder})
    portal = RecordingPortal()

    async def body(client: redis.asyncio.Redis) -> None:
        ledger = RedisLedger(client, ExecutionToken("j1", "e1"))
        await ledger.mark_handler_done("h")  # deferred: refused with the next write
        await ledger.record_sent("h", "earlier", PHONE, "wamid.1")  # deferred too
        for write in (
            ledger.intend("h", "send_text#1"),
            ledger.complete("h", "once:x", {"a": 1}),
            ledger.abandon("h", "send_text#1"),
            ledger.flush(),
        ):
            with pytest.raises(Superseded, match="superseded"):
                await write
        with pytest.raises(Superseded):
            await Effects(portal, ledger, "h").send_text(PHONE, "Hello")

    run(redis_url, body)
    assert portal.sent == []
    assert ledger_fields(r) == {}
    assert not r.exists(f"wabahooks:sent:{PHONE}")
    assert r.exists(JOB) == (holder is not None)  # a gone job is not recreated


def test_a_completed_send_is_recorded_in_one_command(redis_url: str, r: BytesRedis) -> None:
    """The sent set and the step's done record go together: one script, nothing between
    (written with the next write that must reach Redis, here a flush before a retry)."""
    r.hset(JOB, mapping={"status": "started", HOLDER_FIELD: "e1"})

    async def body(client: redis.asyncio.Redis) -> None:
        ledger = RedisLedger(client, ExecutionToken("j1", "e1"))
        await ledger.record_sent("h", "warm-up", PHONE, "wamid.0")
        await ledger.flush()  # loads the script
        await client.config_resetstat()
        await ledger.record_sent("h", "send_text#1", PHONE, "wamid.1")
        assert await ledger.sent_ids(PHONE) == {"wamid.0", "wamid.1"}  # known before written
        await ledger.flush()
        stats = await client.info("commandstats")
        calls = {name: value["calls"] for name, value in stats.items()}
        # One request; the writes counted beside it are the ones inside the script.
        assert calls["cmdstat_evalsha"] == 1
        assert "cmdstat_multi" not in calls and "cmdstat_eval" not in calls
        assert calls["cmdstat_sadd"] == calls["cmdstat_hset"] == 1

    run(redis_url, body)
    assert r.smembers(f"wabahooks:sent:{PHONE}") == {b"wamid.0", b"wamid.1"}
    assert b"wamid.1" in r.hget(JOB, "wh:s:h:send_text#1")  # type: ignore[operator]


def test_a_finishing_job_hands_its_sends_to_the_engine(redis_url: str, r: BytesRedis) -> None:
    r.hset(JOB, mapping={"status": "started", HOLDER_FIELD: "e1"})

    taken: list[tuple[str, str]] = []

    async def body(client: redis.asyncio.Redis) -> None:
        ledger = RedisLedger(client, ExecutionToken("j1", "e1"))
        await ledger.intend("h", "send_text#1")
        await ledger.record_sent("h", "send_text#1", PHONE, "wamid.1")
        taken.extend(ledger.take_sent())

    run(redis_url, body)
    assert taken == [(f"wabahooks:sent:{PHONE}", "wamid.1")]
    assert not r.exists(f"wabahooks:sent:{PHONE}")  # the engine writes it with the job's end


def test_the_copy_read_with_the_job_is_used_and_kept_in_step(redis_url: str, r: BytesRedis) -> None:
    r.hset(JOB, mapping={HOLDER_FIELD: "e1", "wh:h:earlier": "1"})

    async def body(client: redis.asyncio.Redis) -> None:
        ledger = RedisLedger(client, ExecutionToken("j1", "e1"), fields={"h:fetched": "1"})
        assert await ledger.handler_done("fetched")  # from the copy, no round trip
        assert not await ledger.handler_done("earlier")
        await ledger.mark_handler_done("now")
        assert await ledger.handler_done("now")

    run(redis_url, body)


def test_deferred_records_go_with_the_next_write_that_must_reach_redis(
    redis_url: str, r: BytesRedis
) -> None:
    r.hset(JOB, mapping={"status": "started", HOLDER_FIELD: "e1"})

    async def body(client: redis.asyncio.Redis) -> None:
        ledger = RedisLedger(client, ExecutionToken("j1", "e1"))
        await ledger.complete("mark", "mark_read#1", {"typing": True}, deferred=True)
        await ledger.mark_handler_done("mark")
        assert await ledger.handler_done("mark")  # known to this execution at once
        assert set(ledger_fields(r)) == set()
        await ledger.intend("reply", "send_text#1")  # one script writes all three

    run(redis_url, body)
    assert set(ledger_fields(r)) == {
        b"wh:s:mark:mark_read#1",
        b"wh:h:mark",
        b"wh:s:reply:send_text#1",
    }
