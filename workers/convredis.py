"""Conversation state in Redis: pending steps, bursts, and the jobs that end them.

Keys (``WABAHOOKS_QUEUE_PREFIX``, default ``wabahooks:``; named in ``service.keys``):

- ``conv:<phone>`` (hash): the pending ``step``, its ``data`` (JSON), ``gen`` (the
  generation), ``deadline`` (epoch s), ``timer`` (its timeout job's id), ``handler``
  (which asked). Kept ``WABAHOOKS_STORE_TTL`` after its last change, and at least a day
  past a pending step's deadline.
- ``burst:<phone>:<handler>`` (hash): a burst being gathered for a coalescing handler:
  ``n``, ``m:<i>`` (each message: event key and envelope), ``id:<message id>``,
  ``job`` (its flush job's id), ``first``, ``due``. Same expiry.

Every write is a Lua script (``workers/lua/conv_*.lua``) that first checks that the
calling execution still holds its job (``wh:holder``) and records what it did in the
job's ledger (``wh:s:…``), so a retried job repeats nothing and a superseded one writes
nothing. Flush and step-timeout jobs are written by those scripts as scheduled RQ jobs
(format version 2, :func:`job_data`) that join the contact's chain only when they fire
(``workers/lua/promote.lua``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from service import tracing
from service.intake import CHAIN_LUA
from service.jobs import JOB_FUNCTION
from service.keys import Keys, rq_job, rq_scheduled
from service.settings import DEFAULT_QUEUE_PREFIX, DEFAULT_STORE_TTL
from workers.coalesce import Window
from workers.conversation import Pending
from workers.execution import ExecutionToken, Superseded
from workers.rqstate import lua_script, rq_timestamp

__all__ = [
    "CONVERSATION_VERSION",
    "ConversationScripts",
    "RedisConversations",
    "cancel_conversation",
    "job_data",
]

#: The job format version of flush and timeout jobs: workers that speak only version 1
#: refuse them ("upgrade the workers") into the failed registry instead of guessing.
CONVERSATION_VERSION = 2


def job_data(kind: str, **kwargs: Any) -> tuple[str, str]:
    """Return a flush or timeout job's RQ ``data`` and its description (no phone number)."""
    call = {"kind": kind, "version": CONVERSATION_VERSION, **kwargs}
    parent = tracing.traceparent()  # the job that asked (a flush: its burst's first message)
    if parent is not None:
        call["traceparent"] = parent
    data = json.dumps([JOB_FUNCTION, None, [], call])
    label = kwargs.get("handler") or kwargs.get("step")
    return data, f"{kind} {label}"


