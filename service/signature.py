"""Webhook signatures: ``X-Webhook-Signature`` is hex HMAC-SHA256 of the body.

The portal is a Node.js service: it signs ``JSON.stringify(payload)``. We verify
the raw bytes first; when that fails and the body parses, we verify the bytes
``JSON.stringify`` would have produced for the parsed value, so a body that was
re-formatted in transit (pretty-printed, escaped differently) still verifies.

Pure functions: bytes in, values out, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from service.settings import DEFAULT_CANONICAL_MAX_BYTES

__all__ = [
    "InvalidJSON",
    "js_stringify",
    "parse_json",
    "sign",
    "verify",
    "verify_raw",
    "verify_reformatted",
]

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
# What JSON.stringify escapes: quote, backslash, C0 controls and lone surrogates
# (ES2019 "well-formed JSON.stringify"). Python's json decoder joins escaped
# surrogate pairs into one code point, so any surrogate left in a str is lone.
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
_MAX_ARRAY_INDEX = 2**32 - 2
_HEX_SIGNATURE = re.compile("[0-9a-f]{64}")


class InvalidJSON(ValueError):
    """The body is not JSON as ``JSON.parse`` reads it (UTF-8, no NaN/Infinity)."""


def _reject_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not valid JSON")


# One decoder for the process: json.loads(..., parse_constant=...) builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """Parse ``body`` as ``JSON.parse`` would accept it; raise :class:`InvalidJSON` if not."""
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except InvalidJSON:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidJSON(str(exc)) from exc


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _js_string(value: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"'


def _js_number(value: int | float) -> str:
    """Format a number as JavaScript's ``Number.prototype.toString`` does."""
    try:
        number = float(value)  # JS has only doubles: big ints round here, as in JSON.parse
    except OverflowError:  # an integer literal beyond the double range parses as Infinity
        return "null"
    if number != number or number in (float("inf"), float("-inf")):
        return "null"
    if number == 0:
        return "0"  # also -0
    # repr() gives the shortest round-tripping digits, as ECMAScript requires.
    sign, digit_tuple, exponent = Decimal(repr(number)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # value = 0.digits × 10^n  (n as in ECMA-262 Number::toString)
    n = exponent + len(digit_tuple)
    k = len(digits)
    prefix = "-" if sign else ""
    if k <= n <= 21:
        return prefix + digits + "0" * (n - k)
    if 0 < n <= 21:
        return prefix + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return prefix + "0." + "0" * (-n) + digits
    exp = n - 1
    exp_text = f"e+{exp}" if exp >= 0 else f"e-{-exp}"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return prefix + mantissa + exp_text


def _is_array_index(key: str) -> bool:
    return (
        key.isdigit()
        and key.isascii()
        and (key == "0" or key[0] != "0")
        and (int(key) <= _MAX_ARRAY_INDEX)
    )


def _js_keys(obj: dict[str, Any]) -> list[str]:
    """Own keys in JavaScript enumeration order: array indices ascending, then the rest."""
    indices = sorted((k for k in obj if _is_array_index(k)), key=int)
    if not indices:
        return list(obj)
    return indices + [k for k in obj if not _is_array_index(k)]


def _stringify(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_js_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int | float):
        out.append(_js_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(_js_keys(value)):
            if i:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _stringify(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _stringify(item, out)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def js_stringify(value: Any) -> bytes:
    """Return the UTF-8 bytes of ``JSON.stringify(value)`` for a parsed JSON value."""
    out: list[str] = []
    _stringify(value, out)
    return "".join(out).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """Return the hex HMAC-SHA256 of ``body`` keyed with ``secret`` (the portal's scheme)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _matches(body: bytes, expected: bytes, secrets: Sequence[str]) -> bool:
    ok = False
    for secret in secrets:  # every secret, no early exit: timing does not tell which matched
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(digest.encode("ascii"), expected)
    return ok


def _normalise_header(header: str | None) -> bytes | None:
    if header is None:
        return None
    header = header.strip().lower()
    if not _HEX_SIGNATURE.fullmatch(header):
        return None
    return header.encode("ascii")


def verify_raw(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """Return whether ``header`` is a valid signature of ``body``'s exact bytes (the fast path:
    the portal normally sends exactly the bytes it signed)."""
    expected = _normalise_header(header)
    return expected is not None and _matches(body, expected, secrets)


def verify_reformatted(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """Return whether ``header`` signs the ``JSON.stringify`` form of ``body`` parsed (the slow
    path, for a body re-formatted in transit): up to ~1.5 µs a byte of pure Python, so callers
    bound who can make them spend it (a thread would not help: the GIL stays held)."""
    expected = _normalise_header(header)
    if expected is None:
        return False
    try:
        canonical = js_stringify(parse_json(body))
    except InvalidJSON:
        return False
    return canonical != body and _matches(canonical, expected, secrets)


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    canonical_max: int = DEFAULT_CANONICAL_MAX_BYTES,
) -> bool:
    """Return whether ``header`` is a valid signature of ``body`` under any of ``secrets``.

    The raw bytes are tried first; only when they fail and the body is at most
    ``canonical_max`` bytes is its ``JSON.stringify`` form tried (:func:`verify_reformatted`).
    """
    if verify_raw(body, header, secrets):
        return True
    return len(body) <= canonical_max and verify_reformatted(body, header, secrets)
