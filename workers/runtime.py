"""The worker process's runtime: loaded handlers and shared clients, built once.

One Redis client, one portal client (one connection pool, one shared rate
limiter) and the handler registrations, for every job this process runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq.job import Job

from service.portal import PortalClient, PortalSettings, RateLimiter
from service.settings import (
    DEFAULT_QUEUE_PREFIX,
    DEFAULT_SENT_TTL,
    DEFAULT_STORE_TTL,
    ConfigError,
    Retention,
)
from workers import builtins
from workers.config import DEFAULT_CONFIG_FILE, load_config
from workers.context import Context, RedisStore
from workers.dispatch import Permanent
from workers.effects import Effects, PortalAPI
from workers.ledger import RedisLedger
from workers.loading import load_routers, registrations
from workers.router import Registration, RetryPolicy
from workers.worker import WabaJob

if TYPE_CHECKING:
    from workers.metrics import WorkerMetrics

__all__ = ["DEFAULT_CONFIG_FILE", "Runtime", "UnconfiguredPortal"]


class UnconfiguredPortal:
    """Stands in for the portal client when WABA_API_URL/WABA_API_KEY are not set."""

    def __getattr__(self, name: str) -> Any:
        raise Permanent(
            f"the portal API is not configured (set WABA_API_URL and WABA_API_KEY) "
            f"but a handler called {name}"
        )


@dataclass
class Runtime:
    """Everything jobs share in one worker process."""

    redis: Redis
    portal: PortalAPI
    registrations: list[Registration]
    prefix: str = DEFAULT_QUEUE_PREFIX
    config: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sent_ttl: int = DEFAULT_SENT_TTL
    #: Store expiry by router name, for built-ins that configure their own retention.
    store_ttls: Mapping[str, int] = field(default_factory=dict)
    store_ttl: int = DEFAULT_STORE_TTL
    #: Where handlers, events and portal calls are counted (None: nowhere).
    metrics: WorkerMetrics | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        connection: Redis | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> Runtime:
        """Build the runtime from the environment (see the README's Configuration).

        ``connection``: the worker's own Redis connection, shared; else ``REDIS_URL``.
        ``metrics``: where to count (the portal client reports its calls there too).
        """
        env = os.environ if env is None else env
        url = env.get("REDIS_URL", "").strip()
        if connection is None and not url:
            raise ConfigError("REDIS_URL is not set: the worker reads its jobs from Redis")
        client = connection if connection is not None else Redis.from_url(url)
        portal: PortalAPI
        if env.get("WABA_API_URL") or env.get("WABA_API_KEY"):
            settings = PortalSettings.from_env(env)
            limiter = RateLimiter.from_settings(client, settings)
            portal = PortalClient(settings, limiter=limiter, observer=metrics)
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
            metrics=metrics,
        )

    def section(self, router: str) -> Mapping[str, Any]:
        """Return the configuration section ``[handlers.<router>]`` (empty if absent)."""
        handlers = self.config.get("handlers", {})
        section = handlers.get(router, {}) if isinstance(handlers, Mapping) else {}
        return section if isinstance(section, Mapping) else {}

    def ledger(self, job: Job) -> RedisLedger:
        """Return the ledger of one event: fields of its job's hash."""
        fields = job.ledger_fields if isinstance(job, WabaJob) else None
        return RedisLedger(
            self.redis, job.key, fields=fields, prefix=self.prefix, sent_ttl=self.sent_ttl
        )

    def context(
        self,
        registration: Registration,
        *,
        ledger: RedisLedger,
        conversation: str | None,
        replies_expected: bool,
    ) -> Context:
        """Return the context one handler runs with."""
        return Context.build(
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
