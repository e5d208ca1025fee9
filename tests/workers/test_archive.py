"""The event archive, with real Valkey, the simulator, the receiver and the worker engine:
each event's journey recorded with its job's end, retention, and `forget`."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from service.archive import ArchiveKeys, ArchiveSettings, contact_token, decode_entry
from service.cli.forget import forget_contact
from service.identity import classify
from service.intake import Intake
from service.jobs import build_job
from service.logs import id_key
from tests.support.bredis import BytesRedis
from tests.support.loop import Loop, running_loop
from tests.support.workers import WorkerProcess, expire_leases
from tests.workers.example_handlers import router
from workers import Context, InboundMessage, Permanent, Router
from workers.archive import Archive
from workers.engine import Engine
from workers.rqstate import RQState
from workers.running import JobRunner
from workers.threads import job_deadline

LOG_KEY = "archive-test-key"
KEY = id_key({"WABAHOOKS_LOG_KEY": LOG_KEY}) or b""  # never empty: a key is configured
assert KEY is not None
KEYS = ArchiveKeys("wabahooks:")
PHONE = "919876543210"

strict = Router("strict")


@strict.message(text="boom")
def refuse(event: InboundMessage, ctx: Context) -> None:
    raise Permanent("cannot handle boom")


slow = Router("slow")


@slow.message(text="slow")
async def dawdle(event: InboundMessage, ctx: Context) -> None:
    # Time moves, not the clock: the job's deadline comes due now, as it would once the job
    # had run its timeout (a real 1 s timeout let a busy machine time out the echo instead).
    deadline = job_deadline.get()
    assert deadline is not None
    deadline.reschedule(asyncio.get_running_loop().time())
    await asyncio.sleep(3600)  # far past the job's deadline: the engine cancels it


@contextmanager
def archived_loop(
    redis_url: str, *routers: Router, retention: int = 3600, **receiver_settings: Any
) -> Iterator[Loop]:
    """The whole loop, its workers archiving (as WABAHOOKS_ARCHIVE=on does)."""
    archive = Archive(ArchiveSettings(enabled=True, retention=retention, key=KEY), KEYS)
    with running_loop(redis_url, *routers, **receiver_settings) as loop:
        build = loop.runtime

        def runtime() -> Any:
            built = build()
            built.archive = archive
            return built

        loop.runtime = runtime
        yield loop


def entries(r: BytesRedis, kind: str | None = "message") -> list[dict[str, Any]]:
    """The archived entries in arrival order (of one kind; None: all)."""
    ids = [i.decode() for i in r.zrange(KEYS.time, 0, -1)]
    found = [decode_entry(r.get(KEYS.entry(i)) or b"null") for i in ids]
    return [e for e in found if kind is None or e["kind"] == kind]


def test_a_journey_is_recorded_with_handler_outcomes_and_portal_calls(
    redis_url: str, r: BytesRedis
) -> None:
    with archived_loop(redis_url, strict, router) as loop:
        before = time.time()
        message_id = loop.inbound("hello there")
        loop.inbound("boom")
        loop.work()
        history = loop.history()

    [hello, boom] = entries(r)
    statuses = entries(r, "status")
    sent_id = history["sent"][0]["messageId"]
    assert hello["event_key"] == f"message:{message_id}"
    assert hello["kind"] == "message" and hello["outcome"] == "done" and hello["attempt"] == 1
    assert hello["contact"] == "********3210"
    assert before - 5 < hello["received_at"] <= hello["ended_at"]
    assert [(h["name"], h["outcome"]) for h in hello["handlers"]] == [("example:echo", "done")]
    calls = {c["step"]: c for c in hello["calls"]}
    assert calls["send_text#1"]["handler"] == "example:echo"
    assert calls["send_text#1"]["state"] == "done"
    assert calls["send_text#1"]["result"] == {"message_id": sent_id}
    assert calls["mark_read#1"]["result"] == {"typing": True}
    assert hello["envelope"]["data"]["messageId"] == message_id
    assert hello["id"] == r.get(f"wabahooks:claim:message:{message_id}").decode()  # type: ignore[union-attr]

    assert boom["outcome"] == "failed"
    assert [(h["name"], h["outcome"]) for h in boom["handlers"]] == [("strict:refuse", "failed")]
    assert "cannot handle boom" in boom["handlers"][0]["reason"]
    assert "cannot handle boom" in boom["reason"]

    # Indexed by a keyed hash of the number, never the number itself.
    token = contact_token(PHONE, KEY)
    contact_ids = {i.decode() for i in r.zrange(KEYS.contact(token), 0, -1)}
    assert contact_ids == {hello["id"], boom["id"]} | {s["id"] for s in statuses}
    assert not [k for k in r.scan_iter("wabahooks:archive:*") if PHONE.encode() in k]
    # The reply's statuses: archived too, no handler matched them, indexed by their recipient.
    # (How many depends on when the simulator delivered them: at least the first.)
    assert statuses and all(s["outcome"] == "done" and s["handlers"] == [] for s in statuses)
    feed = {fields[b"id"].decode() for _sid, fields in r.xrange(KEYS.feed)}
    assert feed == contact_ids


def test_a_retried_event_is_archived_as_retrying_then_done(redis_url: str, r: BytesRedis) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.chaos(server_error_next=100)
        loop.inbound("first")
        loop.work()
        [waiting] = entries(r)
        loop.chaos(server_error_next=0)
        loop.run_scheduled()
        loop.work()
        [ended] = entries(r)

    assert waiting["outcome"] == "retrying" and waiting["handlers"][0]["outcome"] == "failed"
    assert "handler example:echo failed" in waiting["reason"]
    assert "the portal answered 500" in waiting["reason"]  # the cause, not a wrapper
    assert ended["id"] == waiting["id"]
    assert ended["outcome"] == "done" and ended["attempt"] == 2


def test_an_event_the_engine_times_out_is_archived_with_the_timeout(
    redis_url: str, r: BytesRedis
) -> None:
    with archived_loop(redis_url, strict, router, slow, job_timeout=3600) as loop:
        loop.inbound("slow")
        loop.work()
        [waiting] = entries(r)

    # The engine ended it (no handler reported): the record says why, and what ran before.
    assert waiting["outcome"] == "retrying" and waiting["attempt"] == 1
    assert "JobTimeout: the job ran longer than its timeout (3600 s)" in waiting["reason"]
    assert [(h["name"], h["outcome"]) for h in waiting["handlers"]] == [("example:echo", "done")]
    assert {c["step"] for c in waiting["calls"]} >= {"send_text#1"}


def _submit_old(redis_url: str, envelope: dict[str, Any], received: datetime) -> str:
    import asyncio

    import redis.asyncio as aioredis

    async def main() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            intake = Intake(client, prefix="wabahooks:", dedupe_ttl=600, deadline=5)
            classified = classify(envelope)
            job = build_job(
                envelope, classified, queue_prefix="wabahooks:", timeout=60, now=received
            )
            return (await intake.submit(classified, job)).job_id
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_retention_by_arrival_time_and_entries_expire(redis_url: str, r: BytesRedis) -> None:
    def envelope(message_id: str) -> dict[str, Any]:
        data = {"from": PHONE, "messageId": message_id, "type": "text", "text": {"body": "x"}}
        return {"event": "message", "data": data}

    now = datetime.now(UTC)
    with archived_loop(redis_url, retention=3600) as loop:
        past = _submit_old(redis_url, envelope("wamid.PAST"), now - timedelta(hours=2))
        older = _submit_old(redis_url, envelope("wamid.OLDER"), now - timedelta(minutes=50))
        loop.work()
    archived_then = [i.decode() for i in r.zrange(KEYS.time, 0, -1)]
    older_ttl = r.ttl(KEYS.entry(older))
    # The retention lowered to 10 minutes: the next write trims what arrived before that.
    with archived_loop(redis_url, retention=600) as loop:
        new = _submit_old(redis_url, envelope("wamid.NEW"), now)
        loop.work()

    assert archived_then == [older]  # PAST was past the retention on arrival: never archived
    assert not r.exists(KEYS.entry(past))
    assert 3500 < older_ttl <= 3600  # an entry expires with the retention
    token = contact_token(PHONE, KEY)
    assert [i.decode() for i in r.zrange(KEYS.time, 0, -1)] == [new]
    assert [i.decode() for i in r.zrange(KEYS.contact(token), 0, -1)] == [new]
    assert not r.exists(KEYS.entry(older))  # trimmed with its place in the time index
    assert 500 < r.ttl(KEYS.entry(new)) <= 600
    assert 500 < r.ttl(KEYS.time) <= 600 and 500 < r.ttl(KEYS.contact(token)) <= 600


def test_forget_removes_the_contacts_archived_events(redis_url: str, r: BytesRedis) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.inbound("hello", sender=PHONE)
        loop.inbound("hello too", sender="14155550123")
        loop.work()

    before = entries(r, None)
    theirs = {e["id"] for e in before if e["contact"] == "********3210"}
    gone = forget_contact(r, PHONE, archive_key=KEY)

    assert theirs and gone.counts["archived event"] == len(theirs)
    left = entries(r, None)
    assert {e["id"] for e in left} == {e["id"] for e in before} - theirs
    assert {e["contact"] for e in left} == {"*******0123"}
    assert not any(r.exists(KEYS.entry(i)) for i in theirs)
    assert not r.exists(KEYS.contact(contact_token(PHONE, KEY)))


def test_a_worker_refuses_to_archive_without_a_key(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker("--burst", WABAHOOKS_ARCHIVE="on")

    assert worker.proc.wait(timeout=60) == 2
    assert "WABAHOOKS_ARCHIVE=on needs WABAHOOKS_LOG_KEY" in worker.output()


def test_a_worker_with_the_archive_on_records_what_it_runs(
    start_worker: Callable[..., WorkerProcess], redis_url: str, r: BytesRedis
) -> None:
    job_id = _submit_old(redis_url, {"event": "test", "data": {"testId": "t1"}}, datetime.now(UTC))
    worker = start_worker(
        "--queue",
        "other",
        "--burst",
        WABAHOOKS_ARCHIVE="on",
        WABAHOOKS_LOG_KEY=LOG_KEY,
        WABAHOOKS_ARCHIVE_RETENTION="600",
    )

    assert worker.proc.wait(timeout=60) == 0, worker.output()
    [entry] = entries(r, "test")
    assert entry["id"] == job_id and entry["outcome"] == "done" and entry["handlers"] == []
    assert 500 < r.ttl(KEYS.entry(job_id)) <= 600


def test_a_status_without_a_recipient_is_indexed_by_the_number_its_id_encodes(
    redis_url: str, r: BytesRedis
) -> None:
    message_id = "wamid." + base64.b64encode(f"{PHONE}:0a1b2c3d4e5f".encode()).decode()
    envelope = {"event": "status", "data": {"messageId": message_id, "status": "delivered"}}
    with archived_loop(redis_url) as loop:
        job_id = _submit_old(redis_url, envelope, datetime.now(UTC))
        loop.work()

    [entry] = entries(r, "status")
    assert entry["id"] == job_id and entry["contact"] == "********3210"
    assert forget_contact(r, PHONE, archive_key=KEY).counts["archived event"] == 1
    assert not r.exists(KEYS.entry(job_id))


def test_an_event_whose_workers_kept_dying_is_archived_as_abandoned(
    redis_url: str, r: BytesRedis
) -> None:
    messages = "wabahooks:messages"
    with archived_loop(redis_url, router) as loop:
        loop.inbound("poison")
        runtime = loop.runtime()

        async def main() -> list[str]:
            client = runtime.redis
            try:
                # Three workers die on it (the first death is refunded: a suspect now; the
                # next two, in quarantine, count)...
                for attempt in (1, 2, 3):
                    dead = RQState(
                        client, messages, worker_name=f"d{attempt}", lease=1, max_attempts=2
                    )
                    assert len(await dead.start([f"e{attempt}"])) == 1
                    expire_leases(r, messages)
                    if attempt < 3:
                        assert (await dead.redrive()).requeued
                # ...and a live worker's own maintenance fails it, and records it.
                recorded: list[str] = []
                state = RQState(client, messages, worker_name="live", lease=30, max_attempts=2)
                runner = JobRunner(runtime.threads, runtime)

                async def abandoned(ids: list[str]) -> None:
                    await runner.abandoned(state, ids)
                    recorded.extend(ids)

                engine = Engine(state, runner, threads=runtime.threads, on_abandoned=abandoned)
                running = asyncio.create_task(engine.run())
                while not recorded:  # the re-drive runs within REDRIVE_EVERY (5 s) of the start
                    await asyncio.sleep(0.05)
                engine.stop()
                await running
                return recorded
            finally:
                await runtime.aclose()

        [job_id] = asyncio.run(main())

    [entry] = entries(r)
    assert entry["id"] == job_id and entry["outcome"] == "failed" and entry["attempt"] == 2
    assert entry["reason"].startswith("AbandonedJob: its worker stopped renewing the job's lease")
    assert entry["kind"] == "message" and entry["contact"] == "********3210"
