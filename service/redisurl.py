"""``REDIS_URL``'s form, checked once where the settings are read.

redis-py raises a ``ValueError`` deep inside the first connection for a URL it cannot
parse (``localhost:6379`` has no scheme), which every command would show as a traceback:
:func:`redis_url_problem` says it in one line naming the variable and the expected form.
"""

from __future__ import annotations

from redis.connection import parse_url

__all__ = ["EXPECTED_FORM", "redis_url_problem", "shown_url"]

EXPECTED_FORM = (
    "redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS, or unix:///path/to/redis.sock), "
    "e.g. redis://localhost:6379/0"
)


def shown_url(url: str) -> str:
    """``url`` without what could be a password (between the scheme and an ``@``)."""
    head, at, tail = url.rpartition("@")
    scheme, sep, _credentials = head.partition("://")
    return f"{scheme}{sep}***@{tail}" if at and sep else f"***@{tail}" if at else url


def redis_url_problem(url: str) -> str | None:
    """Return why ``url`` is not a URL redis-py can connect to, or ``None``."""
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except ValueError as exc:
        why = f" ({exc})" if "://" in url else ""
        return f"REDIS_URL must be {EXPECTED_FORM}; got {shown_url(url)!r}{why}"
    return None
