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

__all__ = ["Entry", "Ledger", "MemoryLedger", "RedisLedger"]

DEFAULT_LEDGER_TTL = 7 * 24 * 3600


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


class RedisLedger:
    """The ledger of one event, in a Redis hash ``<prefix>ledger:<event_key>``.

    Read once (one ``HGETALL``, on the first question) and kept in step with every
    write: one instance serves one attempt of one job, and RQ runs a job in one
    worker at a time, so nothing else writes this hash meanwhile.
    """

    def __init__(
        self,
        client: redis.Redis,
        event_key: str,
        *,
        prefix: str = "wabahooks:",
        ttl: int = DEFAULT_LEDGER_TTL,
    ) -> None:
        self._redis = client
        self._key = f"{prefix}ledger:{event_key}"
        self._sent_prefix = f"{prefix}sent:"
        self._ttl = ttl
        self._fields: dict[str, str] | None = None

    def _read(self) -> dict[str, str]:
        if self._fields is None:
            raw: Any = self._redis.hgetall(self._key)
            self._fields = {k.decode(): v.decode() for k, v in raw.items()}
        return self._fields

    def _write(self, field: str, value: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, field, value)
            pipe.expire(self._key, self._ttl)
            pipe.execute()
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
        self._redis.hdel(self._key, f"s:{handler}:{step}")
        self._read().pop(f"s:{handler}:{step}", None)

    def sent_ids(self, phone: str) -> set[str]:
        members: Any = self._redis.smembers(self._sent_prefix + phone)
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    def add_sent_id(self, phone: str, message_id: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._sent_prefix + phone, message_id)
            pipe.expire(self._sent_prefix + phone, self._ttl)
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
