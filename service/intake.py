"""Intake: claim an event's identity and write its job in one Redis step.

The claim (``<prefix>claim:<event key>``) and the RQ job exist together or not
at all: both are written by one Lua script (``intake.lua``) that does every check
before its first write. Nothing here ever deletes a claim to "undo" an intake: a
command that stalled can still execute later, so the portal's retry decides
(it finds either nothing, or claim + job and gets "duplicate").

The script is idempotent for one request: it is called with the job id chosen
for that request, and a retry of the same call (after a lost reply) finds the
claim holding that very id and answers "accepted" again.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from service.events import Classified
from service.jobs import JobSpec

__all__ = ["Intake", "IntakeResult", "IntakeUnavailable", "connect"]

_SCRIPT = files("service").joinpath("intake.lua").read_text(encoding="utf-8")
_RQ_QUEUES_KEY = "rq:queues"


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


class Intake:
    """Writes claim + job atomically. One instance per process, sharing one client."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        dedupe_ttl: int,
        wait_aof: bool = False,
        wait_aof_timeout_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._dedupe_ttl = dedupe_ttl
        self._wait_aof = wait_aof
        self._wait_aof_timeout_ms = wait_aof_timeout_ms
        self._script = redis.register_script(_SCRIPT)

    def claim_key(self, event_key: str) -> str:
        """Return the Redis key that records ``event_key`` as received."""
        return f"{self._prefix}claim:{event_key}"

    def tail_key(self, classified: Classified) -> str:
        """Return the key pointing at the conversation's latest job ('' if it has none)."""
        if classified.conversation is None:
            return ""
        return f"{self._prefix}tail:{classified.kind.value}:{classified.conversation}"

    async def submit(self, classified: Classified, job: JobSpec) -> IntakeResult:
        """Claim ``classified.event_key`` and write ``job``; raise :class:`IntakeUnavailable`."""
        keys = [
            self.claim_key(classified.event_key),
            "rq:job:" + job.job_id,
            "rq:queue:" + job.queue,
            _RQ_QUEUES_KEY,
            self.tail_key(classified),
            "rq:deferred:" + job.queue,
        ]
        args: list[Any] = [
            job.job_id,
            self._dedupe_ttl,
            self._dedupe_ttl,
            job.timestamp,
            job.fields["created_at"],
        ]
        for name, value in job.fields.items():
            args.append(name)
            args.append(value)
        try:
            if self._wait_aof:
                reply = await self._submit_durable(keys, args)
            else:
                reply = await self._script(keys=keys, args=args)
        except RedisError as exc:
            raise IntakeUnavailable(f"Redis did not confirm the intake: {exc}") from exc
        outcome, job_id, prev = (part.decode() for part in reply)
        return IntakeResult(outcome == "duplicate", job_id, prev or None)

    async def _submit_durable(self, keys: list[Any], args: list[Any]) -> Any:
        # WAITAOF on the same connection, right after the script: it returns once
        # the local AOF has been fsynced (or the timeout passed).
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAITAOF", 1, 0, self._wait_aof_timeout_ms)
            reply, (local, _replicas) = await pipe.execute()
        if local < 1:
            raise IntakeUnavailable("the AOF fsync was not confirmed within the timeout")
        return reply

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False
