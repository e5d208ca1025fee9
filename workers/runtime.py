"""The worker process's runtime: loaded handlers and shared clients, built once.

One Redis client (``redis.asyncio``), one portal client (one connection pool, one
shared rate limiter), the handler registrations and a bounded thread pool for plain
``def`` handlers, for every job this process runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis as AsyncRedis

from service.portal import AsyncPortalClient, AsyncRateLimiter, PortalSettings
from service.settings import (
    DEFAULT_QUEUE_PREFIX,
    DEFAULT_SENT_TTL,
    DEFAULT_STORE_TTL,
    Settings,
)
from workers import builtins
from workers.archive import Archive
from workers.config import DEFAULT_CONFIG_FILE
from workers.context import AsyncContext, RedisStore
from workers.convredis import ConversationScripts, RedisConversations
from workers.dispatch import NO_METRICS, Metrics, Permanent
from workers.durablewrites import DurableWrites
from workers.effects import AsyncPortalAPI, Effects
from workers.execution import ExecutionToken
from workers.handlerset import Handlers, load_handlers
from workers.ledger import RedisLedger
from workers.loading import registrations
from workers.policy import nudge
from workers.policy.config import policy_config
from workers.policy.router import scope_of
from workers.policy.scope import EventScope, Policy
from workers.router import Registration, RetryPolicy
from workers.threads import DEFAULT_SYNC_THREADS, Threads

if TYPE_CHECKING:
    from workers.metrics import WorkerMetrics

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_SYNC_THREADS",
    "Runtime",
    "UnconfiguredPortal",
]

T = TypeVar("T")


class UnconfiguredPortal:
    """Stands in for the portal client when WABA_API_URL/WABA_API_KEY are not set."""

    async def aclose(self) -> None:
        pass  # nothing to close

    def __getattr__(self, name: str) -> Any:
        raise Permanent(
            f"the portal API is not configured (set WABA_API_URL and WABA_API_KEY) "
            f"but a handler called {name}"
        )


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
    threads: Threads = field(default_factory=Threads)
    #: Where each event's journey is recorded (``WABAHOOKS_ARCHIVE``); None: not recorded.
    archive: Archive | None = None
    #: ``WABAHOOKS_WAITAOF``: intents are confirmed on disk before their send goes out.
    wait_aof: bool = False
    #: Closed with the runtime (the Redis client, the portal are always closed).
    _closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _conversations: ConversationScripts | None = field(default=None, repr=False)
    #: ``wait_aof``: the intents of every job in flight share one WAITAOF per batch.
    _durable: DurableWrites | None = field(default=None, init=False, repr=False)
    #: The conversation policy (``workers.policy``), built from ``config``'s ``[policy]``.
    policy: Policy | None = field(default=None, init=False)
    _nudge: list[Registration] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        settings = policy_config(self.config)  # ConfigError if [policy] is wrong
        if settings is not None:
            self.policy = Policy(
                settings, self.redis, self.portal, prefix=self.prefix, sent_ttl=self.sent_ttl
            )
            self._nudge = registrations([nudge.build(scope_of)])

    def registrations_for(self, kind: str) -> list[Registration]:
        """The handlers a job of ``kind`` runs: the policy's own for its nudge jobs (none
        once the policy is off: a nudge left scheduled then is dropped, never yours)."""
        return self._nudge if kind == nudge.NUDGE_KIND else self.registrations

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        redis: AsyncRedis | None = None,
        metrics: WorkerMetrics | None = None,
        sync_threads: int = DEFAULT_SYNC_THREADS,
        handlers: Handlers | None = None,
    ) -> Runtime:
        """Build the runtime from the environment: :meth:`from_settings` with the settings
        read from ``env``."""
        env = os.environ if env is None else env
        return cls.from_settings(
            Settings.from_env(env),
            env,
            redis=redis,
            metrics=metrics,
            sync_threads=sync_threads,
            handlers=handlers,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        *,
        redis: AsyncRedis | None = None,
        metrics: WorkerMetrics | None = None,
        sync_threads: int = DEFAULT_SYNC_THREADS,
        handlers: Handlers | None = None,
    ) -> Runtime:
        """Build the runtime from ``settings`` (Redis, key prefix, retention) and what only
        workers read from ``env``: the portal's ``WABA_API_*``, the handler modules and the
        configuration file (see the README's Configuration).

        ``redis``: the worker's own client, shared; else one for ``REDIS_URL``.
        ``metrics``: where to count (the portal client reports its calls there too).
        ``sync_threads``: the thread pool's size for plain ``def`` handlers.
        ``handlers``: already loaded (``workers.handlerset``); else loaded from ``env``.
        """
        env = os.environ if env is None else env
        client = redis if redis is not None else _async_from_url(settings.require_redis_url())
        closers: list[Callable[[], Any]] = []
        portal: AsyncPortalAPI
        if env.get("WABA_API_URL") or env.get("WABA_API_KEY"):
            portal_settings = PortalSettings.from_env(env)
            limiter = AsyncRateLimiter.from_settings(
                client, portal_settings, prefix=settings.keys.portal()
            )
            portal = AsyncPortalClient(portal_settings, limiter=limiter, observer=metrics)
        else:
            portal = UnconfiguredPortal()
        if handlers is None:  # the built-ins' sections are validated here
            handlers = load_handlers(env)
        config, routers = handlers.config, handlers.routers
        retention = settings.retention
        archive = Archive.from_env(env, settings.queue_prefix)
        return cls(
            redis=client,
            portal=portal,
            registrations=registrations(routers),
            prefix=settings.queue_prefix,
            config=config.raw,
            store_ttls=builtins.store_ttls(config),
            sent_ttl=retention.sent_ttl,
            store_ttl=retention.store_ttl,
            metrics=metrics if metrics is not None else NO_METRICS,
            threads=Threads(sync_threads),
            archive=archive,
            wait_aof=settings.wait_aof,
            _closers=closers,
        )

    async def run_sync(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` in the runtime's thread pool, with this task's context (the
        job's bound log context); a thread whose job was cancelled keeps its slot."""
        return await self.threads.run(fn, *args)

    async def aclose(self) -> None:
        """Close the Redis client and the portal client; stop the thread pool (running
        sync handlers finish in their threads, nothing waits for them)."""
        self.threads.shutdown()
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
        if self.wait_aof and self._durable is None:
            self._durable = DurableWrites(self.redis)
        return RedisLedger(
            self.redis,
            token,
            fields=fields,
            prefix=self.prefix,
            sent_ttl=self.sent_ttl,
            wait_aof=self._durable or False,
        )

    def conversations(self, token: ExecutionToken, queue: str) -> RedisConversations:
        """Return the contacts' conversation state, for one execution of a job of ``queue``
        (steps and bursts are kept as long as ``ctx.store``: ``WABAHOOKS_STORE_TTL``)."""
        if self._conversations is None:
            self._conversations = ConversationScripts(
                self.redis, prefix=self.prefix, ttl=self.store_ttl
            )
        return self._conversations.for_job(token, queue)

    def context(
        self,
        registration: Registration,
        *,
        ledger: RedisLedger,
        conversation: str | None,
        replies_expected: bool,
        policy: EventScope | None = None,
        unproven_since: float | None = None,
    ) -> AsyncContext:
        """Return the context one handler runs with (``.blocking()`` for a sync one).
        ``unproven_since``: see ``workers.effects.Effects``."""
        return AsyncContext.build(
            portal=Effects(
                self.portal,
                ledger,
                registration.name,
                policy=policy,
                unproven_since=unproven_since,
            ),
            store=RedisStore(
                self.redis,
                conversation,
                prefix=self.prefix,
                ttl=self.store_ttls.get(registration.router, self.store_ttl),
                token=ledger.token,
            ),
            config=self.section(registration.router),
            replies_expected=replies_expected,
            handler=registration.label,
            policy=policy,
        )


def _async_from_url(url: str) -> AsyncRedis:
    return AsyncRedis.from_url(url)
