"""Recording each event's journey into the archive (``service.archive`` has the layout).

A :class:`Journey` follows one execution of one job: it is the :class:`~workers.dispatch.Metrics`
the dispatch reports each handler's outcome to (passing every call on to the worker's
own metrics), and it sees the event's ledger. When the execution ends, the job runner
adds the entry to its ending (:meth:`Archive.record`), which goes to Redis inside the script that
ends the job (``workers/lua/finish.lua``), in the same group commit: no extra round
trip, and no event ends without its record (nor the other way round).

An entry (JSON): ``id`` (job id), ``event_key``, ``kind``, ``queue``, ``received_at`` and
``ended_at`` (epoch seconds), ``attempt``, ``outcome`` (``done``, ``failed``,
``retrying``), ``reason`` (why it failed or is retried), ``contact`` (masked) and
``contact_token`` (the index's keyed hash), ``handlers`` (``name``, ``outcome``: ``done``,
``stop``, ``skipped``, ``failed``; ``reason``, ``ms``), ``calls`` (the ledger's records:
``handler``, ``step`` such as ``send_text#1``, ``state``, ``result``), ``replay`` (for a
replayed event: ``scope``, ``of``, ``handlers``) and ``envelope`` (what ``wabahooks replay``
runs again).

The job side of a replay is here too (:func:`replayed_registrations`): a job written by
``wabahooks replay`` (``workers.replay``) may run only some handlers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from service.archive import ArchiveKeys, ArchiveSettings, contact_token, encode_entry
from service.logs import mask_phone
from service.portal.validation import check_phone
from workers.dispatch import NO_METRICS, HandlerFailed, Metrics
from workers.ledger import RedisLedger
from workers.router import Registration
from workers.rqstate import Ending

__all__ = [
    "REPLAY_ARG",
    "Archive",
    "Journey",
    "contact_of",
    "epoch",
    "replayed_registrations",
]

_HANDLER_OUTCOMES = {"ok": "done", "stop": "stop", "skipped": "skipped"}


def epoch(stamp: object) -> float:
    """Seconds since the epoch of an RQ/ISO timestamp (``received_at``); now if unreadable."""
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    return time.time()


def contact_of(kwargs: Mapping[str, Any]) -> str | None:
    """The contact's number of a job's event: a message's sender, a status's recipient,
    (a status without one) the number its message id encodes, or a flush's or timeout's
    contact, so that ``forget`` finds it."""
    envelope = kwargs.get("envelope")
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        # A conversation's flush or step timeout (no envelope): its ``conversation`` is the
        # number (its ledger holds the burst's messages, which forget must find).
        conversation = kwargs.get("conversation")
        if isinstance(conversation, str) and check_phone(conversation) is None:
            return conversation
        return None
    for name in ("from", "recipient", "recipient_id"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    message_id = data.get("messageId")
    if isinstance(message_id, str):
        # Imported here: rare (a status without its recipient), and the CLI module is heavy.
        from service.cli.forget import wamid_phone

        runs = sorted(wamid_phone(message_id), key=len, reverse=True)
        return next((run for run in runs if check_phone(run) is None), None)
    return None


#: The job keyword argument that marks a replayed event.
REPLAY_ARG = "replay"


def replayed_registrations(
    registrations: list[Registration], kwargs: Mapping[str, Any]
) -> list[Registration]:
    """The registrations a job runs: all, unless it is a replay limited to some handlers
    (by handler name, ``router:function``, or router name)."""
    replay = kwargs.get(REPLAY_ARG)
    names = replay.get("handlers") if isinstance(replay, dict) else None
    if not names:
        return registrations
    wanted = set(names)
    return [r for r in registrations if r.name in wanted or r.router in wanted]


class Journey:
    """One execution's handler outcomes and ledger, as the dispatch reports them."""

    def __init__(self, metrics: Metrics = NO_METRICS) -> None:
        self._metrics = metrics
        self.handlers: list[dict[str, Any]] = []
        self.ledger: RedisLedger | None = None

    # -- Metrics, passed on ---------------------------------------------------------------

    def event(self, kind: str, outcome: str) -> None:
        self._metrics.event(kind, outcome)

    def unhandled(self, kind: str) -> None:
        self._metrics.unhandled(kind)

    def handler(self, handler: str, outcome: str, seconds: float | None = None) -> None:
        self._metrics.handler(handler, outcome, seconds)
        record: dict[str, Any] = {"name": handler, "outcome": _HANDLER_OUTCOMES.get(outcome)}
        if record["outcome"] is None:  # retry or permanent: the reason comes with the ending
            record.update(outcome="failed", retryable=outcome == "retry")
        if outcome == "skipped":
            record["reason"] = "done in an earlier attempt"
        if seconds is not None:
            record["ms"] = round(seconds * 1000, 2)
        self.handlers.append(record)

    def attach(self, ledger: RedisLedger) -> None:
        """The event's ledger, whose records become the entry's ``calls``."""
        self.ledger = ledger

    def calls(self) -> list[dict[str, Any]]:
        """The ledger's step records, by handler (``s:<handler>:<step>`` fields)."""
        if self.ledger is None:
            return []
        names = sorted({h["name"] for h in self.handlers}, key=len, reverse=True)
        calls = []
        for field, raw in sorted(self.ledger.records().items()):
            if not field.startswith("s:"):
                continue
            rest = field[2:]
            handler = next((n for n in names if rest.startswith(n + ":")), "")
            step = rest[len(handler) + 1 :] if handler else rest
            try:
                record = json.loads(raw)
            except ValueError:
                record = {"state": "unreadable"}
            calls.append(
                {
                    "handler": handler,
                    "step": step,
                    "state": record.get("state"),
                    "result": record.get("result"),
                }
            )
        return calls


