"""``[policy]``: opt-out words, handover triggers, the 24-hour window's margins.

The policy runs when the ``[policy]`` table is present (``enabled = false`` turns it
off again). Every key has a default; every problem raises :class:`ConfigError` naming
the key. Agent numbers are the shared ``[agents] numbers`` plus every
``[[handlers.forward.whatsapp]]`` number (as for the built-ins).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.sections import (
    ConfigError,
    only_known,
    phone_numbers,
    strings_at,
    table_at,
    value_at,
)

__all__ = ["HandoverConfig", "OptOutConfig", "PolicyConfig", "WindowConfig", "policy_config"]

#: Whole-message opt-out words (compared case- and space-insensitively): English, Spanish,
#: Portuguese, French, German, Italian, Hindi (romanised).
STOP_WORDS = (
    "stop", "unsubscribe", "stop all", "cancel", "end", "quit", "opt out", "optout",
    "baja", "parar", "alto", "cancelar", "sair", "arrêt", "arret", "désabonner",
    "abmelden", "stopp", "basta", "disiscriviti", "band karo",
)  # fmt: skip
START_WORDS = (
    "start", "unstop", "subscribe", "resume",
    "alta", "reanudar", "voltar", "reprendre", "anmelden", "iscriviti", "shuru karo",
)  # fmt: skip
STOP_REPLY = "You have been unsubscribed and will get no more messages. Reply START to undo."
START_REPLY = "You are subscribed again. Reply STOP to unsubscribe."
NUDGE = (
    "wabahooks: your 24-hour WhatsApp window closes soon. Send any message to this number "
    "to keep receiving forwarded customer messages."
)
DAY = 24 * 3600


def _words(
    section: Mapping[str, Any], key: str, name: str, default: tuple[str, ...]
) -> frozenset[str]:
    values = strings_at(section, key, name)
    return frozenset(fold(w) for w in (default if values is None else values))


def fold(text: str) -> str:
    """A whole message as the word lists compare it: case-folded, spaces collapsed."""
    return " ".join(text.casefold().split())


def _seconds(section: Mapping[str, Any], key: str, name: str, default: int, top: int) -> int:
    value = value_at(section, key, name, int, default)
    if not 0 <= value <= top:
        raise ConfigError(f"{key}.{name}", f"must be 0 to {top} seconds, got {value}")
    return value


@dataclass(frozen=True)
class OptOutConfig:
    """``[policy.optout]``."""

    enabled: bool = True
    stop_words: frozenset[str] = frozenset(STOP_WORDS)
    start_words: frozenset[str] = frozenset(START_WORDS)
    stop_reply: str = STOP_REPLY
    start_reply: str = START_REPLY


@dataclass(frozen=True)
class HandoverConfig:
    """``[policy.handover]``."""

    keywords: frozenset[str] = frozenset({"agent", "human"})
    payloads: frozenset[str] = frozenset()
    idle: int = 1800
    detect_inbox: bool = True
    on_notice: str = ""
    off_notice: str = ""
    done_command: str = "#done"


@dataclass(frozen=True)
class WindowConfig:
    """``[policy.window]``."""

    margin: int = 300
    nudge_margin: int = 3600
    nudge: str = NUDGE


@dataclass(frozen=True)
class PolicyConfig:
    """The whole ``[policy]`` table, and the agent numbers it applies to."""

    agents: frozenset[str] = frozenset()
    optout: OptOutConfig = OptOutConfig()
    handover: HandoverConfig = HandoverConfig()
    window: WindowConfig = WindowConfig()


def _optout(section: Mapping[str, Any], key: str) -> OptOutConfig:
    only_known(section, key, ("enabled", "stop_words", "start_words", "stop_reply", "start_reply"))
    stop = _words(section, key, "stop_words", STOP_WORDS)
    start = _words(section, key, "start_words", START_WORDS)
    if both := sorted(stop & start):
        raise ConfigError(f"{key}.start_words", f"also stop words: {', '.join(both)}")
    return OptOutConfig(
        value_at(section, key, "enabled", bool, True),
        stop,
        start,
        value_at(section, key, "stop_reply", str, STOP_REPLY),
        value_at(section, key, "start_reply", str, START_REPLY),
    )


def _handover(section: Mapping[str, Any], key: str) -> HandoverConfig:
    names = (
        "keywords",
        "payloads",
        "idle",
        "detect_inbox",
        "on_notice",
        "off_notice",
        "done_command",
    )
    only_known(section, key, names)
    payloads = strings_at(section, key, "payloads") or ()
    done = value_at(section, key, "done_command", str, "#done").strip()
    if not done.startswith("#") or len(done) < 2:
        raise ConfigError(f"{key}.done_command", f"must start with '#', got {done!r}")
    keywords = strings_at(section, key, "keywords")
    return HandoverConfig(
        frozenset(fold(w) for w in (("agent", "human") if keywords is None else keywords)),
        frozenset(payloads),
        _seconds(section, key, "idle", 1800, 7 * DAY),
        value_at(section, key, "detect_inbox", bool, True),
        value_at(section, key, "on_notice", str, ""),
        value_at(section, key, "off_notice", str, ""),
        fold(done),
    )


def _window(section: Mapping[str, Any], key: str) -> WindowConfig:
    only_known(section, key, ("margin", "nudge_margin", "nudge"))
    margin = _seconds(section, key, "margin", 300, DAY // 2)
    nudge_margin = _seconds(section, key, "nudge_margin", 3600, DAY - 60)
    nudge = value_at(section, key, "nudge", str, NUDGE)
    if not nudge.strip():
        raise ConfigError(f"{key}.nudge", "must not be empty (the agent must be told)")
    return WindowConfig(margin, nudge_margin, nudge)


def _agents(raw: Mapping[str, Any]) -> frozenset[str]:
    """``[agents] numbers`` and the forwarding numbers (validated by ``workers.config``)."""
    table = raw.get("agents", {})
    numbers = (
        list(strings_at(table, "agents", "numbers") or ()) if isinstance(table, Mapping) else []
    )
    handlers = raw.get("handlers", {})
    forward = handlers.get("forward", {}) if isinstance(handlers, Mapping) else {}
    targets = forward.get("whatsapp", []) if isinstance(forward, Mapping) else []
    for target in targets if isinstance(targets, list) else []:
        if isinstance(target, Mapping) and isinstance(target.get("to"), str):
            numbers.append(target["to"])
    return phone_numbers(tuple(numbers), "agents.numbers")


def policy_config(raw: Mapping[str, Any]) -> PolicyConfig | None:
    """Return the policy of a whole configuration (``raw``), or None when it is off."""
    if "policy" not in raw:
        return None
    section = table_at(raw["policy"], "policy")
    only_known(section, "policy", ("enabled", "optout", "handover", "window"))
    if not value_at(section, "policy", "enabled", bool, True):
        return None
    agents = _agents(raw)
    return PolicyConfig(
        agents,
        _optout(table_at(section.get("optout", {}), "policy.optout"), "policy.optout"),
        _handover(table_at(section.get("handover", {}), "policy.handover"), "policy.handover"),
        _window(table_at(section.get("window", {}), "policy.window"), "policy.window"),
    )
