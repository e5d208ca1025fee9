"""The built-ins' configuration sections: typed, and validated with errors that name the key
(auto-reply's, the largest, in ``workers.replyrules``; the value readers in
``workers.configvalues``).

``workers.config`` reads the file and applies the environment overrides; each built-in's
section (``[handlers.mark_read]``, ``[handlers.auto_reply]``, ``[handlers.forward]``,
``[handlers.status_tracking]``) becomes one of the frozen dataclasses here. Every problem
raises :class:`ConfigError` naming the key, e.g.
``handlers.auto_reply.rules[2].regex: not a valid regular expression: …``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from service import settings
from service.identity import Kind
from workers.configvalues import (
    ConfigError,
    only_known,
    phone_numbers,
    strings_at,
    table_at,
    value_at,
)

__all__ = [
    "FORWARD_EVENTS",
    "forward_section",
    "mark_read_section",
    "only_known",
    "phone_numbers",
    "status_tracking_section",
    "strings_at",
    "table_at",
    "value_at",
    "ConfigError",
    "ForwardConfig",
    "HttpTarget",
    "MarkReadConfig",
    "NumberTarget",
    "StatusTrackingConfig",
]

MARK_READ_MODES = ("always", "when-replying", "never")
DEFAULT_STATUS_RETENTION = settings.DEFAULT_STATUS_RETENTION
DEFAULT_FORWARD_TIMEOUT = 5.0
FORWARD_EVENTS = tuple(kind.value for kind in Kind)


# -- typed configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class MarkReadConfig:
    """``[handlers.mark_read]``: when to show "typing…" while marking read."""

    mode: Literal["always", "when-replying", "never"] = "when-replying"


@dataclass(frozen=True)
class HttpTarget:
    """One ``[[handlers.forward.http]]`` endpoint."""

    key: str
    name: str
    url: httpx.URL
    secret: str = field(repr=False)
    events: frozenset[str] | None = None
    types: frozenset[str] | None = None


@dataclass(frozen=True)
class NumberTarget:
    """One ``[[handlers.forward.whatsapp]]`` number (an agent or a team inbox)."""

    key: str
    to: str
    number: Literal["masked", "full"] = "masked"
    types: frozenset[str] | None = None


@dataclass(frozen=True)
class ForwardConfig:
    """``[handlers.forward]``: HTTP endpoints and WhatsApp numbers."""

    http: tuple[HttpTarget, ...] = ()
    whatsapp: tuple[NumberTarget, ...] = ()
    allow_private_targets: bool = False
    timeout: float = DEFAULT_FORWARD_TIMEOUT
    #: Never forwarded from: the configured agents and every forwarding number.
    agents: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StatusTrackingConfig:
    """``[handlers.status_tracking]``: how long a message's latest status is kept."""

    retention: int = DEFAULT_STATUS_RETENTION


# -- the built-ins' sections ----------------------------------------------------------------


def mark_read_section(section: Mapping[str, Any], key: str) -> MarkReadConfig:
    only_known(section, key, ("enabled", "mode"))
    mode = value_at(section, key, "mode", str, "when-replying")
    if mode not in MARK_READ_MODES:
        raise ConfigError(
            f"{key}.mode", f"must be one of {', '.join(MARK_READ_MODES)}, got {mode!r}"
        )
    return MarkReadConfig(mode)  # type: ignore[arg-type]  # checked just above


def _url(value: str, key: str, allow_private: bool) -> httpx.URL:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ConfigError(key, f"not a valid URL: {exc}") from None
    if url.scheme != "https" and not (allow_private and url.scheme == "http"):
        raise ConfigError(
            key, "must be an https:// URL (plain http only with allow_private_targets = true)"
        )
    if not url.host or url.userinfo:
        raise ConfigError(key, "must name a host and carry no user:password")
    return url


def forward_section(
    section: Mapping[str, Any], key: str, agents: frozenset[str], env: Mapping[str, str]
) -> ForwardConfig:
    only_known(section, key, ("enabled", "allow_private_targets", "timeout", "http", "whatsapp"))
    allow_private = value_at(section, key, "allow_private_targets", bool, False)
    timeout = value_at(section, key, "timeout", float, DEFAULT_FORWARD_TIMEOUT)
    if not 0 < timeout <= 60:
        raise ConfigError(f"{key}.timeout", "must be between 0 and 60 seconds")
    http: list[HttpTarget] = []
    for i, raw in enumerate(value_at(section, key, "http", list, [])):
        k = f"{key}.http[{i}]"
        target = table_at(raw, k)
        only_known(target, k, ("name", "url", "secret", "secret_env", "events", "types"))
        name = value_at(target, k, "name", str, f"http{i}")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or name in {t.name for t in http}:
            raise ConfigError(f"{k}.name", "must be unique: letters, digits, '_', '.', '-'")
        url = _url(value_at(target, k, "url", str, ""), f"{k}.url", allow_private)
        secret = target.get("secret")
        if "secret_env" in target:
            variable = value_at(target, k, "secret_env", str, "")
            secret = env.get(variable, "").strip()
            if not secret:
                raise ConfigError(
                    f"{k}.secret_env", f"the environment variable {variable} is not set"
                )
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{k}.secret", "is required (or secret_env naming a variable)")
        events = strings_at(target, k, "events")
        for event in events or ():
            if event not in FORWARD_EVENTS:
                raise ConfigError(
                    f"{k}.events", f"unknown event {event!r}; use {', '.join(FORWARD_EVENTS)}"
                )
        types = strings_at(target, k, "types")
        http.append(
            HttpTarget(k, name, url, secret, frozenset(events) if events else None,
                       frozenset(types) if types else None)
        )  # fmt: skip
    numbers: list[NumberTarget] = []
    for i, raw in enumerate(value_at(section, key, "whatsapp", list, [])):
        k = f"{key}.whatsapp[{i}]"
        target = table_at(raw, k)
        only_known(target, k, ("to", "number", "types"))
        (to,) = phone_numbers((value_at(target, k, "to", str, ""),), f"{k}.to")
        shown = value_at(target, k, "number", str, "masked")
        if shown not in ("masked", "full"):
            raise ConfigError(f"{k}.number", f"must be masked or full, got {shown!r}")
        types = strings_at(target, k, "types")
        numbers.append(NumberTarget(k, to, shown, frozenset(types) if types else None))  # type: ignore[arg-type]
    if not http and not numbers:
        raise ConfigError(
            key, "forwards nowhere: add [[handlers.forward.http]] or [[handlers.forward.whatsapp]]"
        )
    every_agent = agents | {n.to for n in numbers}
    return ForwardConfig(tuple(http), tuple(numbers), allow_private, timeout, every_agent)


def status_tracking_section(section: Mapping[str, Any], key: str) -> StatusTrackingConfig:
    only_known(section, key, ("enabled", "retention"))
    retention = value_at(section, key, "retention", int, DEFAULT_STATUS_RETENTION)
    if retention < 60:
        raise ConfigError(f"{key}.retention", "must be at least 60 seconds")
    return StatusTrackingConfig(retention)
