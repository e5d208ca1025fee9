"""What every ``wabahooks`` command shares: exiting with one line, settings and Redis, tables,
and walking the failed registries.

Exit codes (README "Command line"): 2 for a configuration error, 1 for anything else that
stopped the command (Redis unreachable, the portal refusing).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import click
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from service.settings import ConfigError, Settings

__all__ = [
    "connect",
    "fail",
    "failed_jobs",
    "safe_url",
    "settings_or_exit",
    "table",
]

#: Jobs fetched from Redis at a time while walking a registry.
_BATCH = 500


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``wabahooks: <message>`` on stderr and exit with ``code``."""
    click.echo(f"wabahooks: {message}", err=True)
    sys.exit(code)


def settings_or_exit(env: Mapping[str, str] | None = None, *, redis_url: bool = True) -> Settings:
    """Return the settings, requiring ``REDIS_URL`` unless ``redis_url`` is False; on a
    configuration error, exit 2 with the one line naming the variable."""
    try:
        settings = Settings.from_env(env)
        if redis_url:
            settings.require_redis_url()
    except ConfigError as exc:
        fail(str(exc))
    return settings


def safe_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(settings: Settings) -> redis.Redis:
    """Return a Redis connection that answered a PING, or exit 1 saying why not."""
    url = settings.require_redis_url()
    connection = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        connection.ping()
    except redis.RedisError as exc:
        fail(
            f"cannot reach Redis at {safe_url(url)} ({exc}); is it running? "
            "(for `wabahooks dev`: `. .wabahooks/dev.env` sets REDIS_URL)",
            1,
        )
    return connection


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> Iterator[str]:
    """Yield aligned lines: the header, then the rows (the last column is not padded)."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()


def failed_jobs(
    connection: redis.Redis,
    queues: Iterable[str],
    progress: Callable[[str], None] = lambda _line: None,
) -> Iterator[tuple[str, Job]]:
    """Yield ``(queue, job)`` for every failed job of ``queues`` (full queue names), fetched
    in batches; ids whose job has expired are skipped."""
    for queue in queues:
        registry = FailedJobRegistry(queue, connection=connection, serializer=JSONSerializer)
        ids = registry.get_job_ids()
        for start in range(0, len(ids), _BATCH):
            progress(f"scanning failed jobs of {queue}: {min(start + _BATCH, len(ids))}/{len(ids)}")
            batch = ids[start : start + _BATCH]
            for job in Job.fetch_many(batch, connection=connection, serializer=JSONSerializer):
                if job is not None:
                    yield queue, job
