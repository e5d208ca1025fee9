"""Side effects through the ledger: ``ctx.portal`` in a handler.

:class:`Effects` wraps the portal client for one handler run (``await`` its calls;
:class:`BlockingEffects` is the same for a plain ``def`` handler). ``send_text`` and
``mark_read`` are recorded in the ledger (intent before, result after), so a
retried job never repeats a completed one. A send whose outcome is unknown
(the worker died mid-call, or the portal answered 5xx after accepting it) is
reconciled on the retry: the conversation's recent outbound messages are searched
for it (excluding ones already attributed to another send), and it is sent only
if it is not there (:meth:`Effects._find_sent` says how far back, on whose clock).

Steps are named by call order within the handler (``send_text#1``,
``send_text#2`` …); pass ``step="…"`` when the order can change between runs.
``once(step, action)`` records any other step's result the same way.

Every ledger write is conditional on this execution still holding its job, so a
superseded execution's send is refused before it goes out
(:class:`~workers.execution.Superseded`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from service.portal import Message, OutcomeUnknown, Page, PortalError, SentMessage
from service.portal.endpoints import found_sent
from workers.bridge import BlockingProxy, Bridge
from workers.ledger import Ledger

__all__ = [
    "ANCHOR_MARGIN",
    "CLOCK_SKEW",
    "AsyncPortalAPI",
    "BlockingEffects",
    "Effects",
    "SendPolicy",
]

#: Without the portal's clock: how far it may be behind ours when looking for a lost send.
CLOCK_SKEW = timedelta(minutes=10)
#: With the portal's clock (its Date header): room for its timestamps and its Date header to
#: come from machines whose clocks differ a little (on top of the 1 s resolution and the
#: request's duration, which are added exactly).
ANCHOR_MARGIN = timedelta(seconds=5)


class AsyncPortalAPI(Protocol):
    """What handlers need of the portal client (``AsyncPortalClient`` has it)."""

    async def send_text(self, to: str, message: str) -> SentMessage: ...
    async def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None: ...
    async def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]: ...


class SendPolicy(Protocol):
    """What the conversation policy checks around a send (``workers.policy``): refusal of
    opted-out contacts, and the open intents it counts as ours."""

    async def before_send(self, to: str, *, transactional: bool) -> None: ...
    async def intending(self, to: str, step: str) -> None: ...
    async def settled(self, to: str, step: str, message_id: str | None) -> None: ...


def search_from(
    intended_at: float, server_time: datetime | None, asked: float, answered: float
) -> datetime:
    """Return the portal-clock time from which a send intended at ``intended_at`` must appear
    in its history; ``intended_at``, ``asked`` and ``answered`` are on one clock (the
    ledger's: Redis', which stamps the intents, so no worker's own clock is trusted).

    ``server_time`` is the portal's clock (Date header) on the history answer we asked for
    at ``asked`` and got at ``answered``: the offset between the clocks is measured on it,
    so no bound on their skew is assumed. The header has 1 s resolution and was written
    somewhere within the request, so the search starts that much earlier, plus
    :data:`ANCHOR_MARGIN`. Without it: ``intended_at`` minus :data:`CLOCK_SKEW`.
    """
    if server_time is None:
        return datetime.fromtimestamp(intended_at, UTC) - CLOCK_SKEW
    offset = server_time.timestamp() - answered
    slack = 1.0 + max(0.0, answered - asked)
    return datetime.fromtimestamp(intended_at + offset - slack, UTC) - ANCHOR_MARGIN


Action = Callable[[], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class Effects:
    """The portal, for one handler run: sends and mark-reads happen at most once per event."""

    def __init__(
        self,
        client: AsyncPortalAPI,
        ledger: Ledger,
        handler: str,
        *,
        policy: SendPolicy | None = None,
        unproven_since: float | None = None,
    ) -> None:
        #: The raw client, for reads (conversations, templates …): not deduplicated.
        self.client = client
        self._ledger = ledger
        self._handler = handler
        self._policy = policy
        #: Set when this job's earlier runs may have lost their intents (Redis restarted or
        #: failed over since it was enqueued, ``workers.epoch``): a send with no intent is
        #: looked for in the history from then (the ledger's clock) before it goes out.
        self._unproven_since = unproven_since
        self._counts: dict[str, int] = {}

    def _step(self, kind: str, step: str | None) -> str:
        if step is not None:
            return f"{kind}:{step}"
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return f"{kind}#{self._counts[kind]}"

    async def send_text(
        self, to: str, message: str, *, step: str | None = None, transactional: bool = False
    ) -> SentMessage:
        """Send ``message`` to ``to`` once for this event, however often the job runs.

        With the conversation policy on, a contact who opted out is refused
        (``workers.policy.OptedOut``) unless the send is ``transactional`` (something
        the contact asked for, e.g. the receipt of an order)."""
        name = self._step("send_text", step)
        entry = await self._ledger.get(self._handler, name)
        if entry is not None and entry.state == "done" and entry.result:
            return SentMessage(message_id=str(entry.result["message_id"]))
        policy, ref = self._policy, f"{self._handler}:{name}"
        if policy is not None:
            await policy.before_send(to, transactional=transactional)
        lost_from = entry.at if entry is not None and entry.state == "intent" else None
        if entry is None and self._unproven_since is not None:
            lost_from = self._unproven_since  # an intent Redis may have lost
        if lost_from is not None:
            found = await self._find_sent(to, message, lost_from)
            if found is not None:
                await self._ledger.record_sent(self._handler, name, to, found)
                if policy is not None:
                    await policy.settled(to, ref, found)
                return SentMessage(message_id=found)
        # Conditional on holding the job: a superseded execution stops here, before sending.
        await self._ledger.intend(self._handler, name)
        if policy is not None:
            await policy.intending(to, ref)  # an unknown outcome stays counted as ours
        try:
            sent = await self.client.send_text(to, message)
        except OutcomeUnknown:
            raise  # the intent stays: the retry reconciles
        except PortalError:
            # Refused or never sent (the client retries only what provably did not
            # reach the portal): nothing went out.
            await self._ledger.abandon(self._handler, name)
            if policy is not None:
                await policy.settled(to, ref, None)
            raise
        await self._ledger.record_sent(self._handler, name, to, sent.message_id)
        if policy is not None:
            await policy.settled(to, ref, sent.message_id)
        return sent

    async def mark_read(
        self, message_id: str, *, show_typing_indicator: bool = False, step: str | None = None
    ) -> None:
        """Mark ``message_id`` read (optionally showing typing…) once for this event.

        A mark-read repeated by a superseded execution changes nothing at the portal,
        so it is checked locally (a cancelled execution), without a round trip.
        """
        name = self._step("mark_read", step)
        entry = await self._ledger.get(self._handler, name)
        if entry is not None and entry.state == "done":
            return
        self._ledger.ensure_current()
        await self.client.mark_read(message_id, show_typing_indicator=show_typing_indicator)
        # Deferred: marking read again on a retry changes nothing (workers.ledger).
        await self._ledger.complete(
            self._handler, name, {"typing": show_typing_indicator}, deferred=True
        )

    async def once(self, step: str, action: Action) -> dict[str, Any]:
        """Run ``action`` once for this event; return its result (recorded in the ledger).

        For side effects other than the portal's (a POST to another service, a fold of
        state): a retried job gets the recorded result back instead of running it
        again. ``action`` (a function or an async function) returns a JSON-compatible
        dict; if it raises, nothing is recorded and the retry runs it again. The record
        is written after ``action`` returns, so a worker that dies in between runs it
        again (at least once): make it idempotent, or let its receiver deduplicate.
        """
        recorded = await self.recorded(step)
        if recorded is not None:
            return recorded
        self._ledger.ensure_current()
        result = action()
        if inspect.isawaitable(result):
            result = await result
        await self.record(step, result)
        return result

    async def recorded(self, step: str) -> dict[str, Any] | None:
        """The result ``once(step, …)`` recorded for this event, if any."""
        entry = await self._ledger.get(self._handler, f"once:{step}")
        if entry is not None and entry.state == "done" and entry.result is not None:
            return entry.result
        return None

    async def record(self, step: str, result: dict[str, Any]) -> None:
        """Record ``result`` as ``once(step, …)``'s (conditional on holding the job)."""
        await self._ledger.complete(self._handler, f"once:{step}", result)

    def ensure_current(self) -> None:
        """Raise Superseded if this execution was cancelled (no round trip)."""
        self._ledger.ensure_current()

    async def _find_sent(self, to: str, message: str, intended_at: float) -> str | None:
        """Return the id of our lost send of ``message`` to ``to``, if the portal has it.

        Searches the conversation's history, newest first, back to the intent's time
        converted to the portal's clock (:func:`search_from`, measured on the first
        history page's Date header), skipping messages already attributed to other sends.
        Cost: one history page per unknown outcome (the search usually ends on it), more
        if the conversation was busy since the intent; nothing when there was no
        unknown outcome.
        """
        attributed = await self._ledger.sent_ids(to)
        since: datetime | None = None
        cursor: str | None = None
        asked = started = 0.0
        while True:
            if since is None:  # the ledger's clock, with this process's elapsed time
                asked, started = await self._ledger.clock(), time.monotonic()
            page = await self.client.messages(to, cursor=cursor)
            if since is None:
                answered = asked + (time.monotonic() - started)
                since = search_from(intended_at, page.server_time, asked, answered)
            found, stop = found_sent(page, message, since, attributed)
            if stop:
                return None if found is None else found.wa_message_id or found.id
            cursor = page.next_cursor

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"ctx.portal has no {name!r}: it offers send_text, mark_read and once (exactly once); "
            f"use ctx.portal.client.{name} for other, read-only calls"
        )


