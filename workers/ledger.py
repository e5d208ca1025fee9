"""The exactly-once ledger: what each handler already did for an event.

Keyed by (event identity, handler, step). A side effect records its *intent*
before the call and its *result* after it; a handler that finished is marked
done. On a retry, done handlers are skipped and done steps return their recorded
result; an intent without a result (the worker died mid-call, or the portal's
answer was lost) is reconciled by the caller (see ``workers.effects``).

Every transition is one atomic write, tied to the execution that holds the job: a Lua
script passes the fence first (``workers.lifecycle``: the job's ``wh:holder`` is this
execution and the job is started) and writes nothing otherwise, raising
:class:`~workers.execution.Superseded`. A completed send (its message id into the
contact's sent set, and the step's ``done`` record) is one script, so no death can
fall between the two.

Records whose loss repeats nothing a person sees are *deferred*: kept in memory and
written with the next write that must reach Redis before an effect (an intent, a result
of ``once``), or by :meth:`Ledger.flush` when the job is about to be retried. They are a
handler marked done, a mark-read's result (marking read again changes nothing), and a
completed send with its message id: the intent written before the send already makes a
retry look for it in the portal's history rather than send again. When the job
finishes, the engine writes the sent ids with the job's end (:meth:`take_sent`, one
script), and the job's ledger fields are no longer needed. A mark-read + reply costs one
ledger round trip (the intent) instead of four. The cost: a worker killed before that
next write runs a finished handler again on the re-drive (its ledgered effects are not
repeated), and a send it completed is found by the history search instead of the ledger.

Two implementations of one (async) protocol: :class:`RedisLedger` (production) and
``workers.ledgermemory.MemoryLedger`` (unit tests of handlers, no Redis).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis.asyncio
import redis.exceptions

from service.keys import DEFAULT_PREFIX, Keys, rq_job
from service.settings import DEFAULT_SENT_TTL
from workers.durablewrites import DurableWrites, NotDurable
from workers.execution import ExecutionToken, Superseded
from workers.lifecycle import lua_script

__all__ = ["JOB_FIELD_PREFIX", "Entry", "Ledger", "NotDurable", "RedisLedger", "ledger_fields"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One step's record: an intent (``at`` = when it was about to run) or a result."""

    state: Literal["intent", "done"]
    at: float
    result: dict[str, Any] | None = None


class Ledger(Protocol):
    """What one event's handlers have done (writes raise Superseded for a stale execution)."""

    async def handler_done(self, handler: str) -> bool: ...
    async def mark_handler_done(self, handler: str) -> None: ...
    async def get(self, handler: str, step: str) -> Entry | None: ...
    async def intend(self, handler: str, step: str) -> None: ...
    async def complete(
        self, handler: str, step: str, result: dict[str, Any], *, deferred: bool = False
    ) -> None: ...
    async def abandon(self, handler: str, step: str) -> None: ...
    async def flush(self) -> None:
        """Write the deferred records now (before a retry)."""
        ...

    def take_sent(self) -> list[tuple[str, str]]:
        """The sends recorded but not yet written, for the job's end."""
        ...

    async def sent_ids(self, phone: str) -> set[str]: ...
    async def record_sent(self, handler: str, step: str, phone: str, message_id: str) -> None:
        """Attribute ``message_id`` to this send and mark the step done: one atomic write."""
        ...

    def ensure_current(self) -> None:
        """Raise Superseded if the engine cancelled this execution (no round trip)."""
        ...

    async def clock(self) -> float:
        """The clock intents are stamped with (Redis' for the Redis ledger), epoch seconds."""
        ...


def _encode(entry: Entry) -> str:
    return json.dumps({"state": entry.state, "at": entry.at, "result": entry.result})


def _decode(raw: bytes | str | None) -> Entry | None:
    if raw is None:
        return None
    obj = json.loads(raw)
    return Entry(obj["state"], float(obj["at"]), obj.get("result"))


#: Ledger fields in an RQ job's hash start with this (RQ ignores fields it does not know).
JOB_FIELD_PREFIX = "wh:"

#: One write of the ledger, fenced (``workers/lua/ledger_write.lua``).
_WRITE = lua_script("ledger_write")


def ledger_fields(job_hash: Mapping[bytes, bytes]) -> dict[str, str]:
    """Return the ledger's fields of a job's hash (as read from Redis), prefix removed."""
    prefix = JOB_FIELD_PREFIX.encode()
    return {
        key[len(prefix) :].decode(): value.decode()
        for key, value in job_hash.items()
        if key.startswith(prefix)
    }


