"""The bounded thread pool plain ``def`` handlers (and other sync jobs) run in.

A job's timeout counts while its code runs, not while it waits for a free thread: the engine
puts each execution's deadline (an ``asyncio.Timeout``) in :data:`job_deadline`, and
:meth:`Threads.run` stops that clock while every thread is busy, then gives back the time
that was left.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = ["DEFAULT_SYNC_THREADS", "Threads", "job_deadline"]

T = TypeVar("T")

#: Threads for plain ``def`` handlers. Beyond ~100 threads beside an event loop, the
#: GIL hand-offs starve the loop (measured in the prototypes of issue 9).
DEFAULT_SYNC_THREADS = 32

#: The running execution's timeout (set by the engine for each job; None outside a job).
job_deadline: ContextVar[asyncio.Timeout | None] = ContextVar(
    "wabahooks_job_deadline", default=None
)


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
        #: One permit per thread, given back when the thread returns (not when its task is
        #: cancelled): waiting for one is waiting for a thread.
        self._threads = asyncio.Semaphore(size)
        self._orphans: set[Future[Any]] = set()
        #: Called (on the loop) when an orphaned thread returns: the engine's slot is free.
        self.on_free: Callable[[], None] = lambda: None

    @property
    def orphans(self) -> int:
        """Threads still running for executions that were cancelled."""
        return len(self._orphans)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the pool and return its result."""
        await self._take_thread()
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the job's bound log context, in the thread too
        future = self._executor.submit(functools.partial(context.run, fn, *args, **kwargs))
        future.add_done_callback(functools.partial(self._returned, loop))
        try:
            return await asyncio.wrap_future(future, loop=loop)
        except asyncio.CancelledError:
            if not future.done() and not future.cancel():
                self._orphans.add(future)
            raise

    async def _take_thread(self) -> None:
        """Wait for a free thread, with the job's timeout stopped meanwhile."""
        deadline = job_deadline.get()
        if not self._threads.locked() or deadline is None or deadline.when() is None:
            await self._threads.acquire()
            return
        loop = asyncio.get_running_loop()
        left = deadline.when() - loop.time()  # type: ignore[operator]  # checked: not None
        deadline.reschedule(None)
        try:
            await self._threads.acquire()
        finally:
            if not deadline.expired():
                deadline.reschedule(loop.time() + left)

    def _returned(self, loop: asyncio.AbstractEventLoop, future: Future[Any]) -> None:
        """A thread returned (in that thread): give its permit back on the loop."""
        try:
            loop.call_soon_threadsafe(self._thread_free, future)
        except RuntimeError:  # the loop is closed: nobody waits for a thread any more
            pass

    def _thread_free(self, future: Future[Any]) -> None:
        self._threads.release()
        if future in self._orphans:
            self._orphans.discard(future)
            self.on_free()

    def shutdown(self) -> bool:
        """Stop the pool without waiting; return whether a thread is still running."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        return bool(self._orphans)
