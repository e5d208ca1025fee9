"""The worker entry function that every job of format version 1 calls.

``service.jobs.JOB_FUNCTION`` names it; the receiver writes jobs that call it
with the keyword arguments documented there (and in the README).
"""

from __future__ import annotations

from typing import Any

import structlog

from service.jobs import FORMAT_VERSION

__all__ = ["process_event"]

log = structlog.get_logger("wabahooks.worker")


class UnsupportedJobFormat(Exception):
    """The job was written by a receiver speaking a newer job format."""


def process_event(
    envelope: Any,
    *,
    event_key: str,
    kind: str,
    conversation: str | None,
    received_at: str,
    version: int,
) -> None:
    """Process one received event.

    Handler dispatch is not built yet (issue 4): for now the event is logged
    and acknowledged, as an event that no handler matches will be.
    """
    if version > FORMAT_VERSION:
        raise UnsupportedJobFormat(
            f"job format {version} is newer than this worker's {FORMAT_VERSION}: "
            "upgrade the workers"
        )
    log.info("event.unhandled", event_key=event_key, kind=kind, received_at=received_at)
