"""Running archived events again: as new jobs, as a dry run, or re-forwarded over HTTP.

**Real** (:func:`enqueue`): each archived event becomes a new job (format version 1, with
the ``replay`` keyword argument: ``scope``, ``of`` = the archived job id, ``handlers``),
written by the receiver's own intake script, so it queues behind its contact's unfinished
events like any event. The new job is a new ledger scope: the exactly-once ledger lives
in the job's hash (``workers.ledger``), and the new hash has no records, so the handlers'
sends happen again, once. Its claim is ``claim:replay:<scope>:<archived job id>``: running
the same replay again with the same ``scope`` finds the claim and enqueues nothing, so a
scope is replayed at most once, however often the command runs.

**Dry run** (:func:`dry_run`): the handlers run in this process on each event with a
portal that records instead of sending, an in-memory ledger, and the conversations'
stores read from Redis but written only in memory: what would be sent, and nothing is.

**Forward** (:func:`forward`): each event's envelope is POSTed to a URL as the forwarding
built-in does (``JSON.stringify`` bytes, ``X-Webhook-Signature``, ``X-Wabahooks-Event-Key``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from service.identity import Classified, classify
from service.intake import Intake
from service.jobs import build_job
from service.logs import mask_phone
from service.portal import SentMessage
from service.settings import Retention
from service.signature import js_stringify, sign
from service.typedevents import parse_event
from workers.archive import REPLAY_ARG, replayed_registrations
from workers.builtins.forward import EVENT_KEY_HEADER, SIGNATURE_HEADER
from workers.context import AsyncContext, AsyncStore, RedisStore
from workers.dispatch import HandlerFailed, dispatch
from workers.effects import Effects
from workers.ledgermemory import MemoryLedger
from workers.router import Registration

__all__ = [
    "DryRun",
    "Enqueued",
    "dry_run",
    "enqueue",
    "forward",
]


@dataclass
class Enqueued:
    """What a real replay did: jobs written, and events already replayed in the scope."""

    jobs: list[str] = field(default_factory=list)
    already: int = 0


async def enqueue(
    client: aioredis.Redis,
    entries: Sequence[Mapping[str, Any]],
    *,
    scope: str,
    handlers: Sequence[str] = (),
    prefix: str,
    timeout: int,
    dedupe_ttl: int,
    retention: Retention,
) -> Enqueued:
    """Write one new job per entry (see the module docstring); return what was done."""
    intake = Intake(client, prefix=prefix, dedupe_ttl=dedupe_ttl, deadline=10.0)
    done = Enqueued()
    for entry in entries:
        original = classify(entry["envelope"])
        job = build_job(
            entry["envelope"],
            original,
            queue_prefix=prefix,
            timeout=timeout,
            result_ttl=retention.result_ttl,
            failure_ttl=retention.failure_ttl,
            replay={"scope": scope, "of": entry["id"], "handlers": list(handlers) or None},
        )
        claim = Classified(original.kind, f"replay:{scope}:{entry['id']}", original.conversation)
        result = await intake.submit(claim, job)
        if result.duplicate:
            done.already += 1
        else:
            done.jobs.append(result.job_id)
    return done


class OverlayStore:
    """A conversation's store read from Redis, written in memory only (a dry run's)."""

    _GONE = object()

    def __init__(self, underlying: AsyncStore) -> None:
        self._underlying = underlying
        self._changes: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        if key in self._changes:
            value = self._changes[key]
            return default if value is self._GONE else json.loads(value)
        return await self._underlying.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        self._changes[key] = json.dumps(value)

    async def delete(self, key: str) -> None:
        self._changes[key] = self._GONE


class DryEffects(Effects):
    """``ctx.portal`` of a dry run: ``once`` steps are listed, never run."""

    def __init__(self, client: Any, ledger: MemoryLedger, handler: str, actions: list[str]):
        super().__init__(client, ledger, handler)
        self._actions = actions

    async def recorded(self, step: str) -> dict[str, Any] | None:
        # Effects.once and BlockingEffects.once both ask this first: a record stops them.
        self._actions.append(f"would run {step} (once)")
        return {"dry_run": True}


@dataclass
class DryRun:
    """What the handlers would have done for one event."""

    entry_id: str
    actions: list[str]
    error: str | None = None


class _Recorder:
    """The dry run's portal: records sends and mark-reads, sends nothing."""

    def __init__(self, actions: list[str]) -> None:
        self.actions = actions

    async def send_text(self, to: str, message: str) -> SentMessage:
        self.actions.append(f"would send to {mask_phone(to)}: {message}")
        return SentMessage(message_id="wamid.DRYRUN")

    async def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        typing = " (typing shown)" if show_typing_indicator else ""
        self.actions.append(f"would mark read {message_id}{typing}")

    async def messages(self, phone_number: str, **_kwargs: Any) -> Any:
        raise RuntimeError("a dry run reads no portal history")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"a dry run does not call the portal ({name})")


async def dry_run(
    client: aioredis.Redis,
    entries: Sequence[Mapping[str, Any]],
    registrations: list[Registration],
    *,
    sections: Mapping[str, Mapping[str, Any]],
    prefix: str,
    handlers: Sequence[str] = (),
) -> list[DryRun]:
    """Run each entry's event through the handlers with every effect recorded, not made."""
    stores: dict[str | None, OverlayStore] = {}
    selected = replayed_registrations(registrations, {REPLAY_ARG: {"handlers": list(handlers)}})
    results = []
    for entry in entries:
        original = classify(entry["envelope"])
        event = parse_event(
            entry["envelope"], kind=original.kind.value, event_key=original.event_key
        )
        ledger = MemoryLedger()
        actions: list[str] = []
        portal = _Recorder(actions)
        conversation = original.conversation
        store = stores.setdefault(
            conversation, OverlayStore(RedisStore(client, conversation, prefix=prefix))
        )

        def context_for(
            registration: Registration,
            replies: bool,
            *,
            _portal: Any = portal,
            _ledger: MemoryLedger = ledger,
            _actions: list[str] = actions,
            _store: OverlayStore = store,
        ) -> AsyncContext:
            return AsyncContext.build(
                portal=DryEffects(_portal, _ledger, registration.name, _actions),
                store=_store,
                config=sections.get(registration.router, {}),
                replies_expected=replies,
                handler=registration.name,
            )

        try:
            await dispatch(event, selected, ledger=ledger, context_for=context_for)
        except HandlerFailed as exc:
            results.append(DryRun(entry["id"], actions, str(exc)))
            continue
        results.append(DryRun(entry["id"], actions))
    return results


def forward(
    http: httpx.Client, entries: Sequence[Mapping[str, Any]], url: str, secret: str
) -> list[tuple[str, int | str]]:
    """POST each entry's envelope to ``url``, signed with ``secret``; return (id, status or
    error) per entry."""
    outcomes: list[tuple[str, int | str]] = []
    for entry in entries:
        body = js_stringify(entry["envelope"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "wabahooks-replay",
            SIGNATURE_HEADER: sign(body, secret),
            EVENT_KEY_HEADER: str(entry.get("event_key") or ""),
        }
        try:
            response = http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            outcomes.append((entry["id"], f"{type(exc).__name__}: {exc}"))
            continue
        outcomes.append((entry["id"], response.status_code))
    return outcomes
