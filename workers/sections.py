"""The built-ins' configuration sections: typed, and validated with errors that name the key.

``workers.config`` reads the file and applies the environment overrides; each built-in's
section (``[handlers.mark_read]``, ``[handlers.auto_reply]``, ``[handlers.forward]``,
``[handlers.status_tracking]``) becomes one of the frozen dataclasses here. Every problem
raises :class:`ConfigError` naming the key, e.g.
``handlers.auto_reply.rules[2].regex: not a valid regular expression: …``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from service import settings
from service.identity import Kind
from service.portal.validation import check_phone

__all__ = [
    "FORWARD_EVENTS",
    "auto_reply_section",
    "forward_section",
    "mark_read_section",
    "only_known",
    "phone_numbers",
    "status_tracking_section",
    "strings_at",
    "table_at",
    "value_at",
    "PLACEHOLDER",
    "AutoReplyConfig",
    "BusinessHours",
    "ConfigError",
    "ForwardConfig",
    "HttpTarget",
    "MarkReadConfig",
    "NumberTarget",
    "Rule",
    "StatusTrackingConfig",
]

MARK_READ_MODES = ("always", "when-replying", "never")
DEFAULT_COOLDOWN = 600
DEFAULT_STATUS_RETENTION = settings.DEFAULT_STATUS_RETENTION
DEFAULT_FORWARD_TIMEOUT = 5.0
FORWARD_EVENTS = tuple(kind.value for kind in Kind)
#: Placeholders a reply template may use, e.g. "Hi {first_name}!"; ``{{``/``}}`` are braces.
TEMPLATE_FIELDS = ("name", "first_name", "number", "text", "type", "payload", "caption")
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(settings.ConfigError):
    """The configuration file (or an override) is wrong; ``key`` names where."""

    def __init__(self, key: str, problem: str, *, source: str = "") -> None:
        self.key = key
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")


# -- typed configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class MarkReadConfig:
    """``[handlers.mark_read]``: when to show "typing…" while marking read."""

    mode: Literal["always", "when-replying", "never"] = "when-replying"


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


# -- reading values -------------------------------------------------------------------------

T = TypeVar("T")


def table_at(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {type(value).__name__}")
    return value


def only_known(section: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    for name in section:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", f"unknown key; known keys: {', '.join(allowed)}")


_KINDS: dict[type, str] = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "an array",
}


def value_at(section: Mapping[str, Any], key: str, name: str, kind: type[T], default: T) -> T:
    value = section.get(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        wanted = _KINDS.get(kind, kind.__name__)
        raise ConfigError(f"{key}.{name}", f"must be {wanted}, got {value!r}")
    return value


def strings_at(section: Mapping[str, Any], key: str, name: str) -> tuple[str, ...] | None:
    """A string or a list of strings (``None`` when absent)."""
    value = section.get(name)
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(f"{key}.{name}", "must be a non-empty string or a list of them")
    if not items:
        raise ConfigError(f"{key}.{name}", "must not be an empty list")
    return tuple(items)


def phone_numbers(values: tuple[str, ...] | None, key: str) -> frozenset[str]:
    numbers = [v.strip().lstrip("+").replace(" ", "") for v in values or ()]
    for index, number in enumerate(numbers):
        # The portal's own rule (one definition): a number it would refuse is refused here.
        if (problem := check_phone(number)) is not None:
            raise ConfigError(
                key,
                f"phone numbers are digits the portal accepts; entry {index + 1} is not: "
                f"{problem.detail}",
            )
    return frozenset(numbers)


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


# -- the built-ins' sections ----------------------------------------------------------------


def mark_read_section(section: Mapping[str, Any], key: str) -> MarkReadConfig:
    only_known(section, key, ("enabled", "mode"))
    mode = value_at(section, key, "mode", str, "when-replying")
    if mode not in MARK_READ_MODES:
        raise ConfigError(
            f"{key}.mode", f"must be one of {', '.join(MARK_READ_MODES)}, got {mode!r}"
        )
    return MarkReadConfig(mode)  # type: ignore[arg-type]  # checked just above


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
