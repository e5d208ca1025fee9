"""A synchronous Redis client typed as the suite uses it: replies are bytes.

redis-py 8 types every reply ``bytes | str`` (``decode_responses`` is a runtime choice); the
suite's clients never decode, so the reads the tests make are re-declared here with bytes
replies. Only types change: each method is redis-py's own.
"""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["BytesRedis"]

#: A stream's entries: (id, fields).
Entries = list[tuple[bytes, dict[bytes, bytes]]]


class BytesRedis(redis.Redis):
    """``redis.Redis`` whose reads are typed as bytes replies (``decode_responses=False``)."""

    def get(self, name: Any) -> bytes | None:  # type: ignore[override]
        return super().get(name)  # type: ignore[return-value]

    def hget(self, name: Any, key: Any) -> bytes | None:  # type: ignore[override]
        return super().hget(name, key)  # type: ignore[return-value]

    def hgetall(self, name: Any) -> dict[bytes, bytes]:  # type: ignore[override]
        return super().hgetall(name)  # type: ignore[return-value]

    def hvals(self, name: Any) -> list[bytes]:  # type: ignore[override]
        return super().hvals(name)  # type: ignore[return-value]

    def keys(self, pattern: Any = "*", **kwargs: Any) -> list[bytes]:  # type: ignore[override]
        return super().keys(pattern, **kwargs)  # type: ignore[return-value]

    def lrange(self, name: Any, start: int, end: int) -> list[bytes]:  # type: ignore[override]
        return super().lrange(name, start, end)  # type: ignore[return-value]

    def smembers(self, name: Any) -> set[bytes]:  # type: ignore[override]
        return super().smembers(name)  # type: ignore[return-value]

    def zrange(  # type: ignore[override]
        self, name: Any, start: int, end: int, *args: Any, **kwargs: Any
    ) -> list[Any]:
        return super().zrange(name, start, end, *args, **kwargs)  # type: ignore[return-value]

    def xrange(self, name: Any, *args: Any, **kwargs: Any) -> Entries:  # type: ignore[override]
        return super().xrange(name, *args, **kwargs)  # type: ignore[return-value]

    def xrevrange(self, name: Any, *args: Any, **kwargs: Any) -> Entries:  # type: ignore[override]
        return super().xrevrange(name, *args, **kwargs)  # type: ignore[return-value]

    def type(self, name: Any) -> bytes:  # type: ignore[override]
        return super().type(name)  # type: ignore[return-value]
