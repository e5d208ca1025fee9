"""Logging set-up: structlog, configured once at the entry point.

JSON lines on stdout (console rendering when stdout is a terminal and the format
is ``auto``). Standard-library loggers (uvicorn, rq) go through the same
processors, so every line has the same shape. Fields that must never be logged
(secrets, signatures, raw bodies) are dropped by :func:`redact`, whoever logs them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging", "redact"]

_FORBIDDEN = frozenset(
    {"secret", "secrets", "signature", "body", "raw_body", "api_key", "authorization"}
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop fields that must never reach a log line."""
    for key in _FORBIDDEN.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and the standard library once, for this process."""
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
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, text_renderer],
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
