"""The worker process's runtime: loaded handlers and shared clients, built once.

One Redis client (``redis.asyncio``), one portal client (one connection pool, one
shared rate limiter), the handler registrations and a bounded thread pool for plain
``def`` handlers, for every job this process runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis

from service.portal import (
    Message,
    Page,
    PortalClient,
    PortalSettings,
    RateLimiter,
    SentMessage,
)
from service.settings import (
    DEFAULT_QUEUE_PREFIX,
    DEFAULT_SENT_TTL,
    DEFAULT_STORE_TTL,
    ConfigError,
    Retention,
)
from workers import builtins
from workers.config import DEFAULT_CONFIG_FILE, load_config
from workers.context import AsyncContext, RedisStore
from workers.dispatch import NO_METRICS, Metrics, Permanent
from workers.effects import AsyncPortalAPI, Effects
from workers.execution import ExecutionToken
from workers.ledger import RedisLedger
from workers.loading import load_routers, registrations
from workers.router import Registration, RetryPolicy

if TYPE_CHECKING:
    from workers.metrics import WorkerMetrics

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_SYNC_THREADS",
    "Runtime",
    "SyncPortalAdapter",
    "UnconfiguredPortal",
]

T = TypeVar("T")

#: Threads for plain ``def`` handlers. Beyond ~100 threads beside an event loop, the
#: GIL hand-offs starve the loop (measured in the prototypes of issue 9).
DEFAULT_SYNC_THREADS = 32


class UnconfiguredPortal:
    """Stands in for the portal client when WABA_API_URL/WABA_API_KEY are not set."""

    async def aclose(self) -> None:
        pass  # nothing to close

    def __getattr__(self, name: str) -> Any:
        raise Permanent(
            f"the portal API is not configured (set WABA_API_URL and WABA_API_KEY) "
            f"but a handler called {name}"
        )


class SyncPortalAdapter:
    """TEMPORARY (until ``AsyncPortalClient`` lands from the portal-async branch): the sync
    :class:`~service.portal.PortalClient` as an :class:`~workers.effects.AsyncPortalAPI`,
    each call in a thread (``asyncio.to_thread``). Its ``RateLimiter`` is not thread-safe:
    good for one job at a time (RQ's SimpleWorker), not for the concurrent engine."""

    def __init__(self, client: PortalClient) -> None:
        self.sync = client

    async def send_text(self, to: str, message: str) -> SentMessage:
        return await asyncio.to_thread(self.sync.send_text, to, message)

    async def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        await asyncio.to_thread(
            functools.partial(
                self.sync.mark_read, message_id, show_typing_indicator=show_typing_indicator
            )
        )

    async def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]:
        return await asyncio.to_thread(
            functools.partial(self.sync.messages, phone_number, cursor=cursor, limit=limit)
        )

    def __getattr__(self, name: str) -> Any:
        # The other read-only calls (conversations, templates …), blocking: TEMPORARY too.
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(functools.partial(method, *args, **kwargs))

        return call

    async def aclose(self) -> None:
        self.sync.close()


def server_kwargs(client: AsyncRedis | SyncRedis) -> dict[str, Any]:
    """TEMPORARY (for the twins of RQ's sync client and ours): the arguments that reach the
    server ``client`` talks to (host/port or socket, database, credentials; no TLS)."""
    kwargs = client.connection_pool.connection_kwargs
    names = ("host", "port", "db", "username", "password")
    args: dict[str, Any] = {k: kwargs[k] for k in names if k in kwargs}
    if "path" in kwargs:
        args["unix_socket_path"] = kwargs["path"]
    return args


def _default_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(DEFAULT_SYNC_THREADS, thread_name_prefix="wabahooks-sync")


