"""``wabahooks worker``, ``wabahooks failed`` and ``wabahooks metrics``: the queue side's commands.

They join the ``wabahooks`` command through the entry-point group ``wabahooks.cli``
(see ``pyproject.toml``), so ``service`` never imports ``workers``. Queues are named
by their suffix (``messages``, ``statuses``, ``other``); ``WABAHOOKS_QUEUE_PREFIX``
is added. Every job is read with RQ's ``JSONSerializer``, as the receiver writes it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import click
import redis
import redis.asyncio
import structlog
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from service.jobs import QUEUE_NAMES
from service.settings import ConfigError, Settings
from workers.engine import DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_LEASE
from workers.threads import DEFAULT_SYNC_THREADS

__all__ = ["DEFAULT_QUEUE", "QUEUES", "failed", "load_worker_settings", "metrics", "worker"]

#: Queue suffixes, in the order the README lists them.
QUEUES = tuple(dict.fromkeys(QUEUE_NAMES.values()))
#: The queue a worker serves when none is named.
DEFAULT_QUEUE = "messages"
# A placeholder for the one setting workers do not use (the webhook secret).
_NO_SECRET = "(not used by workers)"


def load_worker_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Return the settings a worker reads, without requiring ``WABA_WEBHOOK_SECRET``.

    Raise :class:`ConfigError` for a missing ``REDIS_URL`` or a malformed setting.
    """
    values = dict(os.environ if env is None else env)
    if not values.get("WABA_WEBHOOK_SECRET", "").strip():
        values["WABA_WEBHOOK_SECRET"] = _NO_SECRET  # verifying signatures is the receiver's job
    settings = Settings.from_env(values)
    settings.require_redis_url()
    return settings


def _settings() -> Settings:
    try:
        return load_worker_settings()
    except ConfigError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(2)


def _connect(settings: Settings) -> redis.Redis:
    connection = redis.Redis.from_url(settings.require_redis_url())
    try:
        connection.ping()
    except redis.RedisError as exc:
        click.echo(f"wabahooks: cannot reach Redis at REDIS_URL ({exc}); is it running?", err=True)
        sys.exit(1)
    return connection


_QUEUE_CHOICE = click.Choice(QUEUES)


