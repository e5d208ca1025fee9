"""``wabahooks status``: what is queued and running (``wabahooks check`` is ``service.cli.check``).

``status`` reads RQ's own keys (queues, registries, worker hashes) with RQ's API, and the
portal send rate the workers share (it drops after a 429 and climbs back). ``connect`` and
``QUEUES`` serve the other Redis commands too.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click
import redis
from rq import Queue, Worker
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer

from service import unparsed
from service.cli.common import connect as connect_redis
from service.cli.common import fail, settings_or_exit, table
from service.jobs import QUEUE_NAMES
from service.redisguard import MemoryMarks, memory_state
from service.settings import ConfigError, Settings

__all__ = ["MIN_REDIS", "QUEUES", "connect", "status"]

QUEUES = tuple(dict.fromkeys(QUEUE_NAMES.values()))
#: Oldest Redis (and Valkey, which reports its Redis compatibility version) we support: 7.2
#: for WAITAOF (``WABAHOOKS_WAITAOF``) and the scripts' flags; the README's production rule.
MIN_REDIS = (7, 2)


def connect() -> tuple[Settings, redis.Redis]:
    """Return the settings and a Redis connection that answered, or exit with why not."""
    settings = settings_or_exit()
    return settings, connect_redis(settings)


def _ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when.replace(tzinfo=when.tzinfo or UTC)).total_seconds()
    return f"{max(0, int(seconds))} s ago"


@click.command()
def status() -> None:
    """Show queue depths, workers, failed jobs and the portal send rate (needs REDIS_URL)."""
    from service.portal.config import api_rate
    from service.portal.ratelimit import limiter_state

    settings, connection = connect()
    try:
        ceiling = api_rate(os.environ)
    except ConfigError as exc:
        fail(str(exc))
    rows = []
    failed = 0
    for name in QUEUES:
        queue = Queue(settings.keys.queue(name), connection=connection, serializer=JSONSerializer)
        counts = [
            queue.count,
            DeferredJobRegistry(queue=queue).count,
            # rq 2.12 leaves ScheduledJobRegistry.__init__ unannotated.
            ScheduledJobRegistry(queue=queue).count,  # type: ignore[no-untyped-call]
            StartedJobRegistry(queue=queue).count,
            FailedJobRegistry(queue=queue).count,
            FinishedJobRegistry(queue=queue).count,
        ]
        failed += counts[4]
        rows.append([queue.name, *counts])
    header = ["QUEUE", "QUEUED", "DEFERRED", "SCHEDULED", "STARTED", "FAILED", "FINISHED"]
    click.echo("\n".join(table(header, rows)))
    ours = {settings.keys.queue(name) for name in QUEUES}
    workers = [w for w in Worker.all(connection=connection) if ours.intersection(w.queue_names())]
    click.echo("")
    if workers:
        worker_rows = [
            [w.name, ",".join(w.queue_names()), w.get_state(), _ago(w.last_heartbeat)]
            for w in sorted(workers, key=lambda w: (w.queue_names(), w.name))
        ]
        click.echo("\n".join(table(["WORKER", "QUEUE", "STATE", "LAST HEARTBEAT"], worker_rows)))
    else:
        click.echo(
            "No workers. Start one per queue: wabahooks worker --queue messages|statuses|other"
        )
    click.echo(f"\n{failed} failed job(s)." + (" See: wabahooks failed list" if failed else ""))
    kept = unparsed.count(connection, settings.queue_prefix)
    where = f": redis-cli XRANGE {settings.keys.unparsed()} - +" if kept else ""
    click.echo(f"{kept} unparsed signed body(ies) kept raw{where}")
    memory = memory_state(connection, MemoryMarks.of(settings))
    verdict = "admitting events" if memory.admitting else "REFUSING events (503) until drained"
    click.echo(f"Redis memory: {memory.describe()}: {verdict}.")
    click.echo(limiter_state(connection, ceiling, prefix=settings.keys.portal()).describe())
