"""The policy's errors (a module of their own: the context imports the policy's types)."""

from __future__ import annotations

from workers.dispatch import Permanent

__all__ = ["OptedOut"]


class OptedOut(Permanent):
    """A send to a contact on the opt-out list (retrying cannot help)."""
