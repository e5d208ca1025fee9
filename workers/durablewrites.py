"""Durable writes: intents confirmed on disk, one ``WAITAOF`` per batch (group commit).

With ``WABAHOOKS_WAITAOF=1`` a send's intent must be on the primary's disk before the
send goes out (README "Durability"). ``WAITAOF`` waits only for the writes of the
connection it is sent on, so the intent's script and the ``WAITAOF`` must share one
connection. Waiting on each intent alone costs one fsync wait per send; here the intents
of every job in flight are written together, as the receiver's intake does it: each call
adds its script to the pending batch and waits; one flusher sends the whole batch as one
pipeline with a single ``WAITAOF`` behind it, then answers each call with its own reply.
While a batch waits for its fsync, the next one gathers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.commands.core import AsyncScript

from service.settings import DEFAULT_WAITAOF_TIMEOUT_MS

__all__ = ["DurableWrites", "NotDurable"]


class NotDurable(redis.exceptions.TimeoutError):
    """``WABAHOOKS_WAITAOF``: Redis did not confirm an intent on disk in time. A Redis
    timeout (transient): the send does not go out, the job is retried."""


_Pending = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class DurableWrites:
    """Run scripts and return their replies only once ``WAITAOF 1 0`` confirmed them.

    One per worker process (the runtime's), shared by every job in flight. A script
    that wrote nothing (it answers 0: the fence refused it) needs no confirmation.
    """

    def __init__(
        self, client: redis.asyncio.Redis, *, timeout_ms: int = DEFAULT_WAITAOF_TIMEOUT_MS
    ) -> None:
        self._redis = client
        self._timeout_ms = timeout_ms
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        #: Batches in flight (a reference keeps each task alive until it is done).
        self._flushing: set[asyncio.Task[None]] = set()
        #: Batch sizes, newest last (for benchmarks and tests: how many shared one fsync).
        self.batches: list[int] = []

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run ``script`` in the next batch; raise :class:`NotDurable` if it wrote and its
        batch's fsync was not confirmed within the timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if not self._flush_scheduled:
            # After the other callers of this turn have added theirs.
            self._flush_scheduled = True
            loop.call_soon(self._send_batch)
        # shield: a cancelled caller must not cancel the batch the others wait on.
        return await asyncio.shield(future)

    def _send_batch(self) -> None:
        batch, self._pending = self._pending, []
        self._flush_scheduled = False
        self.batches.append(len(batch))
        task = asyncio.create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            replies = await self._execute(batch)
        except (redis.exceptions.RedisError, OSError) as exc:
            replies = [exc] * len(batch)
        for (_script, _keys, _args, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, batch: list[_Pending]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _future in batch:
                # The pipeline loads the scripts it was given before it executes.
                await script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAITAOF", 1, 0, self._timeout_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        waited = replies.pop()
        if isinstance(waited, BaseException) or int(waited[0]) < 1:
            unconfirmed = NotDurable(
                f"Redis did not confirm the intent's fsync within {self._timeout_ms} ms: "
                "the send waits for a retry"
            )
            # A refused write (0) wrote nothing: its answer stands.
            replies = [r if r == 0 else unconfirmed for r in replies]
        return replies
