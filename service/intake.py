"""Intake: claim an event's identity and write its job in one Redis step.

The claim (``<prefix>claim:<event key>``) and the RQ job exist together or not
at all: both are written by one Lua script (``intake.lua``) that does every check
before its first write. Nothing here ever deletes a claim to "undo" an intake: a
command that stalled can still execute later, so the portal's retry decides
(it finds either nothing, or claim + job and gets "duplicate").

The script is idempotent for one request: it runs with the job id chosen for
that request, and a retry of the same call (after a lost reply) finds the claim
holding that very id and answers "accepted" again.

**Group commit.** Concurrent requests are written together: each request adds its
script call to the pending batch and waits; one flusher sends the whole batch as
one pipeline (one round trip), then resolves every request with its own reply.
Only one batch is in flight at a time, so Redis runs intakes in arrival order
(which the per-conversation chains rely on). Each 200 is still behind its own
confirmed write, and, with ``wait_aof``, behind one ``WAITAOF`` per batch.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, ReadOnlyError, RedisError

from service.identity import Classified
from service.jobs import JobSpec
from service.keys import RQ_QUEUES, Keys, rq_deferred, rq_job, rq_queue
from service.metrics import ReceiverMetrics
from service.redisfailover import after_redis_error

__all__ = ["CHAIN_LUA", "Intake", "IntakeResult", "IntakeUnavailable", "connect"]

#: A conversation's chain step (``chain.lua``): prepended to the intake script and to the
#: workers' scripts that chain a job later (a conversation's flush or step timeout).
CHAIN_LUA = files("service").joinpath("chain.lua").read_text(encoding="utf-8")
_SCRIPT = CHAIN_LUA + files("service").joinpath("intake.lua").read_text(encoding="utf-8")
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode("utf-8")).hexdigest()


class IntakeUnavailable(Exception):
    """Redis did not confirm the write; the event may or may not be stored."""


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What the intake did: stored a new job, or found the identity already claimed."""

    duplicate: bool
    job_id: str
    #: The unfinished job of the same conversation this one waits for, if any.
    depends_on: str | None


def connect(url: str, deadline: float) -> aioredis.Redis:
    """Return an async Redis client whose timeouts and retries fit inside ``deadline``.

    redis-py's defaults (5 s socket timeout, several retries) would outlast the
    portal's 5 s budget; here one attempt is bounded by the deadline and the
    retries are few and short. The caller still bounds the whole call.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=deadline,
        socket_connect_timeout=min(deadline, 1.0),
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        health_check_interval=30,
    )


def _expire(future: asyncio.Future[Any], deadline: float) -> None:
    if not future.done():
        future.set_exception(IntakeUnavailable(f"Redis did not confirm within {deadline} s"))


_Pending = tuple[list[Any], "asyncio.Future[Any]"]


class Intake:
    """Writes claim + job atomically, batching concurrent requests. One per process."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        dedupe_ttl: int,
        deadline: float,
        wait_aof: bool = False,
        wait_aof_timeout_ms: int = 1000,
        metrics: ReceiverMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        self._dedupe_ttl = dedupe_ttl
        self._deadline = deadline
        self._wait_aof = wait_aof
        self._wait_aof_timeout_ms = wait_aof_timeout_ms
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._observe_intake = metrics.observe_intake if metrics else None
        self._observe_batch = metrics.observe_batch if metrics else None

    def claim_key(self, event_key: str) -> str:
        """Return the Redis key that records ``event_key`` as received."""
        return self._keys.claim(event_key)

    def tail_key(self, classified: Classified) -> str:
        """Return the key pointing at the conversation's latest job ('' if it has none)."""
        if classified.conversation is None:
            return ""
        return self._keys.tail(classified.kind.value, classified.conversation)

    async def submit(self, classified: Classified, job: JobSpec) -> IntakeResult:
        """Claim ``classified.event_key`` and write ``job``.

        Raise :class:`IntakeUnavailable` if Redis does not confirm within the deadline.
        """
        command = [
            "EVALSHA",
            _SCRIPT_SHA,
            7,
            self.claim_key(classified.event_key),
            rq_job(job.job_id),
            rq_queue(job.queue),
            RQ_QUEUES,
            self.tail_key(classified),
            rq_deferred(job.queue),
            self._keys.redis_epoch(),
            job.job_id,
            self._dedupe_ttl,
            self._dedupe_ttl,
            job.timestamp,
            job.created_at,
            job.data,
            job.description,
            job.queue,
            job.timeout,
            job.result_ttl,
            job.failure_ttl,
        ]
        loop = asyncio.get_running_loop()
        submitted = loop.time()
        future: asyncio.Future[Any] = loop.create_future()
        # One timer handle per request: cheaper than asyncio.timeout() on this hot path.
        timer = loop.call_later(self._deadline, _expire, future, self._deadline)
        self._pending.append((command, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        try:
            reply = await future
        finally:
            timer.cancel()
        if self._observe_intake is not None:
            self._observe_intake(loop.time() - submitted)
        outcome, job_id, prev = (part.decode() for part in reply)
        return IntakeResult(outcome == "duplicate", job_id, prev or None)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            if self._observe_batch is not None:
                self._observe_batch(len(batch))
            try:
                replies = await self._execute([command for command, _ in batch])
            except RedisError as exc:
                replies = [exc] * len(batch)
            failover = next((r for r in replies if isinstance(r, ReadOnlyError)), None)
            if failover is not None:  # a demoted primary: reconnect to whatever is primary now
                await after_redis_error(self._redis, failover)
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # the request gave up (deadline) and answered 503
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(
                        IntakeUnavailable(f"Redis did not confirm the intake: {reply}")
                    )
                else:
                    future.set_result(reply)

    async def _execute(self, commands: list[list[Any]]) -> list[Any]:
        replies = await self._pipeline(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis restarted or its script cache was flushed. A NOSCRIPT command
            # did not run, so running it again after loading the script is safe.
            await self._redis.script_load(_SCRIPT)
            retry = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            again = await self._pipeline([commands[i] for i in retry])
            for i, reply in zip(retry, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, commands: list[list[Any]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            if self._wait_aof:
                # Same connection, after the scripts: returns once the local AOF
                # has been fsynced (or the timeout passed).
                pipe.execute_command("WAITAOF", 1, 0, self._wait_aof_timeout_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if self._wait_aof:
            waited = replies.pop()
            if isinstance(waited, Exception) or waited[0] < 1:
                unconfirmed = IntakeUnavailable("the AOF fsync was not confirmed in time")
                replies = [unconfirmed] * len(replies)
        return replies

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False
