"""The policy's records in Redis, async: a contact's window and handover, opt-outs, links.

Key names are defined once, in ``service.policystore`` (shared with ``wabahooks forget``
and the policy commands). A contact's record is one hash, read with its opt-out flag in
one round trip per event (:meth:`PolicyStore.load`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from service.policystore import CONTACT_TTL, FORWARD_TTL, PolicyKeys, configured_key, hash_number
from service.settings import DEFAULT_SENT_TTL

__all__ = ["DAY", "ContactRecord", "MessagingWindow", "PolicyStore", "record_from", "window_of"]

DAY = 24 * 3600


@dataclass(frozen=True)
class MessagingWindow:
    """The contact's 24-hour window: whether free text may be sent now, and until when.

    ``until`` is the contact's last inbound message's own time + 24 h − the configured
    margin; ``known`` is False when no inbound message was recorded (``open`` is False
    then: only the portal can tell, by refusing)."""

    open: bool
    until: datetime | None
    known: bool = True


def window_of(inbound_at: float | None, now: float, margin: int) -> MessagingWindow:
    """The window of a contact whose last inbound message was at ``inbound_at``."""
    if inbound_at is None:
        return MessagingWindow(False, None, known=False)
    until = inbound_at + DAY - margin
    return MessagingWindow(now < until, datetime.fromtimestamp(until, UTC))


def _float(raw: Mapping[bytes, bytes], name: str) -> float | None:
    value = raw.get(name.encode())
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class ContactRecord:
    """What the policy knows about one contact (as loaded; updated in place by writes)."""

    phone: str
    inbound_at: float | None = None
    handover: bool = False
    handover_by: str = ""
    handover_until: float | None = None
    suppressed: bool = False
    #: When the last handover ended: answers older than this were the human's, not news.
    handover_ended: float | None = None

    def handover_active(self, now: float) -> bool:
        """On, and not idle past its end."""
        return self.handover and (self.handover_until is None or now < self.handover_until)

    def handover_lapsed(self, now: float) -> bool:
        """On in Redis, but idle past its end (ended at the next look)."""
        return self.handover and not self.handover_active(now)


def record_from(phone: str, raw: Mapping[bytes, bytes], suppressed: bool) -> ContactRecord:
    """The contact's record from its hash (``wabahooks:policy:contact:<phone>``)."""
    return ContactRecord(
        phone,
        _float(raw, "inbound_at"),
        raw.get(b"handover") == b"1",
        (raw.get(b"handover_by") or b"").decode(),
        _float(raw, "handover_until"),
        suppressed,
        _float(raw, "handover_ended"),
    )


