"""The bounded thread pool plain ``def`` handlers (and other sync jobs) run in."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["DEFAULT_SYNC_THREADS", "Threads"]

T = TypeVar("T")

#: Threads for plain ``def`` handlers. Beyond ~100 threads beside an event loop, the
#: GIL hand-offs starve the loop (measured in the prototypes of issue 9).
DEFAULT_SYNC_THREADS = 32


class Threads:
    """A bounded thread pool for sync code, whose threads keep their slot until they return.

    A task awaiting :meth:`run` may be cancelled (timeout, hand-back) while its thread goes
    on: the thread cannot be interrupted, so it counts in :attr:`busy` until it returns,
    and the engine takes no job for that slot meanwhile.
    """

    def __init__(self, size: int = DEFAULT_SYNC_THREADS) -> None:
        if size < 1:
            raise ValueError("a thread pool needs at least 1 thread")
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="wabahooks-sync")
        self._orphans: set[Future[Any]] = set()
        #: Called (on the loop) when an orphaned thread returns: the engine's slot is free.
        self.on_free: Callable[[], None] = lambda: None

    @property
    def orphans(self) -> int:
        """Threads still running for executions that were cancelled."""
        return len(self._orphans)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the pool and return its result."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the job's bound log context, in the thread too
        future = self._executor.submit(functools.partial(context.run, fn, *args, **kwargs))
        try:
            return await asyncio.wrap_future(future, loop=loop)
        except asyncio.CancelledError:
            if not future.done() and not future.cancel():
                self._orphans.add(future)
                future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._orphan_done, f))
            raise

    def _orphan_done(self, future: Future[Any]) -> None:
        self._orphans.discard(future)
        self.on_free()

    def shutdown(self) -> bool:
        """Stop the pool without waiting; return whether a thread is still running."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        return bool(self._orphans)
