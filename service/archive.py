"""The event archive's layout in Redis: its settings, its keys, reading it, forgetting a contact.

Each event a worker ends (finished, failed, or waiting for a retry) leaves one archive
entry, written by the worker in the same script that ends the job (``workers.archive``,
``workers/lua/archive.lua``), so an event's end and its record exist together. Keys,
under the queue prefix (``wabahooks:``):

- ``archive:event:<job id>``: the entry, zlib-compressed JSON (the envelope, the outcome per
  handler, the ledger's records); expires ``WABAHOOKS_ARCHIVE_RETENTION`` after its last write;
- ``archive:time``: sorted set of job ids by arrival time (epoch seconds), trimmed to
  the retention by every write;
- ``archive:contact:<token>``: the same, per contact. ``<token>`` is a keyed hash of the
  number (:func:`contact_token`; never the number itself, which anyone could enumerate
  through a plain hash), keyed like the log ids (``service.logs.id_key``);
- ``archive:feed``: a stream of the latest ~1,000 job ids written, newest last, which
  ``wabahooks events tail`` follows (its length is set in ``workers/lua/archive.lua``).

The service side reads it and forgets a contact (``wabahooks forget``); only workers write.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from service.keys import DEFAULT_PREFIX
from service.logs import id_key
from service.settings import ConfigError, env_bool

__all__ = [
    "DEFAULT_ARCHIVE_RETENTION",
    "ArchiveKeys",
    "ArchiveSettings",
    "contact_token",
    "decode_entry",
    "encode_entry",
    "forget_archive",
    "load_entries",
    "select",
]

#: Seconds an entry is kept: the dedupe window, so a message id still finds its job
#: through the claim (``claim:<event key>``) for the archive's whole life.
DEFAULT_ARCHIVE_RETENTION = 7 * 24 * 3600


@dataclass(frozen=True)
class ArchiveSettings:
    """Whether the workers archive events, for how long, and the key contacts are hashed with."""

    enabled: bool = False
    retention: int = DEFAULT_ARCHIVE_RETENTION
    key: bytes | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ArchiveSettings:
        """Read ``WABAHOOKS_ARCHIVE`` and ``WABAHOOKS_ARCHIVE_RETENTION``; raise ConfigError."""
        env = os.environ if env is None else env
        enabled = env_bool(env, "WABAHOOKS_ARCHIVE")
        retention_raw = env.get("WABAHOOKS_ARCHIVE_RETENTION", "").strip()
        retention = DEFAULT_ARCHIVE_RETENTION
        if retention_raw:
            try:
                retention = int(retention_raw)
            except ValueError:
                raise ConfigError(
                    f"WABAHOOKS_ARCHIVE_RETENTION must be a whole number of seconds, "
                    f"got {retention_raw!r}"
                ) from None
            if retention < 60:
                raise ConfigError(
                    f"WABAHOOKS_ARCHIVE_RETENTION must be at least 60 seconds, got {retention}"
                )
        key = id_key(env)
        if enabled and key is None:
            raise ConfigError(
                "WABAHOOKS_ARCHIVE=on needs WABAHOOKS_LOG_KEY (or WABA_WEBHOOK_SECRET): the "
                "archive indexes contacts by a keyed hash, the same in every process"
            )
        return cls(enabled=enabled, retention=retention, key=key)


def contact_token(phone: str, key: bytes) -> str:
    """Return the keyed hash a contact's number is indexed by (16 hex digits)."""
    digest = hashlib.blake2b(b"tel:" + phone.encode("utf-8"), key=key, digest_size=8)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArchiveKeys:
    """The archive's Redis keys under one prefix (see the module docstring)."""

    prefix: str = DEFAULT_PREFIX

    def entry(self, job_id: str) -> str:
        return f"{self.prefix}archive:event:{job_id}"

    @property
    def time(self) -> str:
        return f"{self.prefix}archive:time"

    @property
    def feed(self) -> str:
        return f"{self.prefix}archive:feed"

    def contact(self, token: str) -> str:
        return f"{self.prefix}archive:contact:{token}"


def encode_entry(raw_json: bytes) -> bytes:
    """An entry as stored: its JSON, zlib-compressed (45 % smaller: README "Memory sizing")."""
    return zlib.compress(raw_json, 6)


def decode_entry(stored: bytes) -> dict[str, Any]:
    """An entry as :func:`encode_entry` stored it (plain JSON is read too)."""
    data = stored if stored[:1] == b"{" else zlib.decompress(stored)
    entry: dict[str, Any] = orjson.loads(data)
    return entry


def load_entries(
    connection: redis.Redis, keys: ArchiveKeys, job_ids: Iterable[str]
) -> Iterator[dict[str, Any]]:
    """Yield the entries of ``job_ids`` that still exist, in the order given."""
    ids = list(job_ids)
    for start in range(0, len(ids), 200):
        batch = ids[start : start + 200]
        raw: Any = connection.mget([keys.entry(i) for i in batch])
        for value in raw:
            if value is not None:
                yield decode_entry(value)


def forget_archive(connection: redis.Redis, phone: str, key: bytes, prefix: str) -> int:
    """Remove the archive entries of the contact ``phone`` (its index too); return how many."""
    keys = ArchiveKeys(prefix)
    index = keys.contact(contact_token(phone, key))
    members: Any = connection.zrange(index, 0, -1)
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    removed = 0
    for start in range(0, len(ids), 200):
        batch = ids[start : start + 200]
        pipe = connection.pipeline(transaction=False)
        pipe.delete(*[keys.entry(i) for i in batch])
        pipe.zrem(keys.time, *batch)
        removed += int(pipe.execute()[0])
    connection.delete(index)
    return removed


def select(
    connection: redis.Redis,
    keys: ArchiveKeys,
    *,
    since: float | None = None,
    until: float | None = None,
    token: str | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> list[str]:
    """Job ids archived with an arrival in [since, until], of one contact if ``token``."""
    index = keys.contact(token) if token else keys.time
    low = "-inf" if since is None else f"{since:.6f}"
    high = "+inf" if until is None else f"{until:.6f}"
    raw: Any
    if newest_first:
        raw = connection.zrevrangebyscore(index, high, low, start=0 if limit else None, num=limit)
    else:
        raw = connection.zrangebyscore(index, low, high, start=0 if limit else None, num=limit)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]
