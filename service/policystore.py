"""The conversation policy's Redis keys, in one place, and the opt-out list's keyed hash.

Used by the workers (``workers.policy``, async) and by the commands that run without
them (``wabahooks forget``, ``wabahooks optout``, ``wabahooks handover``; sync). Every
key is under ``WABAHOOKS_QUEUE_PREFIX`` (``wabahooks:``):

=============================  ==========================================================
``policy:optout``              hash: keyed hash of a number → JSON ``{phone, at, word}``;
                               no expiry (it must outlive every other record); ``phone``
                               is null once the contact was forgotten
``policy:optout-key``          the hash key, when ``WABAHOOKS_OPTOUT_KEY`` is not set
``policy:contact:<phone>``     hash: ``inbound_at`` (the last inbound message's own time),
                               ``handover``/``handover_by``/``handover_since``/
                               ``handover_until``, ``handover_ended``; expires
                               ``CONTACT_TTL`` after a write
``policy:fwd:<message id>``    the customer a message forwarded to an agent was about
``policy:open``                sorted set: customers forwarded or handed over, by time
                               (where ``#<digits>`` looks)
``policy:intents:<phone>``     sorted set: sends to the contact begun but not settled
                               (unknown outcomes among them), by time
``policy:ours:<phone>``        ids of our sends to the contact, written as each send returns
                               (the ledger's ``sent:`` set is written only as the job ends)
``policy:nudge:<agent>:<t>``   the agent nudge scheduled for the window opened at ``t``
=============================  ==========================================================

The keyed hash is HMAC-SHA256 of the number with ``WABAHOOKS_OPTOUT_KEY`` (any string;
set it, and keep it, so the key is not stored beside the hashes); without it, a random
key is made once and kept in Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from service.keys import DEFAULT_PREFIX

__all__ = [
    "CONTACT_TTL",
    "FORWARD_TTL",
    "KEY_ENV",
    "PolicyKeys",
    "OptOut",
    "forget_policy",
    "hash_number",
    "optout_entries",
    "sync_hash_key",
]

#: Environment variable holding the opt-out hash key.
KEY_ENV = "WABAHOOKS_OPTOUT_KEY"
#: A contact's policy record outlives its 24-hour window by a day.
CONTACT_TTL = 48 * 3600
#: How long a forwarded message can still be answered by replying to it.
FORWARD_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class PolicyKeys:
    """The policy's key names under ``prefix`` (``WABAHOOKS_QUEUE_PREFIX``; the rest of
    wabahooks' keys are in ``service.keys``)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def optout(self) -> str:
        return f"{self.prefix}policy:optout"

    @property
    def optout_key(self) -> str:
        return f"{self.prefix}policy:optout-key"

    @property
    def open(self) -> str:
        return f"{self.prefix}policy:open"

    def contact(self, phone: str) -> str:
        return f"{self.prefix}policy:contact:{phone}"

    def forwarded(self, message_id: str) -> str:
        return f"{self.prefix}policy:fwd:{message_id}"

    def intents(self, phone: str) -> str:
        return f"{self.prefix}policy:intents:{phone}"

    def ours(self, phone: str) -> str:
        return f"{self.prefix}policy:ours:{phone}"

    def nudge(self, agent: str, anchor: int) -> str:
        return f"{self.prefix}policy:nudge:{agent}:{anchor}"


def hash_number(key: bytes, phone: str) -> str:
    """The opt-out list's name for ``phone``: hex HMAC-SHA256 with ``key``."""
    return hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()


def configured_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """``WABAHOOKS_OPTOUT_KEY`` as bytes, if set."""
    value = (os.environ if env is None else env).get(KEY_ENV, "")
    return value.encode() if value else None


def sync_hash_key(
    connection: redis.Redis, keys: PolicyKeys, env: Mapping[str, str] | None = None
) -> bytes:
    """The hash key: the environment's, else the one kept in Redis (made on first use)."""
    key = configured_key(env)
    if key is not None:
        return key
    connection.set(keys.optout_key, secrets.token_hex(32), nx=True)
    stored: Any = connection.get(keys.optout_key)
    return bytes(stored)


@dataclass(frozen=True)
class OptOut:
    """One entry of the opt-out list (``phone`` None: the contact was forgotten)."""

    digest: str
    phone: str | None
    at: float
    word: str

    @classmethod
    def parse(cls, digest: str, raw: bytes | str) -> OptOut:
        obj = json.loads(raw)
        return cls(digest, obj.get("phone"), float(obj.get("at", 0)), str(obj.get("word", "")))


def optout_entries(connection: redis.Redis, keys: PolicyKeys) -> list[OptOut]:
    """Every opted-out contact, oldest first."""
    raw: Any = connection.hgetall(keys.optout)
    entries = [OptOut.parse(d.decode() if isinstance(d, bytes) else d, v) for d, v in raw.items()]
    return sorted(entries, key=lambda e: e.at)


def forget_policy(
    connection: redis.Redis,
    phone: str,
    keys: PolicyKeys,
    *,
    keep_optout: bool = True,
    env: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Remove the policy's records of ``phone``; return counts by kind.

    The opt-out entry keeps its keyed hash (the number itself is erased), so a forgotten
    contact who opted out is still not messaged; ``keep_optout=False`` removes it too.
    """
    gone: dict[str, int] = {}
    digest = hash_number(sync_hash_key(connection, keys, env), phone)
    raw: Any = connection.hget(keys.optout, digest)
    if raw is not None:
        if keep_optout:
            entry = OptOut.parse(digest, raw)
            if entry.phone is not None:
                record = {"phone": None, "at": entry.at, "word": entry.word}
                connection.hset(keys.optout, digest, json.dumps(record))
                gone["opt-out number (its keyed hash kept)"] = 1
        else:
            gone["opt-out entry"] = int(connection.hdel(keys.optout, digest))
    gone["policy record"] = int(connection.delete(keys.contact(phone)))
    gone["open conversation"] = int(connection.zrem(keys.open, phone))
    gone["send intent set"] = int(connection.delete(keys.intents(phone)))
    gone["sent-by-us id set"] = int(connection.delete(keys.ours(phone)))
    forwards = 0
    for key in connection.scan_iter(match=keys.forwarded("*"), count=1000):
        value: Any = connection.get(key)
        if value is not None and value.decode() == phone:
            forwards += int(connection.delete(key))
    gone["forwarded-message link"] = forwards
    nudges = 0
    for key in connection.scan_iter(match=keys.nudge(phone, 0)[:-1] + "*", count=1000):
        nudges += int(connection.delete(key))
    gone["agent nudge marker"] = nudges
    return {kind: count for kind, count in gone.items() if count}
