"""The handler configuration file: loaded once at start-up, validated, typed.

``WABAHOOKS_CONFIG`` names a TOML file (default ``wabahooks.toml``, optional). Handler
modules read their own section ``[handlers.<router name>]`` as ``ctx.config``; the
built-ins' sections (``mark_read``, ``auto_reply``, ``forward``, ``status_tracking``)
and the shared ``[agents]`` table are validated here into typed objects. A built-in
is enabled by its section being present (``enabled = false`` turns it off again).

Environment variables override the file (:data:`ENV_OVERRIDES`)::

    WABAHOOKS_BUILTINS               which built-ins run: "mark_read,auto_reply" (or "none")
    WABAHOOKS_AGENT_NUMBERS          agents.numbers, comma-separated
    WABAHOOKS_MARK_READ_MODE         handlers.mark_read.mode
    WABAHOOKS_BUSINESS_TIMEZONE      handlers.auto_reply.hours.timezone
    WABAHOOKS_STATUS_RETENTION       handlers.status_tracking.retention (seconds)
    WABAHOOKS_FORWARD_ALLOW_PRIVATE  handlers.forward.allow_private_targets (1/0)

A forwarding target's secret may come from the environment too (``secret_env``).
Every problem raises :class:`ConfigError` naming the key, e.g.
``handlers.auto_reply.rules[2].regex: not a valid regular expression: …``.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from service import settings

__all__ = [
    "BUILTINS",
    "DEFAULT_CONFIG_FILE",
    "ENV_OVERRIDES",
    "AutoReplyConfig",
    "BusinessHours",
    "Config",
    "ConfigError",
    "ForwardConfig",
    "HttpTarget",
    "MarkReadConfig",
    "NumberTarget",
    "Rule",
    "StatusTrackingConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_FILE = "wabahooks.toml"
#: The built-ins, in the order their names are listed (their dispatch order is in
#: ``workers.builtins``).
BUILTINS = ("status_tracking", "mark_read", "auto_reply", "forward")
MARK_READ_MODES = ("always", "when-replying", "never")
DEFAULT_COOLDOWN = 600
DEFAULT_STATUS_RETENTION = 30 * 24 * 3600
DEFAULT_FORWARD_TIMEOUT = 5.0
FORWARD_EVENTS = ("message", "status", "test", "other")
#: Placeholders a reply template may use, e.g. "Hi {first_name}!"; ``{{``/``}}`` are braces.
TEMPLATE_FIELDS = ("name", "first_name", "number", "text", "type", "payload", "caption")
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PHONE = re.compile(r"[1-9][0-9]{6,14}")

#: Environment variable → the dotted key it overrides.
ENV_OVERRIDES = {
    "WABAHOOKS_AGENT_NUMBERS": "agents.numbers",
    "WABAHOOKS_MARK_READ_MODE": "handlers.mark_read.mode",
    "WABAHOOKS_BUSINESS_TIMEZONE": "handlers.auto_reply.hours.timezone",
    "WABAHOOKS_STATUS_RETENTION": "handlers.status_tracking.retention",
    "WABAHOOKS_FORWARD_ALLOW_PRIVATE": "handlers.forward.allow_private_targets",
}


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


@dataclass(frozen=True)
class Config:
    """The whole configuration: ``raw`` (overrides applied) and the enabled built-ins."""

    raw: Mapping[str, Any] = field(default_factory=dict)
    agents: frozenset[str] = frozenset()
    mark_read: MarkReadConfig | None = None
    auto_reply: AutoReplyConfig | None = None
    forward: ForwardConfig | None = None
    status_tracking: StatusTrackingConfig | None = None

    def section(self, router: str) -> Mapping[str, Any]:
        """Return ``[handlers.<router>]`` (empty if absent)."""
        handlers = self.raw.get("handlers", {})
        section = handlers.get(router, {}) if isinstance(handlers, Mapping) else {}
        return section if isinstance(section, Mapping) else {}


# -- reading values -------------------------------------------------------------------------

T = TypeVar("T")


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {type(value).__name__}")
    return value


def _known(section: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
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


def _get(section: Mapping[str, Any], key: str, name: str, kind: type[T], default: T) -> T:
    value = section.get(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        wanted = _KINDS.get(kind, kind.__name__)
        raise ConfigError(f"{key}.{name}", f"must be {wanted}, got {value!r}")
    return value


def _strings(section: Mapping[str, Any], key: str, name: str) -> tuple[str, ...] | None:
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


def _phones(values: tuple[str, ...] | None, key: str) -> frozenset[str]:
    numbers = [v.strip().lstrip("+").replace(" ", "") for v in values or ()]
    for number in numbers:
        if not _PHONE.fullmatch(number):
            raise ConfigError(
                key, "phone numbers are digits with the country code, e.g. 919876543210"
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


def _mark_read(section: Mapping[str, Any], key: str) -> MarkReadConfig:
    _known(section, key, ("enabled", "mode"))
    mode = _get(section, key, "mode", str, "when-replying")
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
    _known(section, key, ("timezone", "days", "open", "close"))
    zone = _get(section, key, "timezone", str, "UTC")
    try:
        timezone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{key}.timezone", f"unknown time zone {zone!r}; use an IANA name like Europe/Berlin"
        ) from None
    days = _strings(section, key, "days") or _DAYS[:5]
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
    _known(section, key, _RULE_KEYS)
    reply = _template(section, key, "reply")
    if reply is None:
        raise ConfigError(f"{key}.reply", "is required: the text to answer with")
    fold = _get(section, key, "ignore_case", bool, ignore_case)
    norm: Callable[[str], str] = str.casefold if fold else (lambda s: s)
    text, contains = _strings(section, key, "text"), _strings(section, key, "contains")
    payload, types = _strings(section, key, "payload"), _strings(section, key, "type")
    pattern = None
    if "regex" in section:
        source = _get(section, key, "regex", str, "")
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
        agents=_get(section, key, "agents", bool, False),
    )


def _auto_reply(section: Mapping[str, Any], key: str, agents: frozenset[str]) -> AutoReplyConfig:
    allowed = ("enabled", "ignore_case", "rules", "default", "hours", "out_of_hours", "cooldown")
    _known(section, key, allowed)
    ignore_case = _get(section, key, "ignore_case", bool, True)
    rules = section.get("rules", [])
    if not isinstance(rules, list):
        raise ConfigError(
            f"{key}.rules", "must be an array of tables ([[handlers.auto_reply.rules]])"
        )
    parsed = tuple(
        _rule(_table(r, f"{key}.rules[{i}]"), f"{key}.rules[{i}]", ignore_case)
        for i, r in enumerate(rules)
    )
    hours = None
    if "hours" in section:
        hours = _hours(_table(section["hours"], f"{key}.hours"), f"{key}.hours")
    out_of_hours = _template(section, key, "out_of_hours")
    if out_of_hours is not None and hours is None:
        raise ConfigError(f"{key}.out_of_hours", f"needs [{key}.hours] to know when you are closed")
    cooldown = _get(section, key, "cooldown", int, DEFAULT_COOLDOWN)
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


def _forward(
    section: Mapping[str, Any], key: str, agents: frozenset[str], env: Mapping[str, str]
) -> ForwardConfig:
    _known(section, key, ("enabled", "allow_private_targets", "timeout", "http", "whatsapp"))
    allow_private = _get(section, key, "allow_private_targets", bool, False)
    timeout = _get(section, key, "timeout", float, DEFAULT_FORWARD_TIMEOUT)
    if not 0 < timeout <= 60:
        raise ConfigError(f"{key}.timeout", "must be between 0 and 60 seconds")
    http: list[HttpTarget] = []
    for i, raw in enumerate(_get(section, key, "http", list, [])):
        k = f"{key}.http[{i}]"
        target = _table(raw, k)
        _known(target, k, ("name", "url", "secret", "secret_env", "events", "types"))
        name = _get(target, k, "name", str, f"http{i}")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or name in {t.name for t in http}:
            raise ConfigError(f"{k}.name", "must be unique: letters, digits, '_', '.', '-'")
        url = _url(_get(target, k, "url", str, ""), f"{k}.url", allow_private)
        secret = target.get("secret")
        if "secret_env" in target:
            variable = _get(target, k, "secret_env", str, "")
            secret = env.get(variable, "").strip()
            if not secret:
                raise ConfigError(
                    f"{k}.secret_env", f"the environment variable {variable} is not set"
                )
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{k}.secret", "is required (or secret_env naming a variable)")
        events = _strings(target, k, "events")
        for event in events or ():
            if event not in FORWARD_EVENTS:
                raise ConfigError(
                    f"{k}.events", f"unknown event {event!r}; use {', '.join(FORWARD_EVENTS)}"
                )
        types = _strings(target, k, "types")
        http.append(
            HttpTarget(k, name, url, secret, frozenset(events) if events else None,
                       frozenset(types) if types else None)
        )  # fmt: skip
    numbers: list[NumberTarget] = []
    for i, raw in enumerate(_get(section, key, "whatsapp", list, [])):
        k = f"{key}.whatsapp[{i}]"
        target = _table(raw, k)
        _known(target, k, ("to", "number", "types"))
        (to,) = _phones((_get(target, k, "to", str, ""),), f"{k}.to")
        shown = _get(target, k, "number", str, "masked")
        if shown not in ("masked", "full"):
            raise ConfigError(f"{k}.number", f"must be masked or full, got {shown!r}")
        types = _strings(target, k, "types")
        numbers.append(NumberTarget(k, to, shown, frozenset(types) if types else None))  # type: ignore[arg-type]
    if not http and not numbers:
        raise ConfigError(
            key, "forwards nowhere: add [[handlers.forward.http]] or [[handlers.forward.whatsapp]]"
        )
    every_agent = agents | {n.to for n in numbers}
    return ForwardConfig(tuple(http), tuple(numbers), allow_private, timeout, every_agent)


def _status_tracking(section: Mapping[str, Any], key: str) -> StatusTrackingConfig:
    _known(section, key, ("enabled", "retention"))
    retention = _get(section, key, "retention", int, DEFAULT_STATUS_RETENTION)
    if retention < 60:
        raise ConfigError(f"{key}.retention", "must be at least 60 seconds")
    return StatusTrackingConfig(retention)


# -- loading --------------------------------------------------------------------------------


def _override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(part, "must be a table")
    node[last] = value


def _env_value(name: str, dotted: str, raw: str) -> Any:
    if dotted.endswith(".numbers"):
        return [n for n in (p.strip() for p in raw.split(",")) if n]
    if dotted.endswith(".retention"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(name, f"must be a whole number of seconds, got {raw!r}") from None
    if dotted.endswith(".allow_private_targets"):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(name, f"must be 1 or 0, got {raw!r}")
        return raw.lower() in ("1", "true", "yes")
    return raw


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate parsed TOML (``env`` overrides applied) into a :class:`Config`."""
    env = os.environ if env is None else env
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    handlers = _table(data.setdefault("handlers", {}), "handlers")
    present = {name for name in BUILTINS if name in handlers}
    for variable, dotted in ENV_OVERRIDES.items():
        value = env.get(variable, "").strip()
        if value:
            _override(data, dotted, _env_value(variable, dotted, value))
    handlers = data["handlers"]
    chosen = env.get("WABAHOOKS_BUILTINS", "").strip()
    if chosen:
        names = set() if chosen == "none" else {n.strip() for n in chosen.split(",") if n.strip()}
        for name in names - set(BUILTINS):
            raise ConfigError(
                "WABAHOOKS_BUILTINS", f"unknown built-in {name!r}; use {', '.join(BUILTINS)}"
            )
        present = names
        for name in names:
            handlers.setdefault(name, {})
    agents_table = _table(data.get("agents", {}), "agents")
    _known(agents_table, "agents", ("numbers",))
    agents = _phones(_strings(agents_table, "agents", "numbers"), "agents.numbers")

    def enabled(name: str) -> Mapping[str, Any] | None:
        section = _table(handlers.get(name, {}), f"handlers.{name}")
        on = _get(section, f"handlers.{name}", "enabled", bool, True)
        return section if name in present and (on or chosen) else None

    mark_read = auto_reply = forward = status_tracking = None
    if (section := enabled("mark_read")) is not None:
        mark_read = _mark_read(section, "handlers.mark_read")
    if (section := enabled("forward")) is not None:
        forward = _forward(section, "handlers.forward", agents, env)
    if (section := enabled("auto_reply")) is not None:
        # The numbers messages are forwarded to are agents too: no auto-reply to them.
        every_agent = forward.agents if forward is not None else agents
        auto_reply = _auto_reply(section, "handlers.auto_reply", every_agent)
    if (section := enabled("status_tracking")) is not None:
        status_tracking = _status_tracking(section, "handlers.status_tracking")
    return Config(data, agents, mark_read, auto_reply, forward, status_tracking)


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read ``WABAHOOKS_CONFIG`` (default ``wabahooks.toml``; absent is fine unless named)."""
    env = os.environ if env is None else env
    named = env.get("WABAHOOKS_CONFIG", "").strip()
    path = Path(named or DEFAULT_CONFIG_FILE)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("WABAHOOKS_CONFIG", f"{path} is not valid TOML: {exc}") from None
    elif named:
        raise ConfigError("WABAHOOKS_CONFIG", f"names {str(path)!r}, which does not exist")
    try:
        return parse_config(raw, env)
    except ConfigError as exc:
        source = str(path) if path.exists() else "environment"
        raise ConfigError(exc.key, exc.problem, source=source) from None
