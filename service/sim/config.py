"""The simulator's configuration: start-up options, chaos settings, and their JSON updates.

Also :class:`Refusal`, what every simulator operation raises to answer an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

__all__ = ["SETTING_NAMES", "Chaos", "Refusal", "SimConfig", "iso", "update"]


class Refusal(Exception):
    """An API request the portal refuses: ``status`` and the ``error`` text it answers with."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class Chaos:
    """Misbehaviour on demand, all off by default. Rates are probabilities from 0 to 1."""

    duplicate_rate: float = 0.0  # each webhook delivered twice
    out_of_order: bool = False  # statuses delivered read, delivered, sent
    rate_limit_next: int = 0  # the next N API calls answer 429
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0  # the Retry-After those 429s carry, in seconds
    server_error_next: int = 0  # the next N API calls answer 500
    server_error_rate: float = 0.0
    error_after_send_next: int = 0  # the next N sends are carried out, then answered 500
    error_after_send_rate: float = 0.0
    latency: float = 0.0  # seconds added to every API call
    hold_after_send: float = 0.0  # seconds a carried-out send waits before it is answered
    #: Seconds a carried-out send takes to appear in its conversation's history (``GET
    #: /conversations/{phone}/messages``): a portal that records late (the workers assume at
    #: most ``workers.execution.LATE_RECORDING``). ``/sim/history`` lists it at once.
    record_delay: float = 0.0


@dataclass
class SimConfig:
    """How the simulator starts (and what ``POST /sim/reset`` returns to)."""

    api_key: str = "sim-key"
    readonly_keys: tuple[str, ...] = ()
    phone_number: str = "919000000001"
    project_id: str = "sim-project"
    verified: bool = True
    allow_insecure_webhooks: bool = False  # accept http://127.0.0.1 and http://localhost
    auto_read: bool = True  # an accepted send goes sent -> delivered -> read
    status_delay: float = 0.05  # seconds between those status webhooks
    delivery_attempts: int = 5
    delivery_backoff: float = 0.5
    delivery_timeout: float = 5.0
    seed: int | None = None
    #: Seconds the simulator's clock runs ahead of ours (negative: behind): its timestamps and
    #: its ``Date`` header both, as a portal whose clock is off would send them.
    clock_skew: float = 0.0
    webhook_url: str = ""  # configured and enabled at start-up when set
    webhook_secret: str | None = field(default=None, repr=False)  # generated when not given
    chaos: Chaos = field(default_factory=Chaos)


SETTING_NAMES = frozenset(
    {
        "verified",
        "allow_insecure_webhooks",
        "auto_read",
        "status_delay",
        "delivery_attempts",
        "delivery_backoff",
        "delivery_timeout",
        "clock_skew",
    }
)


def iso(moment: datetime) -> str:
    """Format like JavaScript's ``Date.prototype.toISOString``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def update(obj: Any, changes: dict[str, Any], allowed: frozenset[str] | None = None) -> None:
    """Set fields of a dataclass from JSON, checking names and types; raise :class:`Refusal`."""
    types = {f.name: type(getattr(obj, f.name)) for f in fields(obj)}
    for name, value in changes.items():
        if name not in types or (allowed is not None and name not in allowed):
            raise Refusal(400, f"Unknown setting {name!r}")
        want = types[name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise Refusal(400, f"Setting {name!r} must be a {want.__name__}")
        setattr(obj, name, value)
