"""The exactly-once ledger: what each handler already did for an event.

Keyed by (event identity, handler, step). A side effect records its *intent*
before the call and its *result* after it; a handler that finished is marked
done. On a retry, done handlers are skipped and done steps return their recorded
result; an intent without a result (the worker died mid-call, or the portal's
answer was lost) is reconciled by the caller (see ``workers.effects``).

Two implementations of one protocol: :class:`RedisLedger` (production) and
:class:`MemoryLedger` (unit tests of handlers, no Redis).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis

from service.settings import DEFAULT_SENT_TTL

__all__ = ["JOB_FIELD_PREFIX", "Entry", "Ledger", "MemoryLedger", "RedisLedger"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One step's record: an intent (``at`` = when it was about to run) or a result."""

    state: Literal["intent", "done"]
    at: float
    result: dict[str, Any] | None = None


class Ledger(Protocol):
    """What one event's handlers have done."""

    def handler_done(self, handler: str) -> bool: ...
    def mark_handler_done(self, handler: str) -> None: ...
    def get(self, handler: str, step: str) -> Entry | None: ...
    def intend(self, handler: str, step: str) -> None: ...
    def complete(self, handler: str, step: str, result: dict[str, Any]) -> None: ...
    def abandon(self, handler: str, step: str) -> None: ...
    def sent_ids(self, phone: str) -> set[str]: ...
    def add_sent_id(self, phone: str, message_id: str) -> None: ...


def _encode(entry: Entry) -> str:
    return json.dumps({"state": entry.state, "at": entry.at, "result": entry.result})


def _decode(raw: bytes | str | None) -> Entry | None:
    if raw is None:
        return None
    obj = json.loads(raw)
    return Entry(obj["state"], float(obj["at"]), obj.get("result"))


#: Ledger fields in an RQ job's hash start with this (RQ ignores fields it does not know).
JOB_FIELD_PREFIX = "wh:"


class RedisLedger:
    """The ledger of one event, as ``wh:``-prefixed fields of its RQ job's hash.

    The event and its job are one to one (the intake's claim), and the ledger is
    needed exactly as long as the job can run again, which is the job hash's own
    lifetime; so RQ's fetch of the job reads the ledger too (``fields``, see
    ``workers.worker.WabaJob``), with no round trip of its own. Without them, it is
    read once, on the first question. One instance serves one attempt of one job,
    and RQ runs a job in one worker at a time, so nothing else writes these fields
    meanwhile; every write keeps the copy in step.
    """

    def __init__(
        self,
        client: redis.Redis,
        job_key: str,
        *,
        fields: dict[str, str] | None = None,
        prefix: str = "wabahooks:",
        sent_ttl: int = DEFAULT_SENT_TTL,
    ) -> None:
        self._redis = client
        self._key = job_key
        self._sent_prefix = f"{prefix}sent:"
        self._sent_ttl = sent_ttl
        self._fields = fields

    def _read(self) -> dict[str, str]:
        if self._fields is None:
            raw: Any = self._redis.hgetall(self._key)
            self._fields = {
                k.decode()[len(JOB_FIELD_PREFIX) :]: v.decode()
                for k, v in raw.items()
                if k.startswith(JOB_FIELD_PREFIX.encode())
            }
        return self._fields

    def _write(self, field: str, value: str) -> None:
        self._redis.hset(self._key, JOB_FIELD_PREFIX + field, value)
        self._read()[field] = value

    def handler_done(self, handler: str) -> bool:
        return f"h:{handler}" in self._read()

    def mark_handler_done(self, handler: str) -> None:
        self._write(f"h:{handler}", str(time.time()))

    def get(self, handler: str, step: str) -> Entry | None:
        return _decode(self._read().get(f"s:{handler}:{step}"))

    def intend(self, handler: str, step: str) -> None:
        self._write(f"s:{handler}:{step}", _encode(Entry("intent", time.time())))

    def complete(self, handler: str, step: str, result: dict[str, Any]) -> None:
        self._write(f"s:{handler}:{step}", _encode(Entry("done", time.time(), result)))

    def abandon(self, handler: str, step: str) -> None:
        self._redis.hdel(self._key, f"{JOB_FIELD_PREFIX}s:{handler}:{step}")
        self._read().pop(f"s:{handler}:{step}", None)

    def sent_ids(self, phone: str) -> set[str]:
        members: Any = self._redis.smembers(self._sent_prefix + phone)
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    def add_sent_id(self, phone: str, message_id: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._sent_prefix + phone, message_id)
            pipe.expire(self._sent_prefix + phone, self._sent_ttl)
            pipe.execute()


class MemoryLedger:
    """The same ledger in a dict, for unit tests of handlers."""

    def __init__(self) -> None:
        self.handlers: set[str] = set()
        self.steps: dict[tuple[str, str], Entry] = {}
        self.sent: dict[str, set[str]] = {}

    def handler_done(self, handler: str) -> bool:
        return handler in self.handlers

    def mark_handler_done(self, handler: str) -> None:
        self.handlers.add(handler)

    def get(self, handler: str, step: str) -> Entry | None:
        return self.steps.get((handler, step))

    def intend(self, handler: str, step: str) -> None:
        self.steps[(handler, step)] = Entry("intent", time.time())

    def complete(self, handler: str, step: str, result: dict[str, Any]) -> None:
        self.steps[(handler, step)] = Entry("done", time.time(), result)

    def abandon(self, handler: str, step: str) -> None:
        self.steps.pop((handler, step), None)

    def sent_ids(self, phone: str) -> set[str]:
        return set(self.sent.get(phone, ()))

    def add_sent_id(self, phone: str, message_id: str) -> None:
        self.sent.setdefault(phone, set()).add(message_id)
