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

    def get(self, name: Any) -> bytes | None:  # type: ignore[override, unused-ignore]
        return super().get(name)  # type: ignore[return-value, unused-ignore]

    def hget(self, name: Any, key: Any) -> bytes | None:  # type: ignore[override, unused-ignore]
        return super().hget(name, key)  # type: ignore[return-value, unused-ignore]

    def hgetall(self, name: Any) -> dict[bytes, bytes]:  # type: ignore[override, unused-ignore]
        return super().hgetall(name)  # type: ignore[return-value, unused-ignore]

    def hvals(self, name: Any) -> list[bytes]:  # type: ignore[override, unused-ignore]
        return super().hvals(name)  # type: ignore[return-value, unused-ignore]

    def keys(self, pattern: Any = "*", **kwargs: Any) -> list[bytes]:  # type: ignore[override, unused-ignore]
        return super().keys(pattern, **kwargs)  # type: ignore[return-value, unused-ignore]

    def lrange(self, name: Any, start: int, end: int) -> list[bytes]:  # type: ignore[override, unused-ignore]
        return super().lrange(name, start, end)  # type: ignore[return-value, unused-ignore]

    def smembers(self, name: Any) -> set[bytes]:  # type: ignore[override, unused-ignore]
        return super().smembers(name)  # type: ignore[return-value, unused-ignore]

    def zrange(  # type: ignore[override, unused-ignore]
        self, name: Any, start: int, end: int, *args: Any, **kwargs: Any
    ) -> list[Any]:
        return super().zrange(name, start, end, *args, **kwargs)  # type: ignore[return-value, unused-ignore]

    def xrange(self, name: Any, *args: Any, **kwargs: Any) -> Entries:  # type: ignore[override, unused-ignore]
        return super().xrange(name, *args, **kwargs)  # type: ignore[return-value, unused-ignore]

    def xrevrange(self, name: Any, *args: Any, **kwargs: Any) -> Entries:  # type: ignore[override, unused-ignore]
        return super().xrevrange(name, *args, **kwargs)  # type: ignore[return-value, unused-ignore]

    def type(self, name: Any) -> bytes:  # type: ignore[override, unused-ignore]
        return super().type(name)  # type: ignore[return-value, unused-ignore]