def _env_int(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        click.echo(f"wabahooks: {name} must be a whole number >= {low}, got {raw!r}", err=True)
        sys.exit(2)
    return value


@click.command()
@click.option(
    "--queue",
    "queue_names",
    multiple=True,
    type=_QUEUE_CHOICE,
    help=f"The queue to work (one per process) [default: {DEFAULT_QUEUE}].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 2000),
    default=None,
    help=f"Jobs in flight at once [default: WABAHOOKS_CONCURRENCY or {DEFAULT_CONCURRENCY}].",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=None,
    help=f"Seconds a warm stop waits for jobs in flight [default: {DEFAULT_GRACE:g}].",
)
@click.option("--burst", is_flag=True, help="Exit once the queue is empty and nothing runs.")
def worker(
    queue_names: tuple[str, ...], concurrency: int | None, grace: float | None, burst: bool
) -> None:
    """Work one queue with many jobs in flight (needs REDIS_URL).

    Async handlers run on the worker's event loop, plain ones in a thread pool
    (WABAHOOKS_SYNC_THREADS). SIGTERM or Ctrl-C stops taking jobs and lets those
    in flight finish for up to --grace seconds, then hands the rest back to the
    queue; a second signal hands them back at once. Nothing is lost either way.
    """
    from service.logs import configure_logging

    if len(queue_names) > 1:
        raise click.UsageError(
            f"one queue per worker process, got {', '.join(queue_names)}: "
            "start one `wabahooks worker --queue NAME` for each"
        )
    name = queue_names[0] if queue_names else DEFAULT_QUEUE
    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    options = _EngineOptions(
        queue=settings.queue_prefix + name,
        concurrency=concurrency or _env_int("WABAHOOKS_CONCURRENCY", DEFAULT_CONCURRENCY, 1),
        grace=grace if grace is not None else _env_int("WABAHOOKS_GRACE", int(DEFAULT_GRACE), 0),
        lease=_env_int("WABAHOOKS_LEASE", DEFAULT_LEASE, 5),
        sync_threads=_env_int("WABAHOOKS_SYNC_THREADS", DEFAULT_SYNC_THREADS, 1),
        burst=burst,
    )
    try:
        import uvloop

        stopped, threads_left = uvloop.run(_work(settings, options))
    except _StartupError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(exc.code)
    code = 0 if burst or stopped else 1  # the engine ends only when told
    if threads_left:
        # A sync handler's thread cannot be stopped, and Python waits for every pool thread
        # at exit: its job was handed back and its effects are refused, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class _StartupError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class _EngineOptions:
    queue: str
    concurrency: int
    grace: float
    lease: int
    sync_threads: int
    burst: bool


async def _work(settings: Settings, options: _EngineOptions) -> tuple[bool, bool]:
    """Run the engine until it stops; return whether a signal (or burst) stopped it, and
    whether sync handler threads are still running."""
    import redis.asyncio as aioredis

    from service.redisguard import parse_memory, policy_problem
    from workers.engine import Engine
    from workers.metrics import WorkerMetrics, multiprocess_dir, process_exited
    from workers.rqstate import RQState
    from workers.running import JobRunner
    from workers.runtime import Runtime

    # Size the pool for every job in flight (redis.asyncio's plain pool raises when full).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.require_redis_url(), max_connections=options.concurrency + 16, timeout=None
    )
    client = aioredis.Redis(connection_pool=pool)
    try:
        info = await client.info("memory")
    except redis.RedisError as exc:
        await client.aclose()
        raise _StartupError(f"cannot reach Redis at REDIS_URL ({exc}); is it running?", 1) from exc
    problem = policy_problem(info.get("maxmemory_policy"))
    if problem and not settings.allow_eviction:
        await client.aclose()
        raise _StartupError(problem, 2)
    memory = parse_memory(info, settings.memory_high_water)
    try:
        meter = WorkerMetrics() if multiprocess_dir() else None
        # Handlers load now, so a module that fails to import stops start-up.
        runtime = Runtime.from_env(redis=client, metrics=meter, sync_threads=options.sync_threads)
    except ConfigError as exc:
        await client.aclose()
        raise _StartupError(str(exc), 2) from exc
    state = RQState(
        client,
        options.queue,
        worker_name=uuid.uuid4().hex,
        lease=options.lease,
        max_attempts=runtime.retry.max_attempts,
    )
    engine = Engine(
        state,
        JobRunner(runtime.threads, runtime),
        concurrency=options.concurrency,
        threads=runtime.threads,
        burst=options.burst,
        grace=options.grace,
    )
    structlog.get_logger("wabahooks.worker").info(
        "worker.started",
        queue=options.queue,
        concurrency=options.concurrency,
        sync_threads=options.sync_threads,
        handlers=[r.name for r in runtime.registrations],
        burst=options.burst,
        metrics=meter is not None,
        redis_memory=memory.describe(),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.on_signal)
    threads_left = False
    try:
        await engine.run()
    finally:
        threads_left = runtime.threads.shutdown()
        if threads_left:
            structlog.get_logger("wabahooks.worker").warning(
                "worker.threads_left", threads=runtime.threads.orphans
            )
        await runtime.aclose()
        if meter is not None:
            process_exited()
    return engine.stop_requested, threads_left


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9108, show_default=True, type=int, help="Port to listen on.")
def metrics(host: str, port: int) -> None:
    """Serve this host's worker metrics and the queue depths to Prometheus.

    Sums what every `wabahooks worker` with the same PROMETHEUS_MULTIPROC_DIR
    counted, and reads queue depths from Redis at each scrape. Needs REDIS_URL
    and PROMETHEUS_MULTIPROC_DIR.
    """
    from service.logs import configure_logging
    from workers.metrics import MULTIPROC_ENV, multiprocess_dir, scrape_registry, serve

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    try:
        path = multiprocess_dir()
    except ConfigError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(2)
    if path is None:
        click.echo(
            f"wabahooks: {MULTIPROC_ENV} is not set: set it, for this command and every "
            "worker on the host, to one directory the workers write their metrics to",
            err=True,
        )
        sys.exit(2)
    connection = _connect(settings)
    queues = [settings.queue_prefix + name for name in QUEUES]
    structlog.get_logger("wabahooks.metrics").info(
        "metrics.started", url=f"http://{host}:{port}/metrics", directory=path
    )
    try:
        serve(scrape_registry(path, connection, queues), host, port)
    except OSError as exc:
        click.echo(f"wabahooks: cannot listen on {host}:{port} ({exc})", err=True)
        sys.exit(1)


@click.group()
def failed() -> None:
    """List, requeue or purge failed jobs (RQ's failed registries)."""


def _queues(connection: redis.Redis, prefix: str, only: str | None) -> list[Queue]:
    names = [only] if only else list(QUEUES)
    return [Queue(prefix + n, connection=connection, serializer=JSONSerializer) for n in names]


