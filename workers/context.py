"""What a handler gets besides the event: its collaborators, passed in explicitly.

``ctx.portal``   send_text / mark_read, exactly once per event (``workers.effects``);
                 ``ctx.portal.client`` for read-only calls
``ctx.log``      a structlog logger bound to the event, job and handler
``ctx.store``    a small key-value store scoped to the conversation (JSON values)
``ctx.config``   this handler module's section of the configuration file
``ctx.replies_expected``  whether a handler matching this event declared ``replies=True``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import structlog

from service.settings import DEFAULT_STORE_TTL
from workers.effects import Effects

__all__ = ["Context", "MemoryStore", "RedisStore", "Store"]

# DEFAULT_STORE_TTL (WABAHOOKS_STORE_TTL) is one of the retention defaults in service.settings.


class Store(Protocol):
    """Key-value state of one conversation (the contact, or the message for statuses)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class RedisStore:
    """The conversation's store in a Redis hash; every write renews its expiry."""

    def __init__(
        self,
        client: redis.Redis,
        conversation: str | None,
        *,
        prefix: str = "wabahooks:",
        ttl: int = DEFAULT_STORE_TTL,
    ) -> None:
        self._redis = client
        self._key = f"{prefix}store:{conversation or '-'}"
        self._ttl = ttl

    def get(self, key: str, default: Any = None) -> Any:
        raw: Any = self._redis.hget(self._key, key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, key, json.dumps(value))
            pipe.expire(self._key, self._ttl)
            pipe.execute()

    def delete(self, key: str) -> None:
        self._redis.hdel(self._key, key)


class MemoryStore:
    """The same store in a dict (values go through JSON, as in Redis)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.data.get(key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass
class Context:
    """A handler's collaborators for one event."""

    portal: Effects
    log: Any  # structlog BoundLogger
    store: Store
    config: Mapping[str, Any] = field(default_factory=dict)
    replies_expected: bool = False
    handler: str = ""

    @classmethod
    def build(
        cls,
        *,
        portal: Effects,
        store: Store,
        config: Mapping[str, Any],
        replies_expected: bool,
        handler: str,
    ) -> Context:
        """Return a context whose logger is bound to ``handler`` (and the job's context)."""
        return cls(
            portal=portal,
            log=structlog.get_logger("wabahooks.handler").bind(handler=handler),
            store=store,
            config=config,
            replies_expected=replies_expected,
            handler=handler,
        )
