"""``wabahooks worker``: one queue's jobs, many in flight, on the engine (``workers.engine``).

Reads the engine's settings (options, else environment, else the defaults in
``workers.engine`` and ``workers.threads``), checks Redis (reachable, no evicting policy),
loads the handlers first (``workers.handlerset``: from the current directory and
``--app-dir``; a module that cannot be imported, a typo in a section or no handlers at all
stop start-up with exit status 2), builds the runtime, and runs the engine until a signal,
or the end of a burst.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import uuid
from dataclasses import dataclass

import click
import redis
import structlog

from service.portal.config import DEFAULT_READ_TIMEOUT
from service.settings import ConfigError, Settings, env_float
from workers.cli import DEFAULT_QUEUE, QUEUE_CHOICE, settings_or_exit
from workers.engine import DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_LEASE
from workers.handlerset import ALLOW_NONE_ENV, Handlers, load_handlers
from workers.lease import check_lease
from workers.loading import HandlerImportFailed
from workers.threads import DEFAULT_SYNC_THREADS
from workers.yielding import DEFAULT_NICE, lower_priority

__all__ = ["worker"]


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
    type=QUEUE_CHOICE,
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
@click.option(
    "--app-dir",
    default=None,
    metavar="DIR",
    help="Import handler modules from DIR too (WABAHOOKS_APP_DIR) [default: the current "
    "directory only].",
)
@click.option(
    "--allow-no-handlers",
    is_flag=True,
    help="Start even with no handlers configured (WABAHOOKS_ALLOW_NO_HANDLERS=1): every "
    "event is acknowledged unhandled.",
)
def worker(
    queue_names: tuple[str, ...],
    concurrency: int | None,
    grace: float | None,
    burst: bool,
    app_dir: str | None,
    allow_no_handlers: bool,
) -> None:
    """Work one queue with many jobs in flight (needs REDIS_URL).

    Async handlers run on the worker's event loop, plain ones in a thread pool
    (WABAHOOKS_SYNC_THREADS). SIGTERM or Ctrl-C stops taking jobs and lets those
    in flight finish for up to --grace seconds, then hands the rest back to the
    queue; a second signal hands them back at once. Nothing is lost either way.
    """
    from service.cli.common import fail
    from service.logs import configure_logging
    from service.tracingsetup import configure_tracing, shutdown_tracing

    if len(queue_names) > 1:
        raise click.UsageError(
            f"one queue per worker process, got {', '.join(queue_names)}: "
            "start one `wabahooks worker --queue NAME` for each"
        )
    name = queue_names[0] if queue_names else DEFAULT_QUEUE
    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    handlers = handlers_or_exit(app_dir, allow_no_handlers)
    try:
        configure_tracing("wabahooks-worker")  # off unless OTEL_* ask (README "Traces")
    except ConfigError as exc:
        fail(str(exc))
    options = _EngineOptions(
        queue=settings.keys.queue(name),
        concurrency=concurrency or _env_int("WABAHOOKS_CONCURRENCY", DEFAULT_CONCURRENCY, 1),
        grace=grace if grace is not None else _env_int("WABAHOOKS_GRACE", int(DEFAULT_GRACE), 0),
        lease=_env_int("WABAHOOKS_LEASE", DEFAULT_LEASE, 5),
        sync_threads=_env_int("WABAHOOKS_SYNC_THREADS", DEFAULT_SYNC_THREADS, 1),
        burst=burst,
    )
    # Yield the CPU to a receiver beside us (workers.yielding): WABAHOOKS_NICE, 0 to keep.
    lower_priority(_env_int("WABAHOOKS_NICE", DEFAULT_NICE, 0))
    if os.environ.get("WABA_API_URL") or os.environ.get("WABA_API_KEY"):
        try:  # a send must fit in what is left of its lease (workers.lease)
            timeout = env_float(os.environ, "WABA_API_TIMEOUT", DEFAULT_READ_TIMEOUT)
            check_lease(options.lease, timeout)
        except (ValueError, ConfigError) as exc:
            fail(str(exc))
    try:
        import uvloop

        stopped, threads_left = uvloop.run(_work(settings, options, handlers))
    except _StartupError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(exc.code)
    code = 0 if burst or stopped else 1  # the engine ends only when told
    if threads_left:
        # A sync handler's thread cannot be stopped, and Python waits for every pool thread
        # at exit: its job was handed back and its effects are refused, so leave now.
        shutdown_tracing()  # (os._exit skips the exit handlers that export the last spans)
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


def handlers_or_exit(app_dir: str | None, allow_no_handlers: bool) -> Handlers:
    """Load the handlers as ``wabahooks check`` does, or exit 2 saying why: one line, after
    the module's own traceback when the module raised while importing."""
    env = dict(os.environ)
    if allow_no_handlers:
        env[ALLOW_NONE_ENV] = "1"
    try:
        return load_handlers(env, app_dir=app_dir, require=True)
    except HandlerImportFailed as exc:
        click.echo(exc.details, err=True, nl=False)
        click.echo(f"wabahooks: {exc}", err=True)
    except ConfigError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
    sys.exit(2)


async def _work(
    settings: Settings, options: _EngineOptions, handlers: Handlers
) -> tuple[bool, bool]:
    """Run the engine until it stops; return whether a signal (or burst) stopped it, and
    whether sync handler threads are still running."""
    import redis.asyncio as aioredis

    from service.redisguard import MemoryMarks, parse_memory, policy_problem
    from workers.engine import Engine
    from workers.metrics import WorkerMetrics, multiprocess_dir, process_exited
    from workers.pressure import MemoryPressure
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
    marks = MemoryMarks.of(settings)
    memory = parse_memory(info, marks)
    try:
        meter = WorkerMetrics() if multiprocess_dir() else None
        # The handlers are loaded (handlers_or_exit); the portal client is built here.
        runtime = Runtime.from_settings(
            settings,
            redis=client,
            metrics=meter,
            sync_threads=options.sync_threads,
            handlers=handlers,
        )
    except ConfigError as exc:
        await client.aclose()
        raise _StartupError(str(exc), 2) from exc
    state = RQState(
        client,
        options.queue,
        worker_name=uuid.uuid4().hex,
        lease=options.lease,
        max_attempts=runtime.retry.max_attempts,
        prefix=settings.queue_prefix,
    )
    runner = JobRunner(runtime.threads, runtime)
    engine = Engine(
        state,
        runner,
        concurrency=options.concurrency,
        threads=runtime.threads,
        burst=options.burst,
        grace=options.grace,
        on_abandoned=functools.partial(runner.abandoned, state),
        adaptive=True,  # fewer jobs while the loop lags (workers.yielding)
        memory=MemoryPressure(client, marks, queue=options.queue),  # a full Redis drains
    )
    structlog.get_logger("wabahooks.worker").info(
        "worker.started",
        queue=options.queue,
        concurrency=options.concurrency,
        sync_threads=options.sync_threads,
        handlers=[r.label for r in runtime.registrations],
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