@dataclass
class Runtime:
    """Everything jobs share in one worker process."""

    redis: AsyncRedis
    portal: AsyncPortalAPI
    registrations: list[Registration]
    prefix: str = DEFAULT_QUEUE_PREFIX
    config: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sent_ttl: int = DEFAULT_SENT_TTL
    #: Store expiry by router name, for built-ins that configure their own retention.
    store_ttls: Mapping[str, int] = field(default_factory=dict)
    store_ttl: int = DEFAULT_STORE_TTL
    #: Where handlers and events are counted.
    metrics: Metrics = NO_METRICS
    #: The bounded pool plain ``def`` handlers run in (see :data:`DEFAULT_SYNC_THREADS`).
    executor: ThreadPoolExecutor = field(default_factory=_default_executor)
    #: Closed with the runtime (the Redis client, the portal are always closed).
    _closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        redis: AsyncRedis | None = None,
        metrics: WorkerMetrics | None = None,
        sync_threads: int = DEFAULT_SYNC_THREADS,
    ) -> Runtime:
        """Build the runtime from the environment (see the README's Configuration).

        ``redis``: the worker's own client, shared; else one for ``REDIS_URL``.
        ``metrics``: where to count (the portal client reports its calls there too).
        ``sync_threads``: the thread pool's size for plain ``def`` handlers.
        """
        env = os.environ if env is None else env
        url = env.get("REDIS_URL", "").strip()
        if redis is None and not url:
            raise ConfigError("REDIS_URL is not set: the worker reads its jobs from Redis")
        client = redis if redis is not None else _async_from_url(url)
        closers: list[Callable[[], Any]] = []
        portal: AsyncPortalAPI
        if env.get("WABA_API_URL") or env.get("WABA_API_KEY"):
            settings = PortalSettings.from_env(env)
            # TEMPORARY: the sync client behind an adapter, until AsyncPortalClient lands.
            limiter_redis = _sync_from_url(url) if url else SyncRedis(**server_kwargs(client))
            closers.append(limiter_redis.close)
            limiter = RateLimiter(limiter_redis, rate=settings.rate, burst=settings.burst)
            portal = SyncPortalAdapter(PortalClient(settings, limiter=limiter, observer=metrics))
        else:
            portal = UnconfiguredPortal()
        config = load_config(env)  # the built-ins' sections are validated here
        routers = builtins.routers(config, load_routers(env.get("WABAHOOKS_HANDLERS", "")))
        retention = Retention.from_env(env)
        return cls(
            redis=client,
            portal=portal,
            registrations=registrations(routers),
            prefix=env.get("WABAHOOKS_QUEUE_PREFIX", DEFAULT_QUEUE_PREFIX),
            config=config.raw,
            store_ttls=builtins.store_ttls(config),
            sent_ttl=retention.sent_ttl,
            store_ttl=retention.store_ttl,
            metrics=metrics if metrics is not None else NO_METRICS,
            executor=ThreadPoolExecutor(sync_threads, thread_name_prefix="wabahooks-sync"),
            _closers=closers,
        )

    async def run_sync(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` in the runtime's thread pool, with this task's context
        (the job's bound log context); the engine may pass its own instead."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(context.run, fn, *args))

    async def aclose(self) -> None:
        """Close the Redis client and the portal client; stop the thread pool (running
        sync handlers finish in their threads, nothing waits for them)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        closer = getattr(self.portal, "aclose", None)
        if closer is not None:
            await closer()
        for close in self._closers:
            close()
        await self.redis.aclose()

    def section(self, router: str) -> Mapping[str, Any]:
        """Return the configuration section ``[handlers.<router>]`` (empty if absent)."""
        handlers = self.config.get("handlers", {})
        section = handlers.get(router, {}) if isinstance(handlers, Mapping) else {}
        return section if isinstance(section, Mapping) else {}

    def ledger(self, token: ExecutionToken, fields: Mapping[str, str] | None) -> RedisLedger:
        """Return the ledger of one event (fields of its job's hash), for one execution."""
        return RedisLedger(
            self.redis, token, fields=fields, prefix=self.prefix, sent_ttl=self.sent_ttl
        )

    def context(
        self,
        registration: Registration,
        *,
        ledger: RedisLedger,
        conversation: str | None,
        replies_expected: bool,
    ) -> AsyncContext:
        """Return the context one handler runs with (``.blocking()`` for a sync one)."""
        return AsyncContext.build(
            portal=Effects(self.portal, ledger, registration.name),
            store=RedisStore(
                self.redis,
                conversation,
                prefix=self.prefix,
                ttl=self.store_ttls.get(registration.router, self.store_ttl),
            ),
            config=self.section(registration.router),
            replies_expected=replies_expected,
            handler=registration.name,
        )


def _async_from_url(url: str) -> AsyncRedis:
    return AsyncRedis.from_url(url)


def _sync_from_url(url: str) -> SyncRedis:
    return SyncRedis.from_url(url)