class ConversationScripts:
    """The conversation scripts, registered once per client (one per worker process)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl: int) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = Keys(prefix)
        #: Seconds the state is kept after its last change (``WABAHOOKS_STORE_TTL``).
        self.ttl = ttl
        chained = CHAIN_LUA
        self.expect: AsyncScript = client.register_script(chained + lua_script("conv_expect"))
        self.advance: AsyncScript = client.register_script(lua_script("conv_advance"))
        self.append: AsyncScript = client.register_script(chained + lua_script("conv_append"))
        self.seal: AsyncScript = client.register_script(lua_script("conv_seal"))

    def for_job(self, token: ExecutionToken, queue: str) -> RedisConversations:
        """The conversation store of one execution of a job of ``queue``."""
        return RedisConversations(self, token, queue)


def _field(record: tuple[str, str]) -> str:
    handler, step = record
    return f"wh:s:{handler}:{step}"


class RedisConversations:
    """:class:`~workers.conversation.ConversationStore` for one job's execution."""

    def __init__(self, scripts: ConversationScripts, token: ExecutionToken, queue: str) -> None:
        self._s = scripts
        self._token = token
        self._job = rq_job(token.job_id)
        self._scheduled = rq_scheduled(queue)

    def _check(self, reply: Any) -> Any:
        if reply == -1 or (isinstance(reply, list) and reply and reply[0] == -1):
            raise Superseded(self._token)
        return reply

    async def pending(self, contact: str) -> Pending | None:
        key = self._s.keys.conversation(contact)
        reply: Any = await self._s.client.hmget(key, ["step", "gen", "data", "deadline"])
        step, gen, data, deadline = reply
        if step is None:
            return None
        return Pending(step.decode(), int(gen), json.loads(data), float(deadline))

    async def expect(
        self, contact: str, step: str, *, timeout: float, data: Any, record: tuple[str, str]
    ) -> int:
        timer = os.urandom(16).hex()
        job, description = job_data(
            "timeout", event_key=f"timeout:{timer}", conversation=contact, step=step
        )
        reply = await self._s.expect(
            keys=[
                self._s.keys.conversation(contact),
                self._job,
                self._scheduled,
                rq_job(timer),
            ],
            args=[
                self._token.execution_id,
                _field(record),
                step,
                json.dumps(data),
                timeout,
                self._s.ttl,
                timer,
                job,
                description,
                rq_timestamp(),
                self._s.keys.tail("message", contact),
                record[0],
            ],
        )
        return int(self._check(reply))

    async def advance(
        self, contact: str, *, how: str, gen: int | None, record: tuple[str, str] | None
    ) -> dict[str, Any] | None:
        reply = await self._s.advance(
            keys=[self._s.keys.conversation(contact), self._job, self._scheduled],
            args=[
                self._token.execution_id,
                how,
                "" if gen is None else gen,
                "" if record is None else _field(record),
                self._s.ttl,
            ],
        )
        self._check(reply)
        if reply[0] != 1:
            return None
        result: dict[str, Any] = json.loads(reply[1])["result"]
        return result

    async def append(
        self, contact: str, handler: str, window: Window, message: dict[str, Any]
    ) -> bool:
        flush = os.urandom(16).hex()
        job, description = job_data(
            "flush", event_key=f"flush:{flush}", conversation=contact, handler=handler
        )
        envelope = message["envelope"]
        message_id = str(envelope.get("data", {}).get("messageId") or message["event_key"])
        reply = await self._s.append(
            keys=[
                self._s.keys.burst(contact, handler),
                self._job,
                self._scheduled,
                rq_job(flush),
            ],
            args=[
                self._token.execution_id,
                _field((handler, "coalesce")),
                message_id,
                json.dumps(message),
                window.quiet,
                window.max_wait,
                window.max_messages,
                self._s.ttl,
                flush,
                job,
                description,
                rq_timestamp(),
                self._s.keys.tail("message", contact),
            ],
        )
        return int(self._check(reply)) > 0

    async def seal(self, contact: str, handler: str) -> list[dict[str, Any]] | None:
        reply = await self._s.seal(
            keys=[self._s.keys.burst(contact, handler), self._job],
            args=[self._token.execution_id, self._token.job_id, "wh:s:conversation:burst"],
        )
        if reply is None:
            return None
        self._check(reply)
        messages: list[dict[str, Any]] = json.loads(reply)["result"]["messages"]
        return messages


async def cancel_conversation(
    client: aioredis.Redis,
    contact: str,
    *,
    prefix: str = DEFAULT_QUEUE_PREFIX,
    queue: str = "messages",
    ttl: int = DEFAULT_STORE_TTL,
) -> Mapping[str, Any] | None:
    """End ``contact``'s pending step, if any (its timeout will not run); return what it was
    (``{"step", "data", "gen"}``) or None. For a handover to a person (issue 13): the bot's
    step must not answer the contact's next message, nor time out, while a person talks.
    ``queue``: the messages queue's suffix (its scheduled registry holds the timeout)."""
    scripts = ConversationScripts(client, prefix=prefix, ttl=ttl)
    reply = await scripts.advance(
        keys=[Keys(prefix).conversation(contact), "", rq_scheduled(prefix + queue)],
        args=["", "cancel", "", "", scripts.ttl],
    )
    if reply[0] != 1:
        return None
    result: dict[str, Any] = json.loads(reply[1])["result"]
    return result
