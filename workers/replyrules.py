"""The auto-reply built-in's section, ``[handlers.auto_reply]``: rules (first match wins),
business hours, reply templates with placeholders, and the cooldown. Read like every section
(``workers.configvalues``); ``workers.config`` calls :func:`auto_reply_section`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workers.configvalues import (
    ConfigError,
    only_known,
    strings_at,
    table_at,
    value_at,
)

__all__ = [
    "DEFAULT_COOLDOWN",
    "PLACEHOLDER",
    "TEMPLATE_FIELDS",
    "AutoReplyConfig",
    "BusinessHours",
    "Rule",
    "auto_reply_section",
]

DEFAULT_COOLDOWN = 600
#: Placeholders a reply template may use, e.g. "Hi {first_name}!"; ``{{``/``}}`` are braces.
TEMPLATE_FIELDS = ("name", "first_name", "number", "text", "type", "payload", "caption")
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Rule:
    """One ``[[handlers.auto_reply.rules]]``: every matcher given must hold."""

    key: str
    reply: str
    text: frozenset[str] = frozenset()
    contains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    payload: frozenset[str] = frozenset()
    types: frozenset[str] | None = None
    ignore_case: bool = True
    #: Reply to the configured agent numbers too.
    agents: bool = False


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours in a time zone: ``days`` (0 = Monday), from ``opens`` until ``closes``."""

    timezone: ZoneInfo
    days: frozenset[int]
    opens: dt.time
    closes: dt.time

    def is_open(self, moment: dt.datetime) -> bool:
        """Return whether the business is open at ``moment`` (an aware datetime)."""
        local = moment.astimezone(self.timezone)
        now = local.time().replace(tzinfo=None)
        if self.opens <= self.closes:
            return local.weekday() in self.days and self.opens <= now < self.closes
        # Past midnight: the evening belongs to today, the early morning to yesterday.
        if now >= self.opens:
            return local.weekday() in self.days
        return now < self.closes and (local.weekday() - 1) % 7 in self.days


@dataclass(frozen=True)
class AutoReplyConfig:
    """``[handlers.auto_reply]``: rules (first match wins), a default, hours, cooldown."""

    rules: tuple[Rule, ...] = ()
    default: str | None = None
    hours: BusinessHours | None = None
    out_of_hours: str | None = None
    cooldown: int = DEFAULT_COOLDOWN
    agents: frozenset[str] = frozenset()


def _template(section: Mapping[str, Any], key: str, name: str) -> str | None:
    value = section.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}.{name}", "must be a non-empty string")
    for match in PLACEHOLDER.finditer(value):
        placeholder = match.group(1)
        if placeholder is not None and placeholder not in TEMPLATE_FIELDS:
            raise ConfigError(
                f"{key}.{name}",
                f"unknown placeholder {{{placeholder}}}; use {', '.join(TEMPLATE_FIELDS)} "
                "(write {{ and }} for literal braces)",
            )
    return value


def _time(value: Any, key: str) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(key, f'must be a time of day such as "09:00", got {value!r}')


def _hours(section: Mapping[str, Any], key: str) -> BusinessHours:
    only_known(section, key, ("timezone", "days", "open", "close"))
    zone = value_at(section, key, "timezone", str, "UTC")
    try:
        timezone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{key}.timezone", f"unknown time zone {zone!r}; use an IANA name like Europe/Berlin"
        ) from None
    days = strings_at(section, key, "days") or _DAYS[:5]
    for day in days:
        if day.lower()[:3] not in _DAYS:
            raise ConfigError(f"{key}.days", f"unknown day {day!r}; use {', '.join(_DAYS)}")
    if "open" not in section or "close" not in section:
        raise ConfigError(key, 'needs both open and close, e.g. open = "09:00", close = "18:00"')
    opens, closes = _time(section["open"], f"{key}.open"), _time(section["close"], f"{key}.close")
    if opens == closes:
        raise ConfigError(f"{key}.close", "must differ from open")
    return BusinessHours(
        timezone, frozenset(_DAYS.index(d.lower()[:3]) for d in days), opens, closes
    )


_RULE_KEYS = ("text", "contains", "regex", "payload", "type", "ignore_case", "agents", "reply")


def _rule(section: Mapping[str, Any], key: str, ignore_case: bool) -> Rule:
    only_known(section, key, _RULE_KEYS)
    reply = _template(section, key, "reply")
    if reply is None:
        raise ConfigError(f"{key}.reply", "is required: the text to answer with")
    fold = value_at(section, key, "ignore_case", bool, ignore_case)
    norm: Callable[[str], str] = str.casefold if fold else (lambda s: s)
    text, contains = strings_at(section, key, "text"), strings_at(section, key, "contains")
    payload, types = strings_at(section, key, "payload"), strings_at(section, key, "type")
    pattern = None
    if "regex" in section:
        source = value_at(section, key, "regex", str, "")
        try:
            pattern = re.compile(source, re.IGNORECASE if fold else 0)
        except re.error as exc:
            raise ConfigError(f"{key}.regex", f"not a valid regular expression: {exc}") from None
    if not (text or contains or pattern or payload or types):
        raise ConfigError(key, "needs a matcher: text, contains, regex, payload or type")
    return Rule(
        key=key,
        reply=reply,
        text=frozenset(norm(t.strip()) for t in text or ()),
        contains=tuple(norm(c) for c in contains or ()),
        regex=pattern,
        payload=frozenset(payload or ()),
        types=frozenset(types) if types else None,
        ignore_case=fold,
        agents=value_at(section, key, "agents", bool, False),
    )


def auto_reply_section(
    section: Mapping[str, Any], key: str, agents: frozenset[str]
) -> AutoReplyConfig:
    allowed = ("enabled", "ignore_case", "rules", "default", "hours", "out_of_hours", "cooldown")
    only_known(section, key, allowed)
    ignore_case = value_at(section, key, "ignore_case", bool, True)
    rules = section.get("rules", [])
    if not isinstance(rules, list):
        raise ConfigError(
            f"{key}.rules", "must be an array of tables ([[handlers.auto_reply.rules]])"
        )
    parsed = tuple(
        _rule(table_at(r, f"{key}.rules[{i}]"), f"{key}.rules[{i}]", ignore_case)
        for i, r in enumerate(rules)
    )
    hours = None
    if "hours" in section:
        hours = _hours(table_at(section["hours"], f"{key}.hours"), f"{key}.hours")
    out_of_hours = _template(section, key, "out_of_hours")
    if out_of_hours is not None and hours is None:
        raise ConfigError(f"{key}.out_of_hours", f"needs [{key}.hours] to know when you are closed")
    cooldown = value_at(section, key, "cooldown", int, DEFAULT_COOLDOWN)
    if cooldown < 0:
        raise ConfigError(f"{key}.cooldown", "must be 0 (off) or more seconds")
    return AutoReplyConfig(
        parsed, _template(section, key, "default"), hours, out_of_hours, cooldown, agents
    )
