"""The blocking side of a job: a sync handler's calls, run on the job's event loop.

Sync handlers run in a thread pool; what they call (the ledger, the store, the
portal) is the async implementation, submitted to the loop the job runs on and
waited for in the handler's thread. So there is one implementation of every rule,
and the sync API is a facade over it, never a second client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BlockingCallOnLoop", "Bridge"]

T = TypeVar("T")


class BlockingCallOnLoop(RuntimeError):
    """A blocking call was made on the event loop itself (it would wait for itself)."""


class Bridge:
    """Runs coroutines on ``loop`` for code in other threads, waiting for each result."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the job's loop; block this thread until it returns (or raises)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise BlockingCallOnLoop(
                "a blocking ctx call ran on the event loop: in an `async def` handler use "
                "`await` (the AsyncContext), or make the handler a plain `def`"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class BlockingProxy:
    """An object's coroutine methods, made blocking (``ctx.portal.client`` of a sync handler)."""

    def __init__(self, target: Any, bridge: Bridge) -> None:
        self._target = target
        self._bridge = bridge

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return self._bridge.run(result)
            return result

        return call
