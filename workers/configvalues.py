"""Reading the configuration file's values: typed, with errors that name the key.

The built-ins' sections (``workers.sections``) and any other section (``[policy]``…) read
their values with these, so every problem reads the same way, e.g.
``handlers.forward.http[0].timeout: must be a number, got 'soon'``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from service import settings
from service.portal.validation import check_phone

__all__ = ["ConfigError", "only_known", "phone_numbers", "strings_at", "table_at", "value_at"]


class ConfigError(settings.ConfigError):
    """The configuration file (or an override) is wrong; ``key`` names where."""

    def __init__(self, key: str, problem: str, *, source: str = "") -> None:
        self.key = key
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")


T = TypeVar("T")


def table_at(value: Any, key: str) -> Mapping[str, Any]:
    """``value`` as a table, or a :class:`ConfigError` naming ``key``."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {type(value).__name__}")
    return value


def only_known(
    section: Mapping[str, Any], key: str, allowed: tuple[str, ...], *, noun: str = "key"
) -> None:
    """Refuse a key of ``section`` that is not ``allowed`` (a typo must not pass silently),
    with the closest known one as a suggestion. ``key`` "": the file's top level."""
    for name in section:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            where = f"{key}.{name}" if key else name
            known = f"known {noun}s: {', '.join(allowed)}"
            raise ConfigError(where, f"unknown {noun}; {hint}{known}")


_KINDS: dict[type, str] = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "an array",
}


def value_at(section: Mapping[str, Any], key: str, name: str, kind: type[T], default: T) -> T:
    """``section[name]`` of type ``kind`` (an int is a float too), else ``default``."""
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
    """Phone numbers as the portal writes them (``+`` and spaces dropped), each checked."""
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
