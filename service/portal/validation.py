"""The portal's request rules, shared by the client (checks before sending) and the simulator.

Pure functions: each returns ``None`` when the value is acceptable, or a :class:`Problem`
carrying the portal's documented error text (spec §6) and a one-sentence detail saying
what was wrong and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CATEGORIES",
    "CONVERSATIONS_MAX_LIMIT",
    "MAX_TEXT_LENGTH",
    "MESSAGES_MAX_LIMIT",
    "WEBHOOK_EVENTS",
    "Problem",
    "check_category",
    "check_components",
    "check_limit",
    "check_phone",
    "check_template",
    "check_text",
    "check_webhook_events",
    "fit_text",
    "utf16_length",
    "variable_count",
]

INVALID_PHONE = "Invalid phone number format"
INVALID_PARAMETER = "Invalid parameter"
MAX_TEXT_LENGTH = 4096
CONVERSATIONS_MAX_LIMIT = 50
MESSAGES_MAX_LIMIT = 100
CATEGORIES = frozenset({"UTILITY", "MARKETING", "AUTHENTICATION"})
WEBHOOK_EVENTS = frozenset({"messages", "statuses"})
HEADER_FORMATS = frozenset({"TEXT", "IMAGE", "VIDEO", "DOCUMENT"})
BUTTON_TYPES = frozenset({"QUICK_REPLY", "URL", "PHONE_NUMBER"})

# E.164 allows at most 15 digits; the shortest real numbers with a country code have 8.
_PHONE = re.compile(r"[1-9][0-9]{7,14}")
_VARIABLE = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a request is refused: the portal's ``error`` text and a ``detail`` for humans."""

    error: str
    detail: str