class BlockingEffects:
    """:class:`Effects` for a plain ``def`` handler: each call blocks until it is done."""

    def __init__(self, effects: Effects, bridge: Bridge) -> None:
        self._effects = effects
        self._bridge = bridge
        #: The raw client, blocking, for reads (not deduplicated).
        self.client: Any = BlockingProxy(effects.client, bridge)

    def send_text(
        self, to: str, message: str, *, step: str | None = None, transactional: bool = False
    ) -> SentMessage:
        """Send ``message`` to ``to`` once for this event, however often the job runs
        (``transactional``: see :meth:`Effects.send_text`)."""
        return self._bridge.run(
            self._effects.send_text(to, message, step=step, transactional=transactional)
        )

    def mark_read(
        self, message_id: str, *, show_typing_indicator: bool = False, step: str | None = None
    ) -> None:
        """Mark ``message_id`` read (optionally showing typing…) once for this event."""
        self._bridge.run(
            self._effects.mark_read(
                message_id, show_typing_indicator=show_typing_indicator, step=step
            )
        )

    def once(self, step: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``action`` once for this event (see :meth:`Effects.once`); it runs in this
        thread, so it may itself use the blocking ``ctx``."""
        recorded = self._bridge.run(self._effects.recorded(step))
        if recorded is not None:
            return recorded
        self._effects.ensure_current()
        result = action()
        self._bridge.run(self._effects.record(step, result))
        return result

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"ctx.portal has no {name!r}: it offers send_text, mark_read and once (exactly once); "
            f"use ctx.portal.client.{name} for other, read-only calls"
        )