def _failed_jobs(queues: list[Queue]) -> Iterator[tuple[Queue, Job]]:
    for queue in queues:
        registry = FailedJobRegistry(queue=queue)
        ids = registry.get_job_ids()
        for job in Job.fetch_many(ids, connection=queue.connection, serializer=JSONSerializer):
            if job is not None:
                yield queue, job


def _event_key(job: Job) -> str:
    try:
        return str(job.kwargs.get("event_key", "-"))
    except Exception:  # a job these commands cannot decode is still listed
        return "?"


def _failure(job: Job) -> tuple[str, str]:
    """Return when ``job`` failed and the last line of its error."""
    result = job.latest_result()
    when: datetime | None = result.created_at if result else job.ended_at
    stamp = when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"
    if result is not None and result.type == Result.Type.MAX_RETRIES_EXCEEDED:
        return stamp, "retries exhausted"
    text = (result.exc_string if result and result.exc_string else None) or ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return stamp, lines[-1] if lines else "-"


@failed.command("list")
@click.option("--queue", type=_QUEUE_CHOICE, help="Only this queue [default: all].")
def list_failed(queue: str | None) -> None:
    """Show failed jobs: id, queue, event key, when, the error's last line."""
    settings = _settings()
    rows = []
    for q, job in _failed_jobs(_queues(_connect(settings), settings.queue_prefix, queue)):
        rows.append((job.id, q.name, _event_key(job), *_failure(job)))
    if not rows:
        click.echo("No failed jobs.")
        return
    header = ("JOB ID", "QUEUE", "EVENT KEY", "FAILED AT", "ERROR")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[4]]))
    click.echo(f"\n{len(rows)} failed job(s). Requeue: wabahooks failed requeue ID... | --all")


@failed.command()
@click.argument("job_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--all", "all_", is_flag=True, help="Requeue every failed job (of --queue, if given)."
)
@click.option("--queue", type=_QUEUE_CHOICE, help="With --all: only this queue [default: all].")
def requeue(job_ids: tuple[str, ...], all_: bool, queue: str | None) -> None:
    """Put failed jobs back on their queue, with a fresh set of retries.

    A requeued event runs after later events of its conversation, which its
    failure already released.
    """
    if bool(job_ids) == all_:
        raise click.UsageError(
            "name the job ids to requeue (see `wabahooks failed list`), or pass --all, not both"
        )
    if queue and not all_:
        raise click.UsageError("--queue goes with --all; job ids already say their queue")
    settings = _settings()
    connection = _connect(settings)
    queues = _queues(connection, settings.queue_prefix, queue)
    targets: list[tuple[str | None, str]]
    if all_:
        targets = [(q.name, job.id) for q, job in _failed_jobs(queues)]
    else:
        targets = [(_origin(connection, job_id), job_id) for job_id in job_ids]
    ours = {q.name for q in queues}
    errors = 0
    for origin, job_id in targets:
        registry = FailedJobRegistry(origin or "", connection=connection, serializer=JSONSerializer)
        if origin not in ours or job_id not in registry:
            click.echo(f"wabahooks: {job_id} is not a failed wabahooks job; skipped", err=True)
            errors += 1
            continue
        connection.hdel(Job.key_for(job_id), "number_of_retries")  # a fresh set of retries
        registry.requeue(job_id)
        click.echo(f"requeued {job_id} on {origin}")
    click.echo(f"Requeued {len(targets) - errors} job(s).")
    if errors:
        sys.exit(1)


def _origin(connection: redis.Redis, job_id: str) -> str | None:
    origin = connection.hget(Job.key_for(job_id), "origin")
    return origin.decode() if isinstance(origin, bytes) else None


@failed.command()
@click.option("--queue", type=_QUEUE_CHOICE, help="Only this queue [default: all].")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str | None, yes: bool) -> None:
    """Delete failed jobs for good (their events stay claimed: a portal retry is a duplicate)."""
    settings = _settings()
    connection = _connect(settings)
    queues = _queues(connection, settings.queue_prefix, queue)
    registries = [FailedJobRegistry(queue=q) for q in queues]
    count = sum(len(registry.get_job_ids()) for registry in registries)
    if not count:
        click.echo("No failed jobs.")
        return
    where = ", ".join(q.name for q in queues)
    if not yes:
        click.confirm(f"Delete {count} failed job(s) from {where} for good?", abort=True)
    for registry in registries:
        for job_id in registry.get_job_ids():
            with suppress(NoSuchJobError):  # only its registry entry is left
                Job.fetch(job_id, connection=connection, serializer=JSONSerializer).delete()
            registry.remove(job_id)
    click.echo(f"Purged {count} failed job(s).")
