"""Logging set-up: structlog, configured once at the entry point.

JSON lines on stdout (console rendering when stdout is a terminal and the format
is ``auto``). Standard-library loggers (uvicorn, rq) go through the same
processors, so every line has the same shape. Fields that must never be logged
(secrets, signatures, raw bodies) are dropped by :func:`redact`, whoever logs them.

WhatsApp message ids (``wamid.…``) are base64 of data that includes the contact's number, so
:class:`IdHasher` replaces every one, in any field of any line (``event_key``, ``message_id``,
RQ's job descriptions, tracebacks), by ``wamid~`` and 16 hex digits of a keyed BLAKE2b (a MAC,
a few times cheaper than HMAC-SHA256 on every log line) keyed from ``WABAHOOKS_LOG_KEY`` (else
the first ``WABA_WEBHOOK_SECRET``): the same id gives the same
token in the receiver's and the workers' lines, and nobody without the key can enumerate
phone numbers to reverse it (a plain hash could be). ``wabahooks log-id ID`` prints the token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
import structlog

from service.settings import parse_secrets

__all__ = ["IdHasher", "configure_logging", "id_key", "mask_phone", "redact"]

_FORBIDDEN = frozenset(
    {"secret", "secrets", "signature", "body", "raw_body", "api_key", "authorization"}
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def mask_phone(number: str | None) -> str | None:
    """Return ``number`` with all but its last 4 characters masked, for logs."""
    if not number:
        return number
    return "*" * max(len(number) - 4, 0) + number[-4:]


def redact(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop fields that must never reach a log line."""
    for key in _FORBIDDEN.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


# base64 (standard and URL-safe alphabets) after the prefix WhatsApp gives every message id.
_WAMID = re.compile(r"wamid\.[A-Za-z0-9+/=_-]+")
_KEY_CONTEXT = b"wabahooks log ids v1"
_CONTAINERS = (list, tuple, dict)  # a tuple: isinstance() checks it faster than a union


def id_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """Return the key ids are hashed with in logs: from ``WABAHOOKS_LOG_KEY``, else the first
    ``WABA_WEBHOOK_SECRET`` (a secret every process already has); None if neither is set."""
    env = os.environ if env is None else env
    configured = env.get("WABAHOOKS_LOG_KEY", "").strip() or next(
        iter(parse_secrets(env.get("WABA_WEBHOOK_SECRET", ""))), ""
    )
    if not configured:
        return None
    # A key of its own, derived: a log token never helps anyone guess the webhook secret.
    return hmac.new(configured.encode("utf-8"), _KEY_CONTEXT, hashlib.sha256).digest()


class IdHasher:
    """A structlog processor: every ``wamid.…`` in any string field becomes ``wamid~<hmac>``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, message_id: str) -> str:
        """Return what ``message_id`` (``wamid.…``) looks like in the logs."""
        digest = hashlib.blake2b(message_id.encode("utf-8"), key=self._key, digest_size=8)
        return "wamid~" + digest.hexdigest()

    def _hash(self, match: re.Match[str]) -> str:
        return self.token(match.group())

    def scrub(self, value: Any) -> Any:
        """Return ``value`` with every message id in it replaced by its token."""
        if isinstance(value, str):
            return _WAMID.sub(self._hash, value) if "wamid." in value else value
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        if isinstance(value, dict):
            return {key: self.scrub(item) for key, item in value.items()}
        return value

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # On every log line: the common case (a str without an id) costs a type check and a
        # substring search.
        for key, value in event_dict.items():
            if type(value) is str:
                if "wamid." in value:
                    event_dict[key] = _WAMID.sub(self._hash, value)
            elif isinstance(value, _CONTAINERS):
                event_dict[key] = self.scrub(value)
        return event_dict


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and the standard library once, for this process.

    Message ids are hashed with :func:`id_key`'s key; without one (neither variable set), with
    a random key of this process's own, which a warning line says."""
    key = id_key()
    hasher = IdHasher(key or secrets.token_bytes(32))
    renderer: Any
    factory: Any
    text_renderer: Any  # for standard-library records, whose formatter must return str
    if fmt == "console" or (fmt == "auto" and sys.stdout.isatty()):
        renderer = text_renderer = structlog.dev.ConsoleRenderer()
        factory = structlog.PrintLoggerFactory(sys.stdout)
    else:
        # orjson renders a line several times faster than json; bytes go straight out.
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        text_renderer = structlog.processors.JSONRenderer()
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    numeric = _LEVELS[level]
    structlog.configure(
        # Ids are hashed last, so that tracebacks (format_exc_info) are covered too.
        processors=[*shared, structlog.processors.format_exc_info, hasher, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                hasher,
                text_renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "rq.worker", "rq.queue", "rq.job"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    if numeric > logging.DEBUG:
        # httpx logs every request at INFO: a line per portal call, and 5% of a
        # worker's time. Handlers and the portal client log what matters themselves.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if key is None:
        structlog.get_logger("wabahooks.logs").warning(
            "log_key_missing",
            detail="neither WABAHOOKS_LOG_KEY nor WABA_WEBHOOK_SECRET is set: message ids are "
            "hashed with a random key, so this process's tokens match no other process's",
        )