class RedisLedger:
    """The ledger of one event, as ``wh:``-prefixed fields of its RQ job's hash.

    The event and its job are one to one (the intake's claim), and the ledger is
    needed exactly as long as the job can run again, which is the job hash's own
    lifetime; so the engine's fetch of the job reads the ledger too (``fields``),
    with no round trip of its own. Without them, it is read once, on the first
    question. One instance serves one execution of one job; only the execution
    that holds the job can write (the scripts pass the fence), and every write
    keeps the copy in step.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        token: ExecutionToken,
        *,
        fields: Mapping[str, str] | None = None,
        prefix: str = DEFAULT_PREFIX,
        sent_ttl: int = DEFAULT_SENT_TTL,
        wait_aof: bool | DurableWrites = False,
    ) -> None:
        self._redis = client
        self._token = token
        #: ``WABAHOOKS_WAITAOF``: an intent is confirmed like an intake (README "Durability"),
        #: in the batch of the process's :class:`DurableWrites` (``True``: a batch of its own).
        self._durable = (
            wait_aof
            if isinstance(wait_aof, DurableWrites)
            else DurableWrites(client)
            if wait_aof
            else None
        )
        self._key = rq_job(token.job_id)
        self._sent_prefix = Keys(prefix).sent_prefix()
        self._sent_ttl = sent_ttl
        self._fields = None if fields is None else dict(fields)
        #: Deferred records (full field name → value), written with the next write.
        self._pending: dict[str, str] = {}
        #: Sends recorded but not yet written: (the contact's sent set, message id).
        self._pending_sent: list[tuple[str, str]] = []
        self._write_script = client.register_script(_WRITE)

    @property
    def token(self) -> ExecutionToken:
        """The execution this ledger writes for."""
        return self._token

    async def _read(self) -> dict[str, str]:
        if self._fields is None:
            raw: Any = await self._redis.hgetall(self._key)
            self._fields = ledger_fields(raw)
        return self._fields

    def ensure_current(self) -> None:
        if self._token.cancelled:
            raise Superseded(self._token, "the engine cancelled it")

    async def _write(self, field: str, value: str | None, *, deferred: bool = False) -> None:
        self.ensure_current()
        fields = await self._read()
        if deferred and value is not None:
            self._pending[JOB_FIELD_PREFIX + field] = value
            fields[field] = value
            return
        pairs = dict(self._pending)
        if value is not None:
            pairs[JOB_FIELD_PREFIX + field] = value
        else:
            pairs.pop(JOB_FIELD_PREFIX + field, None)
        await self._send(JOB_FIELD_PREFIX + field if value is None else "", pairs)
        if value is None:
            fields.pop(field, None)
        else:
            fields[field] = value

    async def _send(self, delete: str, pairs: Mapping[str, str], intent: str = "") -> str:
        """One script: the fence, the pending sent ids, ``pairs`` (and a deletion, and an
        intent stamped with Redis' clock); return the intent's time ('' without one)."""
        sent = self._pending_sent
        keys = [self._key, *[key for key, _id in sent]]
        args: list[str | int] = [
            self._token.execution_id,
            delete,
            self._sent_ttl,
            intent,
            *[message_id for _key, message_id in sent],
            *[item for pair in pairs.items() for item in pair],
        ]
        reply: Any
        if intent and self._durable is not None:
            # With the other jobs' intents, behind one WAITAOF on the connection that wrote.
            reply = await self._durable.run(self._write_script, keys, args)
        else:
            reply = await self._write_script(keys=keys, args=args)
        if reply == 0:
            raise Superseded(self._token)
        self._pending.clear()
        self._pending_sent = []
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def flush(self) -> None:
        if not self._pending and not self._pending_sent:
            return
        self.ensure_current()
        await self._send("", dict(self._pending))

    def take_sent(self) -> list[tuple[str, str]]:
        """Hand over the sends recorded but not written, (sent set key, message id), for the
        engine to write as the job finishes (its ledger fields are not needed then)."""
        sent, self._pending_sent = self._pending_sent, []
        self._pending.clear()
        return sent

    def records(self) -> dict[str, str]:
        """The ledger's fields as this execution knows them (read, written or deferred),
        prefix removed: what the archive shows as the event's calls (``workers.archive``)."""
        return dict(self._fields or {})

    async def handler_done(self, handler: str) -> bool:
        return f"h:{handler}" in await self._read()

    async def mark_handler_done(self, handler: str) -> None:
        await self._write(f"h:{handler}", str(time.time()), deferred=True)

    async def get(self, handler: str, step: str) -> Entry | None:
        return _decode((await self._read()).get(f"s:{handler}:{step}"))

    async def intend(self, handler: str, step: str) -> None:
        self.ensure_current()
        field = f"s:{handler}:{step}"
        fields = await self._read()
        pairs = dict(self._pending)
        pairs.pop(JOB_FIELD_PREFIX + field, None)
        at = await self._send("", pairs, intent=JOB_FIELD_PREFIX + field)
        fields[field] = _encode(Entry("intent", float(at)))
        self._token.intent_opened(field)

    async def clock(self) -> float:
        """Redis' clock (epoch seconds): the one intents are stamped with."""
        seconds, micros = await self._redis.time()
        return int(seconds) + int(micros) / 1_000_000

    async def complete(
        self, handler: str, step: str, result: dict[str, Any], *, deferred: bool = False
    ) -> None:
        value = _encode(Entry("done", time.time(), result))
        await self._write(f"s:{handler}:{step}", value, deferred=deferred)

    async def abandon(self, handler: str, step: str) -> None:
        await self._write(f"s:{handler}:{step}", None)
        self._token.intent_closed(f"s:{handler}:{step}")

    async def sent_ids(self, phone: str) -> set[str]:
        members: Any = await self._redis.smembers(self._sent_prefix + phone)
        ids = {m.decode() if isinstance(m, bytes) else m for m in members}
        return ids | {i for key, i in self._pending_sent if key == self._sent_prefix + phone}

    async def record_sent(self, handler: str, step: str, phone: str, message_id: str) -> None:
        # Deferred like the other records, but never dropped: written with the next write,
        # a flush, or the job's end (take_sent). A death before then leaves the intent,
        # which the retry settles from the portal's history (workers.effects).
        self.ensure_current()
        field = f"s:{handler}:{step}"
        value = _encode(Entry("done", time.time(), {"message_id": message_id}))
        self._pending[JOB_FIELD_PREFIX + field] = value
        self._pending_sent.append((self._sent_prefix + phone, message_id))
        (await self._read())[field] = value
        self._token.intent_closed(field)
