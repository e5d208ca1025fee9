"""Redis keys of the conversation features (``workers.convredis``), here so that ``forget``
(the receiver side, which never imports ``workers``) removes them by the same names.

- ``<prefix>conv:<phone>``: the contact's pending step (hash);
- ``<prefix>burst:<phone>:<handler>``: a burst a coalescing handler gathers (hash).
"""

from __future__ import annotations

__all__ = ["burst_key", "burst_pattern", "conversation_key"]


def conversation_key(prefix: str, phone: str) -> str:
    """The hash of a contact's pending step."""
    return f"{prefix}conv:{phone}"


def burst_key(prefix: str, phone: str, handler: str) -> str:
    """The hash of the burst a coalescing ``handler`` gathers for a contact."""
    return f"{prefix}burst:{phone}:{handler}"


def burst_pattern(prefix: str, phone: str) -> str:
    """A SCAN pattern matching every burst of a contact (a phone has no glob characters)."""
    return f"{prefix}burst:{phone}:*"
