"""Signed bodies the parser refuses, kept raw so that none is lost to a parser limit.

A body whose signature verifies came from the portal (or from someone holding the secret),
but one we cannot parse (nesting deeper than the parser goes, invalid UTF-8, not JSON) cannot
become a job: the job format's ``envelope`` is parsed JSON. Answering 400 would make the
portal retry it into the same refusal until it gives up, i.e. lose it. Instead the receiver
appends it, raw, to one Redis stream, ``<prefix>unparsed``, and answers 200:

- each entry: ``body`` (the exact bytes), ``reason`` (the parser's message), ``received_at``
  (ISO 8601); the entry id carries the time too;
- at most ``WABAHOOKS_UNPARSED_CAP`` entries (the oldest go first: ``XADD MAXLEN ~``), each at
  most the body limit, so the stream is bounded;
- the stream expires ``WABAHOOKS_FAILURE_TTL`` after its latest entry, like a failed job.

Read them with ``redis-cli XRANGE wabahooks:unparsed - +``; ``wabahooks status`` counts them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis

from service.keys import Keys

__all__ = ["count", "keep"]


async def keep(
    client: aioredis.Redis, prefix: str, body: bytes, reason: str, *, cap: int, ttl: int
) -> str:
    """Append ``body`` to the unparsed stream; return the entry id. Raises ``RedisError``."""
    key = Keys(prefix).unparsed()
    received_at = datetime.now(UTC).isoformat()
    async with client.pipeline(transaction=True) as pipe:
        pipe.xadd(
            key,
            {"body": body, "reason": reason, "received_at": received_at},
            maxlen=cap,
            approximate=True,
        )
        pipe.expire(key, ttl)
        entry_id, _ = await pipe.execute()
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def count(connection: redis.Redis, prefix: str) -> int:
    """Return how many unparsed bodies are kept. Raises ``RedisError``."""
    return int(connection.xlen(Keys(prefix).unparsed()))