def utf16_length(text: str) -> int:
    """Return the length of ``text`` as JavaScript counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def fit_text(text: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """Return ``text`` cut to at most ``limit`` UTF-16 code units, the portal's text limit by
    default, never splitting a surrogate pair (an emoji is two units: kept whole or dropped)."""
    if len(text) <= limit and (text.isascii() or utf16_length(text) <= limit):
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


def check_phone(number: object) -> Problem | None:
    """Digits only, with the country code, no ``+`` or spaces (e.g. ``919876543210``)."""
    if isinstance(number, str) and number.isascii() and _PHONE.fullmatch(number):
        return None
    return Problem(
        INVALID_PHONE,
        "a phone number must be 8 to 15 digits with the country code, no '+' or spaces "
        "(e.g. 919876543210)",
    )


def check_text(message: object) -> Problem | None:
    """1 to 4096 characters, counted in UTF-16 code units as the portal (JavaScript) counts."""
    if not isinstance(message, str):
        return Problem(INVALID_PARAMETER, "message must be a string")
    length = utf16_length(message)
    if not 1 <= length <= MAX_TEXT_LENGTH:
        return Problem(
            INVALID_PARAMETER,
            f"message must be 1 to {MAX_TEXT_LENGTH} characters (UTF-16 code units), got {length}",
        )
    return None


def check_limit(limit: object, maximum: int) -> Problem | None:
    """A page size from 1 to ``maximum``."""
    if isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= maximum:
        return None
    return Problem(INVALID_PARAMETER, f"limit must be a whole number from 1 to {maximum}")


def check_webhook_events(events: object) -> Problem | None:
    """A non-empty list drawn from ``messages`` and ``statuses``."""
    if (
        isinstance(events, list | tuple)
        and events
        and all(isinstance(e, str) and e in WEBHOOK_EVENTS for e in events)
    ):
        return None
    return Problem(INVALID_PARAMETER, 'webhookEvents must be ["messages"], ["statuses"] or both')


def variable_count(text: str) -> int:
    """Return how many distinct ``{{n}}`` variables ``text`` uses."""
    return len(set(_VARIABLE.findall(text)))


def _bad(detail: str) -> Problem:
    return Problem(INVALID_PARAMETER, detail)


def _check_examples(text: str, example: Any, key: str, where: str) -> Problem | None:
    count = variable_count(text)
    if not count:
        return None
    samples = example.get(key) if isinstance(example, Mapping) else None
    if key == "body_text":  # body samples are one list per example set: [["John", "ORD-1"]]
        samples = samples[0] if isinstance(samples, list) and samples else None
    if not isinstance(samples, list) or len(samples) != count:
        return _bad(
            f"{where} has {count} variable(s): add example.{key} with one sample per variable"
        )
    if not all(isinstance(s, str) and s for s in samples):
        return _bad(f"{where} example samples must be non-empty strings")
    return None


def _check_button(button: Any, index: int) -> Problem | None:
    where = f"button {index + 1}"
    if not isinstance(button, Mapping) or button.get("type") not in BUTTON_TYPES:
        return _bad(f"{where} must be an object of type QUICK_REPLY, URL or PHONE_NUMBER")
    if not isinstance(button.get("text"), str) or not button["text"]:
        return _bad(f"{where} needs a non-empty text")
    if button["type"] == "URL":
        url = button.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return _bad(f"{where} (URL) needs a url starting with https://")
        if variable_count(url):
            example = button.get("example")
            if not (isinstance(example, list) and example and isinstance(example[0], str)):
                return _bad(f"{where} (URL) uses {{{{1}}}}: add an example with a full sample URL")
    if button["type"] == "PHONE_NUMBER" and check_phone(button.get("phone_number")) is not None:
        return _bad(f"{where} (PHONE_NUMBER) needs phone_number as digits with the country code")
    return None


def _check_component(component: Any) -> Problem | None:
    kind = component.get("type") if isinstance(component, Mapping) else None
    if kind == "HEADER":
        fmt = component.get("format")
        if fmt not in HEADER_FORMATS:
            return _bad("HEADER format must be TEXT, IMAGE, VIDEO or DOCUMENT")
        if fmt != "TEXT":
            return _bad(f"only TEXT headers can be created through the API, not {fmt}")
        text = component.get("text")
        if not isinstance(text, str) or not text:
            return _bad("a TEXT HEADER needs a non-empty text")
        return _check_examples(text, component.get("example"), "header_text", "HEADER")
    if kind in ("BODY", "FOOTER"):
        text = component.get("text")
        if not isinstance(text, str) or not text:
            return _bad(f"{kind} needs a non-empty text")
        if kind == "BODY":
            return _check_examples(text, component.get("example"), "body_text", "BODY")
        return None
    if kind == "BUTTONS":
        buttons = component.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 10:
            return _bad("BUTTONS needs a list of 1 to 10 buttons")
        for i, button in enumerate(buttons):
            if problem := _check_button(button, i):
                return problem
        return None
    return _bad("each component needs a type: HEADER, BODY, FOOTER or BUTTONS")


def check_components(components: object) -> Problem | None:
    """Exactly one BODY; at most one of HEADER, FOOTER, BUTTONS; each well formed."""
    if not isinstance(components, Sequence) or isinstance(components, str) or not components:
        return _bad("components must be a non-empty list with one BODY")
    for component in components:
        if problem := _check_component(component):
            return problem
    kinds = [c["type"] for c in components]
    if kinds.count("BODY") != 1:
        return _bad("a template needs exactly one BODY component")
    if any(kinds.count(k) > 1 for k in ("HEADER", "FOOTER", "BUTTONS")):
        return _bad("a template may have at most one HEADER, FOOTER and BUTTONS component")
    return None


def check_template(
    name: object, category: object, language: object, components: object
) -> Problem | None:
    """The rules for creating a template (spec §3)."""
    if not isinstance(name, str) or not _TEMPLATE_NAME.fullmatch(name):
        return _bad("template name must be lowercase letters, digits and underscores")
    if problem := check_category(category):
        return problem
    if not isinstance(language, str) or not language:
        return _bad("language must be a language code such as en or en_US")
    return check_components(components)


def check_category(category: object) -> Problem | None:
    """One of UTILITY, MARKETING, AUTHENTICATION."""
    if isinstance(category, str) and category in CATEGORIES:
        return None
    return _bad("category must be UTILITY, MARKETING or AUTHENTICATION")
