"""The job format, version 1: the contract between the receiver and the workers.

Each accepted webhook becomes one ordinary RQ job (RQ 2.12 layout), serialised
with RQ's ``JSONSerializer`` (never pickle: the payload is untrusted), on the
queue of its kind, calling :data:`JOB_FUNCTION` with keyword arguments:

============== ==========================================================
``envelope``   the verified envelope, as parsed JSON
``event_key``  its identity (``message:<messageId>``, ``status:<id>:<status>``,
               ``test:<testId>``, ``other:<sha256>``)
``kind``       ``message`` | ``status`` | ``test`` | ``other``
``conversation`` the contact's number (messages), the message id (statuses), or None
``received_at`` ISO-8601 UTC time the receiver accepted it
``version``    ``1``
``traceparent`` optional: the W3C trace context of the webhook request (``service.tracing``),
               only while traces are on; a job without it starts a trace of its own
============== ==========================================================

The receiver writes the job hash itself (inside the intake script, see
``service.intake``) rather than through ``Queue.enqueue``, so that claim and job
are one atomic step. ``tests/service/test_jobs.py`` checks the result against a
job built by RQ's own API, so an RQ upgrade that changes the layout fails loudly.

The workers write two more kinds on the messages queue, ``flush`` and ``timeout``
(conversations: ``workers.convredis``), as format version 2, which a worker reading only
version 1 refuses into the failed registry ("upgrade the workers") rather than guessing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from service.identity import Classified, Kind
from service.keys import Keys
from service.settings import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL

__all__ = [
    "FORMAT_VERSION",
    "JOB_FUNCTION",
    "QUEUE_NAMES",
    "JobSpec",
    "build_job",
    "queue_name",
]

FORMAT_VERSION = 1
JOB_FUNCTION = "workers.entry.process_event"
#: Queue suffix per kind; the full name is the configured prefix + suffix.
QUEUE_NAMES: dict[Kind, str] = {
    Kind.MESSAGE: "messages",
    Kind.STATUS: "statuses",
    Kind.TEST: "other",
    Kind.OTHER: "other",
}
_RQ_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _dumps(value: Any) -> bytes:
    """JSON bytes that RQ's ``JSONSerializer`` loads: orjson, else json for what orjson
    refuses (lone surrogates, integers beyond 64 bits; both legal in a signed body)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode("utf-8")


def queue_name(prefix: str, kind: Kind) -> str:
    """Return the RQ queue name events of ``kind`` go to."""
    return Keys(prefix).queue(QUEUE_NAMES[kind])


@dataclass(frozen=True, slots=True)
class JobSpec:
    """An RQ job ready to be written by the intake script (which adds RQ's fixed fields)."""

    job_id: str
    queue: str
    #: RQ's ``data`` field: the JSON-serialised call, uncompressed (see :func:`build_job`).
    data: bytes
    description: str
    #: ``created_at`` and ``enqueued_at``, in RQ's timestamp format.
    created_at: str
    #: Whole seconds since the epoch, the deferred registry's score.
    timestamp: int
    timeout: int
    #: RQ's ``result_ttl`` and ``failure_ttl``: seconds a finished / failed job is kept.
    #: In the job itself, so every RQ path that ends it (the worker, the maintenance of
    #: abandoned jobs) applies them.
    result_ttl: int = DEFAULT_RESULT_TTL
    failure_ttl: int = DEFAULT_FAILURE_TTL


def build_job(
    envelope: Any,
    classified: Classified,
    *,
    queue_prefix: str,
    timeout: int,
    result_ttl: int = DEFAULT_RESULT_TTL,
    failure_ttl: int = DEFAULT_FAILURE_TTL,
    now: datetime | None = None,
    traceparent: str | None = None,
    replay: dict[str, Any] | None = None,
) -> JobSpec:
    """Return the RQ job (format version 1) carrying a verified ``envelope`` (and the trace
    context ``traceparent``, if given).

    ``replay``: for ``wabahooks replay`` only, the optional ``replay`` keyword argument
    (``scope``, ``of``: the archived job, ``handlers``: the only ones to run, or None)."""
    now = now or datetime.now(UTC)
    stamp = now.strftime(_RQ_TIME_FORMAT)
    kwargs = {
        "envelope": envelope,
        "event_key": classified.event_key,
        "kind": classified.kind.value,
        "conversation": classified.conversation,
        "received_at": stamp,
        "version": FORMAT_VERSION,
    }
    if traceparent is not None:
        kwargs["traceparent"] = traceparent
    if replay is not None:
        kwargs["replay"] = replay
    # RQ's job data: (func_name, instance, args, kwargs) through the serializer. RQ itself
    # zlib-compresses it, and its Job.restore() reads uncompressed data as is (a JSON array
    # is never a valid zlib stream); compressing cost 15-55 us a request on the hot path to
    # save a few hundred bytes of a job that lives minutes (issue 10 item 9).
    data = _dumps([JOB_FUNCTION, None, [], kwargs])
    return JobSpec(
        job_id=os.urandom(16).hex(),
        queue=queue_name(queue_prefix, classified.kind),
        data=data,
        # What RQ shows and (if enabled) logs: the event identity, never a phone number.
        description=f"{classified.kind.value} {classified.event_key}",
        created_at=stamp,
        timestamp=int(now.timestamp()),
        timeout=timeout,
        result_ttl=result_ttl,
        failure_ttl=failure_ttl,
    )
