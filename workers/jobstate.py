"""A job as the engine holds it (:class:`StartedJob`: its hash as read when it started, and
this execution) and how it ends (:class:`Ending`: the arguments of ``workers/lua/finish.lua``,
RQ's result fields included). ``workers.rqstate`` writes them."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["Ending", "StartedJob", "exc_string"]


def _json(value: Any) -> bytes:
    """RQ's ``JSONSerializer.dumps``, for a stored return value (``repr`` if not JSON)."""
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError):
        return json.dumps(repr(value)).encode()


def exc_string(text: str) -> str:
    """Return ``text`` as RQ stores a result's ``exc_string`` (zlib, then base64)."""
    return base64.b64encode(zlib.compress(text.encode())).decode()


@dataclass(frozen=True, slots=True)
class StartedJob:
    """A job this worker started: its hash as read at the start, and this execution."""

    id: str
    execution_id: str
    #: 1-based; timeouts count, and so do kills in the quarantine slot (``workers.rqstate``).
    attempt: int
    fields: dict[bytes, bytes]
    #: Epoch seconds the execution started (Redis' clock), RQ's ``execution_started_at``.
    started: float
    #: Enqueued before Redis last restarted or failed over (``workers.epoch``): its earlier
    #: runs' intents may be lost, so its sends look in the history first.
    unproven: bool = False

    @property
    def origin(self) -> str:
        return self.fields.get(b"origin", b"").decode()

    @property
    def timeout(self) -> int:
        raw = self.fields.get(b"timeout")
        return int(raw) if raw else 180

    @property
    def result_ttl(self) -> int:
        raw = self.fields.get(b"result_ttl")
        return int(raw) if raw else 500

    @property
    def failure_ttl(self) -> int:
        raw = self.fields.get(b"failure_ttl")
        return int(raw) if raw else 31536000  # RQ's DEFAULT_FAILURE_TTL (one year)

    @property
    def suspect(self) -> bool:
        """Whether it was re-driven from a dead worker's batch and so runs in its queue's
        quarantine slot (``workers.rqstate``)."""
        return b"wh:suspect" in self.fields

    @property
    def requeued_while_held(self) -> bool:
        """Whether RQ's own tools put it back on its queue while an execution of ours held it
        (RQ's registry cleanup, ``rq requeue``: its holder is still named; every ending of ours
        that gives a job up clears it), so that execution may still be running."""
        return bool(self.fields.get(b"wh:holder"))

    @property
    def send_in_doubt(self) -> bool:
        """Whether its ledger has a send's intent with no outcome (``workers.ledger``)."""
        for key, value in self.fields.items():
            if key.startswith(b"wh:s:"):
                try:
                    if json.loads(value).get("state") == "intent":
                        return True
                except (ValueError, AttributeError):
                    continue
        return False

    @property
    def has_dependency(self) -> bool:
        return bool(self.fields.get(b"dependency_id") or self.fields.get(b"dependency_ids"))

    def call(self) -> tuple[str, list[Any], dict[str, Any]]:
        """Return the job's function name, arguments and keyword arguments (RQ's ``data``:
        JSON, compressed or not, as ``JSONSerializer`` reads it)."""
        data = self.fields.get(b"data", b"")
        try:
            data = zlib.decompress(data)
        except zlib.error:
            pass  # RQ accepts uncompressed data too
        func, _instance, args, kwargs = json.loads(data)
        return str(func), list(args), dict(kwargs)


@dataclass(frozen=True, slots=True)
class Ending:
    """How one execution ended, for :meth:`RQState.finish`."""

    job: StartedJob
    #: done | retry | failed | handback
    outcome: str
    #: The error's text (retry, failed), stored as RQ's result ``exc_string``.
    error: str = ""
    #: Seconds until a retry is due.
    delay: float = 0
    #: Seconds the job must not run again for (a send of this execution may still appear in
    #: the portal's history: ``ExecutionToken.hold``); a hand-back is then scheduled, not
    #: put at the front of its queue.
    hold: float = 0.0
    #: A finished job's return value, JSON-serialisable (None: none is stored).
    value: Any = None
    #: Sends the job's handlers completed, (the contact's sent set key, message id), written
    #: into those sets (with ``sent_ttl``) with the job's end.
    sent: tuple[tuple[str, str], ...] = ()
    sent_ttl: int = 0
    #: The event's archive entry, written with the ending (``workers.archive``; b'': none).
    archive: bytes = b""

    def args(self, *, keep_result: bool = True) -> list[str | int | float | bytes]:
        """The ending's arguments to ``workers/lua/finish.lua``. Without ``keep_result`` (a
        worker draining a full Redis, ``workers.pressure``) a finished job is deleted at once
        and a retry writes no result entry: a TTL of 0."""
        ttl = self.job.result_ttl if self.outcome == "done" else self.job.failure_ttl
        if not keep_result and self.outcome in ("done", "retry"):
            ttl = 0
        return [
            self.outcome,
            self.job.id,
            self.job.execution_id,
            self.job.origin,
            self.job.started,
            ttl,
            exc_string(self.error) if self.error else "",
            self.delay,
            "1" if self.job.has_dependency else "0",
            "" if self.value is None else base64.b64encode(_json(self.value)).decode(),
            "\n".join(f"{key}\t{message_id}" for key, message_id in self.sent),
            self.sent_ttl,
            self.archive,
            repr(self.hold),
        ]
