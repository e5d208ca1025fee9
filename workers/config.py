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
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.settings import parse_bool
from workers.replyrules import AutoReplyConfig, BusinessHours, Rule, auto_reply_section
from workers.sections import (
    ConfigError,
    ForwardConfig,
    HttpTarget,
    MarkReadConfig,
    NumberTarget,
    StatusTrackingConfig,
    forward_section,
    mark_read_section,
    only_known,
    phone_numbers,
    status_tracking_section,
    strings_at,
    table_at,
    value_at,
)

__all__ = [
    "BUILTINS",
    "DEFAULT_CONFIG_FILE",
    "TOP_LEVEL_TABLES",
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
#: The file's top-level tables: every one we read, and nothing else is accepted (a misspelt
#: ``[polcy]`` would silently turn opt-out off). A feature that reads a new top-level table
#: adds its name here; the tables' own keys are checked by their readers (``only_known``).
TOP_LEVEL_TABLES = ("agents", "handlers", "policy")
#: Environment variable → the dotted key it overrides.
ENV_OVERRIDES = {
    "WABAHOOKS_AGENT_NUMBERS": "agents.numbers",
    "WABAHOOKS_MARK_READ_MODE": "handlers.mark_read.mode",
    "WABAHOOKS_BUSINESS_TIMEZONE": "handlers.auto_reply.hours.timezone",
    "WABAHOOKS_STATUS_RETENTION": "handlers.status_tracking.retention",
    "WABAHOOKS_FORWARD_ALLOW_PRIVATE": "handlers.forward.allow_private_targets",
}


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
        try:
            return parse_bool(raw)
        except ValueError as exc:
            raise ConfigError(name, str(exc)) from None
    return raw


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate parsed TOML (``env`` overrides applied) into a :class:`Config`."""
    env = os.environ if env is None else env
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    only_known(data, "", TOP_LEVEL_TABLES, noun="table")
    handlers = table_at(data.setdefault("handlers", {}), "handlers")
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
    agents_table = table_at(data.get("agents", {}), "agents")
    only_known(agents_table, "agents", ("numbers",))
    agents = phone_numbers(strings_at(agents_table, "agents", "numbers"), "agents.numbers")

    def enabled(name: str) -> Mapping[str, Any] | None:
        section = table_at(handlers.get(name, {}), f"handlers.{name}")
        on = value_at(section, f"handlers.{name}", "enabled", bool, True)
        return section if name in present and (on or chosen) else None

    mark_read = auto_reply = forward = status_tracking = None
    if (section := enabled("mark_read")) is not None:
        mark_read = mark_read_section(section, "handlers.mark_read")
    if (section := enabled("forward")) is not None:
        forward = forward_section(section, "handlers.forward", agents, env)
    if (section := enabled("auto_reply")) is not None:
        # The numbers messages are forwarded to are agents too: no auto-reply to them.
        every_agent = forward.agents if forward is not None else agents
        auto_reply = auto_reply_section(section, "handlers.auto_reply", every_agent)
    if (section := enabled("status_tracking")) is not None:
        status_tracking = status_tracking_section(section, "handlers.status_tracking")
    from workers.policy.config import policy_config  # [policy]: checked here, built by the runtime

    policy_config(data)
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
