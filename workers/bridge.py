"""The blocking side of a job: a sync handler's calls, run on the job's event loop.

Sync handlers run in a thread pool; what they call (the ledger, the store, the
portal) is the async implementation, submitted to the loop the job runs on and
waited for in the handler's thread. So there is one implementation of every rule,
and the sync API is a facade over it, never a second client.

A bridge belongs to one handler run of one execution: when the engine gives up on that
execution (timeout, hand-back, lease lost), :meth:`Bridge.cancel` cancels the calls it has
running on the loop (a send waiting for its lease or its answer stops there) and refuses
the thread's later ones, so nothing the thread asked for outlives its execution.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BlockingCallOnLoop", "Bridge", "BridgeClosed"]

T = TypeVar("T")


class BlockingCallOnLoop(RuntimeError):
    """A blocking call was made on the event loop itself (it would wait for itself)."""


class BridgeClosed(concurrent.futures.CancelledError):
    """The execution this call belonged to was given up: the call does not run (or was
    cancelled on the loop). Raised in the handler's thread, which should just return."""


class Bridge:
    """Runs coroutines on ``loop`` for code in other threads, waiting for each result."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._running: set[concurrent.futures.Future[Any]] = set()
        self._closed = False

    def cancel(self) -> None:
        """Cancel the calls running on the loop and refuse later ones (any thread)."""
        with self._lock:
            self._closed = True
            running, self._running = self._running, set()
        for future in running:
            future.cancel()

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
        with self._lock:
            if self._closed:
                coro.close()
                raise BridgeClosed("the execution this handler ran for was given up")
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._running.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError as exc:
            raise BridgeClosed("the execution this handler ran for was given up") from exc
        finally:
            with self._lock:
                self._running.discard(future)


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
