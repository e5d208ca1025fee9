"""What a handler gets besides the event: its collaborators, passed in explicitly.

An ``async def`` handler gets an :class:`AsyncContext` (``await ctx.portal.send_text(…)``,
``await ctx.store.get(…)``); a plain ``def`` handler, run in a thread, gets a
:class:`Context` whose calls block (the same implementation underneath, run on the
job's event loop: ``workers.bridge``).

``ctx.portal``   send_text / mark_read / once, exactly once per event (``workers.effects``);
                 ``ctx.portal.client`` for read-only calls
``ctx.log``      a structlog logger bound to the event, job and handler
``ctx.store``    a small key-value store scoped to the conversation (JSON values)
``ctx.config``   this handler module's section of the configuration file
``ctx.replies_expected``  whether a handler matching this event declared ``replies=True``
``ctx.expect(step, timeout=…, data=…)`` / ``ctx.cancel()``  wait for the contact's next
                 message / end the pending step (``workers.conversation``);
                 ``ctx.conversation.step`` / ``.data``: the step this event answers
``ctx.window``   the contact's 24-hour window: ``.open``, ``.until`` (``workers.policy``)
``ctx.handover()``  hand the contact's conversation to a human (``on=False``: back)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import redis.asyncio
import structlog

from service.keys import DEFAULT_PREFIX, Keys, rq_job
from service.settings import DEFAULT_STORE_TTL
from workers.bridge import BlockingProxy, Bridge
from workers.conversation import (
    NO_CONVERSATION,
    BlockingConversation,
    ConversationView,
    NoConversation,
)
from workers.effects import BlockingEffects, Effects
from workers.execution import ExecutionToken, Superseded
from workers.lifecycle import lua_script
from workers.policy.state import MessagingWindow

__all__ = [
    "AsyncContext",
    "AsyncStore",
    "BlockingStore",
    "Context",
    "MemoryStore",
    "RedisStore",
    "Store",
    "MessagingWindow",
]

_NO_POLICY = (
    "ctx.handover() needs the conversation policy: add a [policy] table to the "
    "configuration file (see the README's Conversation policy)"
)

#: ``ctx.store``'s fenced write.
_STORE_WRITE = lua_script("store_write")

# DEFAULT_STORE_TTL (WABAHOOKS_STORE_TTL) is one of the retention defaults in service.settings.


class AsyncStore(Protocol):
    """Key-value state of one conversation (the contact, or the message for statuses)."""

    async def get(self, key: str, default: Any = None) -> Any: ...
    async def set(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...


class Store(Protocol):
    """The same store, blocking: ``ctx.store`` of a plain ``def`` handler."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class RedisStore:
    """The conversation's store in a Redis hash; every write renews its expiry.

    ``token``: the execution writing (a job's handler): its writes pass the fence
    (``workers/lua/store_write.lua``) and raise :class:`~workers.execution.Superseded`
    once it no longer holds its job, so a superseded run cannot overwrite what the
    job's current run wrote. Without one (a replay's overlay, the CLI) writes are plain."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        conversation: str | None,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: int = DEFAULT_STORE_TTL,
        token: ExecutionToken | None = None,
    ) -> None:
        self._redis = client
        self._key = Keys(prefix).store(conversation or "-")
        self._ttl = ttl
        self._token = token
        self._write = client.register_script(_STORE_WRITE) if token is not None else None

    async def get(self, key: str, default: Any = None) -> Any:
        raw: Any = await self._redis.hget(self._key, key)
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        if self._token is not None:
            await self._fenced("set", key, json.dumps(value))
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, key, json.dumps(value))
            pipe.expire(self._key, self._ttl)
            await pipe.execute()

    async def delete(self, key: str) -> None:
        if self._token is not None:
            await self._fenced("del", key)
            return
        await self._redis.hdel(self._key, key)

    async def _fenced(self, *change: str) -> None:
        token = self._token
        assert token is not None and self._write is not None
        if token.cancelled:
            raise Superseded(token, "the engine cancelled it")
        written = await self._write(
            keys=[self._key, rq_job(token.job_id)],
            args=[token.execution_id, self._ttl, *change],
        )
        if not written:
            raise Superseded(token)


class MemoryStore:
    """The same store in a dict (values go through JSON, as in Redis)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        raw = self.data.get(key)
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        self.data[key] = json.dumps(value)

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