class PolicyStore:
    """Async reads and writes of the policy's keys."""

    def __init__(
        self,
        redis: Redis,
        keys: PolicyKeys,
        env: Mapping[str, str] | None = None,
        *,
        sent_ttl: int = DEFAULT_SENT_TTL,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.sent_ttl = sent_ttl
        self._hash_key = configured_key(env)

    async def hash_key(self) -> bytes:
        """The opt-out hash key (``WABAHOOKS_OPTOUT_KEY``, else kept in Redis)."""
        if self._hash_key is None:
            await self.redis.set(self.keys.optout_key, secrets.token_hex(32), nx=True)
            stored: Any = await self.redis.get(self.keys.optout_key)
            self._hash_key = bytes(stored)
        return self._hash_key

    async def digest(self, phone: str) -> str:
        return hash_number(await self.hash_key(), phone)

    async def load(self, phone: str) -> ContactRecord:
        """The contact's record and opt-out flag: one round trip."""
        digest = await self.digest(phone)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.contact(phone))
            pipe.hexists(self.keys.optout, digest)
            raw, suppressed = await pipe.execute()
        return record_from(phone, raw, bool(suppressed))

    async def _write(self, phone: str, fields: Mapping[str, str | float]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.contact(phone), mapping=dict(fields))  # type: ignore[arg-type]
            pipe.expire(self.keys.contact(phone), CONTACT_TTL)
            await pipe.execute()

    async def record_inbound(self, record: ContactRecord, at: float) -> None:
        """The contact wrote at ``at`` (the message's own time): their window moves."""
        if record.inbound_at is not None and record.inbound_at >= at:
            return
        record.inbound_at = at
        await self._write(record.phone, {"inbound_at": at})

    async def set_handover(
        self, record: ContactRecord, on: bool, *, by: str, now: float, idle: int
    ) -> None:
        """Turn the contact's handover on (until ``now + idle``) or off."""
        ended = min(now, record.handover_until or now)  # a lapsed one ended at its idle end
        record.handover, record.handover_by = on, by if on else ""
        record.handover_until = now + idle if on else None
        if on:
            fields: dict[str, str | float] = {
                "handover": "1",
                "handover_by": by,
                "handover_since": now,
                "handover_until": now + idle,
            }
            await self._handover_on(record.phone, fields, now)
        else:
            record.handover_ended = ended
            await self._handover_off(record.phone, ended)

    async def _handover_on(self, phone: str, fields: Mapping[str, str | float], now: float) -> None:
        await self._write(phone, fields)
        await self.redis.zadd(self.keys.open, {phone: now})

    async def _handover_off(self, phone: str, ended: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(
                self.keys.contact(phone),
                "handover",
                "handover_by",
                "handover_since",
                "handover_until",
            )
            pipe.hset(self.keys.contact(phone), "handover_ended", ended)
            pipe.expire(self.keys.contact(phone), CONTACT_TTL)
            await pipe.execute()

    async def touch_handover(self, record: ContactRecord, now: float, idle: int) -> None:
        """Activity in a handed-over conversation: its idle end moves."""
        record.handover_until = now + idle
        await self._write(record.phone, {"handover_until": now + idle})

    async def set_suppressed(
        self, record: ContactRecord, on: bool, *, word: str, now: float
    ) -> None:
        """Opt the contact out (kept without expiry) or back in."""
        digest = await self.digest(record.phone)
        record.suppressed = on
        if on:
            entry = {"phone": record.phone, "at": now, "word": word}
            await self.redis.hset(self.keys.optout, digest, json.dumps(entry))
        else:
            await self.redis.hdel(self.keys.optout, digest)

    async def is_suppressed(self, phone: str) -> bool:
        return bool(await self.redis.hexists(self.keys.optout, await self.digest(phone)))

    async def inbound_at(self, phone: str) -> float | None:
        raw: Any = await self.redis.hget(self.keys.contact(phone), "inbound_at")
        return float(raw) if raw is not None else None

    async def link_forward(self, message_id: str, customer: str, now: float) -> None:
        """A message about ``customer`` was forwarded to an agent as ``message_id``."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.forwarded(message_id), customer, ex=FORWARD_TTL)
            pipe.zadd(self.keys.open, {customer: now})
            pipe.zremrangebyscore(self.keys.open, "-inf", now - FORWARD_TTL)
            await pipe.execute()

    async def forwarded_customer(self, message_id: str) -> str | None:
        raw: Any = await self.redis.get(self.keys.forwarded(message_id))
        return raw.decode() if raw is not None else None

    async def open_ending(self, digits: str, since: float) -> list[str]:
        """Open conversations (forwarded or handed over since ``since``) ending in ``digits``."""
        members: Any = await self.redis.zrangebyscore(self.keys.open, since, "+inf")
        return sorted(p for p in (m.decode() for m in members) if p.endswith(digits))

    async def intend(self, phone: str, member: str, now: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.intents(phone), {member: now})
            pipe.expire(self.keys.intents(phone), DAY)
            await pipe.execute()

    async def settle(self, phone: str, member: str, message_id: str | None) -> None:
        """A send's outcome is known: drop its intent; a sent id joins the policy's own set
        of our ids at once. (Not the ledger's sent set: an id there counts as attributed,
        and the retry of a send whose record was lost would no longer find it.)"""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.intents(phone), member)
            if message_id is not None:
                pipe.sadd(self.keys.ours(phone), message_id)
                pipe.expire(self.keys.ours(phone), self.sent_ttl)
            await pipe.execute()

    async def ours(self, phone: str) -> set[str]:
        """Ids of our sends to ``phone`` recorded by :meth:`settle`."""
        members: Any = await self.redis.smembers(self.keys.ours(phone))
        return {m.decode() for m in members}

    async def open_intents(self, phone: str, since: float) -> int:
        """Sends to ``phone`` begun since ``since`` whose outcome is not settled."""
        return int(await self.redis.zcount(self.keys.intents(phone), since, "+inf"))