@dataclass(frozen=True)
class Archive:
    """The workers' side of the archive: builds entries for the job's ending script."""

    settings: ArchiveSettings
    keys: ArchiveKeys

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> Archive | None:
        """The archive if ``WABAHOOKS_ARCHIVE`` is on, else None (raise ConfigError)."""
        settings = ArchiveSettings.from_env(env)
        return cls(settings, ArchiveKeys(prefix)) if settings.enabled else None

    def record(self, ending: Ending, kwargs: Mapping[str, Any], journey: Journey) -> Ending:
        """``ending`` with the event's archive entry, to be written with it (a hand-back,
        which is not an attempt, records nothing)."""
        if ending.outcome == "handback":
            return ending
        state = {"done": "done", "retry": "retrying"}.get(ending.outcome, "failed")
        reason = ending.error
        if state == "failed":
            # The traceback's last line, without the dispatch's wrapper type: the handler's words.
            lines = ending.error.strip().splitlines()
            reason = (
                lines[-1].removeprefix(f"{HandlerFailed.__module__}.HandlerFailed: ")
                if lines
                else ""
            )
        spec = self.entry(
            job_id=ending.job.id,
            queue=ending.job.origin,
            kwargs=kwargs,
            attempt=ending.job.attempt,
            outcome=state,
            journey=journey,
            reason=reason,
        )
        return replace(ending, archive=spec)

    def entry(
        self,
        *,
        job_id: str,
        queue: str,
        kwargs: Mapping[str, Any],
        attempt: int,
        outcome: str,
        journey: Journey,
        reason: str = "",
    ) -> bytes:
        """The archive spec for ``workers/lua/archive.lua`` (see there) of one ending."""
        assert self.settings.key is not None  # checked by ArchiveSettings.from_env
        received = epoch(kwargs.get("received_at"))
        phone = contact_of(kwargs)
        token = contact_token(phone, self.settings.key) if phone else ""
        handlers = journey.handlers
        if reason and handlers and handlers[-1]["outcome"] == "failed":
            handlers[-1]["reason"] = reason
        entry = {
            "v": 1,
            "id": job_id,
            "event_key": kwargs.get("event_key"),
            "kind": kwargs.get("kind"),
            "queue": queue,
            "received_at": received,
            "ended_at": time.time(),
            "attempt": attempt,
            "outcome": outcome,
            "reason": reason or None,
            "contact": mask_phone(phone),
            "contact_token": token or None,
            "handlers": handlers,
            "calls": journey.calls(),
            "replay": kwargs.get("replay"),
            "envelope": kwargs.get("envelope"),
        }
        try:
            raw = orjson.dumps(entry, default=repr)
        except TypeError:  # what orjson refuses (lone surrogates, huge integers), as jobs do
            raw = json.dumps(entry, default=repr).encode("utf-8", "surrogatepass")
        contact = self.keys.contact(token) if token else ""
        fields = [
            self.keys.entry(job_id),
            self.keys.time,
            self.keys.feed,
            contact,
            f"{received:.6f}",
            str(self.settings.retention),
            job_id,
        ]
        return "\t".join(fields).encode() + b"\t" + encode_entry(raw)