class BlockingStore:
    """An :class:`AsyncStore`, each call run on the job's loop and waited for."""

    def __init__(self, store: AsyncStore, bridge: Bridge) -> None:
        self._store = store
        self._bridge = bridge

    def get(self, key: str, default: Any = None) -> Any:
        return self._bridge.run(self._store.get(key, default))

    def set(self, key: str, value: Any) -> None:
        self._bridge.run(self._store.set(key, value))

    def delete(self, key: str) -> None:
        self._bridge.run(self._store.delete(key))


@dataclass
class AsyncContext:
    """An ``async def`` handler's collaborators for one event (await their calls)."""

    portal: Effects
    log: Any  # structlog BoundLogger
    store: AsyncStore
    config: Mapping[str, Any] = field(default_factory=dict)
    replies_expected: bool = False
    handler: str = ""
    #: The contact's conversation: the step this event answers, expect() and cancel().
    conversation: ConversationView | NoConversation = NO_CONVERSATION
    #: The event's conversation policy (``workers.policy.scope.EventScope``), if enabled.
    policy: Any = None

    async def expect(self, step: str, *, timeout: timedelta | float, data: Any = None) -> None:
        """Route the contact's next message to ``@router.step(step)`` (once per event)."""
        await self.conversation.expect(step, timeout=timeout, data=data)

    async def cancel(self) -> None:
        """End the contact's pending step, if any (its timeout will not run)."""
        await self.conversation.cancel()

    @classmethod
    def build(
        cls,
        *,
        portal: Effects,
        store: AsyncStore,
        config: Mapping[str, Any],
        replies_expected: bool,
        handler: str,
        policy: Any = None,
    ) -> AsyncContext:
        """Return a context whose logger is bound to ``handler`` (and the job's context)."""
        return cls(
            portal=portal,
            log=structlog.get_logger("wabahooks.handler").bind(handler=handler),
            store=store,
            config=config,
            replies_expected=replies_expected,
            handler=handler,
            policy=policy,
        )

    @property
    def window(self) -> MessagingWindow:
        """The contact's 24-hour window (unknown and closed without ``[policy]``)."""
        return (
            MessagingWindow(False, None, known=False)
            if self.policy is None
            else self.policy.window()
        )

    async def handover(self, on: bool = True) -> None:
        """Hand the contact's conversation to a human (automated replies pause), or back."""
        if self.policy is None:
            raise RuntimeError(_NO_POLICY)
        await self.policy.handover_from_handler(on, self.handler)

    def blocking(self, bridge: Bridge) -> Context:
        """Return the same collaborators for a plain ``def`` handler running in a thread."""
        return Context(
            portal=BlockingEffects(self.portal, bridge),
            log=self.log,
            store=BlockingStore(self.store, bridge),
            config=self.config,
            replies_expected=self.replies_expected,
            handler=self.handler,
            conversation=BlockingConversation(self.conversation, bridge),
            policy=None if self.policy is None else BlockingProxy(self.policy, bridge),
        )


@dataclass
class Context:
    """A plain ``def`` handler's collaborators for one event (their calls block)."""

    portal: BlockingEffects
    log: Any  # structlog BoundLogger
    store: Store
    config: Mapping[str, Any] = field(default_factory=dict)
    replies_expected: bool = False
    handler: str = ""
    conversation: BlockingConversation = field(
        default_factory=lambda: BlockingConversation(NO_CONVERSATION, None)
    )
    #: The event's conversation policy, its calls blocking (None without ``[policy]``).
    policy: Any = None

    def expect(self, step: str, *, timeout: timedelta | float, data: Any = None) -> None:
        """Route the contact's next message to ``@router.step(step)`` (once per event)."""
        self.conversation.expect(step, timeout=timeout, data=data)

    def cancel(self) -> None:
        """End the contact's pending step, if any (its timeout will not run)."""
        self.conversation.cancel()

    @property
    def window(self) -> MessagingWindow:
        """The contact's 24-hour window (unknown and closed without ``[policy]``)."""
        return (
            MessagingWindow(False, None, known=False)
            if self.policy is None
            else self.policy.window()
        )

    def handover(self, on: bool = True) -> None:
        """Hand the contact's conversation to a human (automated replies pause), or back."""
        if self.policy is None:
            raise RuntimeError(_NO_POLICY)
        self.policy.handover_from_handler(on, self.handler)
