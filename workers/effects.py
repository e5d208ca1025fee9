"""Side effects through the ledger: ``ctx.portal`` in a handler.

:class:`Effects` wraps the portal client for one handler run. ``send_text`` and
``mark_read`` are recorded in the ledger (intent before, result after), so a
retried job never repeats a completed one. A send whose outcome is unknown
(the worker died mid-call, or the portal answered 5xx after accepting it) is
reconciled on the retry: the conversation's recent outbound messages are searched
for it (excluding ones already attributed to another send), and it is sent only
if it is not there.

Steps are named by call order within the handler (``send_text#1``,
``send_text#2`` …); pass ``step="…"`` when the order can change between runs.
``once(step, action)`` records any other step's result the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from service.portal import Message, OutcomeUnknown, PortalError, SentMessage
from workers.ledger import Ledger

__all__ = ["Effects", "PortalAPI"]

#: How far the portal's clock may be behind ours when looking for a lost send.
CLOCK_SKEW = timedelta(minutes=10)


class PortalAPI(Protocol):
    """What handlers need of the portal client (``service.portal.PortalClient`` has it)."""

    def send_text(self, to: str, message: str) -> SentMessage: ...
    def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None: ...
    def iter_messages(self, phone_number: str, *, limit: int = ...) -> Iterator[Message]: ...


class Effects:
    """The portal, for one handler run: sends and mark-reads happen at most once per event."""

    def __init__(self, client: PortalAPI, ledger: Ledger, handler: str) -> None:
        #: The raw client, for reads (conversations, templates …): not deduplicated.
        self.client = client
        self._ledger = ledger
        self._handler = handler
        self._counts: dict[str, int] = {}

    def _step(self, kind: str, step: str | None) -> str:
        if step is not None:
            return f"{kind}:{step}"
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return f"{kind}#{self._counts[kind]}"

    def send_text(self, to: str, message: str, *, step: str | None = None) -> SentMessage:
        """Send ``message`` to ``to`` once for this event, however often the job runs."""
        name = self._step("send_text", step)
        entry = self._ledger.get(self._handler, name)
        if entry is not None and entry.state == "done" and entry.result:
            return SentMessage(message_id=str(entry.result["message_id"]))
        if entry is not None and entry.state == "intent":
            since = datetime.fromtimestamp(entry.at, UTC) - CLOCK_SKEW
            found = self._find_sent(to, message, since)
            if found is not None:
                return self._record(name, to, found)
        self._ledger.intend(self._handler, name)
        try:
            sent = self.client.send_text(to, message)
        except OutcomeUnknown:
            raise  # the intent stays: the retry reconciles
        except PortalError:
            # Refused or never sent (the client retries only what provably did not
            # reach the portal): nothing went out.
            self._ledger.abandon(self._handler, name)
            raise
        return self._record(name, to, sent.message_id)

    def mark_read(
        self, message_id: str, *, show_typing_indicator: bool = False, step: str | None = None
    ) -> None:
        """Mark ``message_id`` read (optionally showing typing…) once for this event."""
        name = self._step("mark_read", step)
        entry = self._ledger.get(self._handler, name)
        if entry is not None and entry.state == "done":
            return
        self.client.mark_read(message_id, show_typing_indicator=show_typing_indicator)
        self._ledger.complete(self._handler, name, {"typing": show_typing_indicator})

    def once(self, step: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``action`` once for this event; return its result (recorded in the ledger).

        For side effects other than the portal's (a POST to another service, a fold of
        state): a retried job gets the recorded result back instead of running it
        again. ``action`` returns a JSON-compatible dict; if it raises, nothing is
        recorded and the retry runs it again. The record is written after ``action``
        returns, so a worker that dies in between runs it again (at least once): make
        it idempotent, or let its receiver deduplicate.
        """
        name = f"once:{step}"
        entry = self._ledger.get(self._handler, name)
        if entry is not None and entry.state == "done" and entry.result is not None:
            return entry.result
        result = action()
        self._ledger.complete(self._handler, name, result)
        return result

    def _record(self, step: str, to: str, message_id: str) -> SentMessage:
        self._ledger.add_sent_id(to, message_id)
        self._ledger.complete(self._handler, step, {"message_id": message_id})
        return SentMessage(message_id=message_id)

    def _find_sent(self, to: str, message: str, since: datetime) -> str | None:
        attributed = self._ledger.sent_ids(to)
        for item in self.client.iter_messages(to):
            if item.timestamp < since:
                return None
            item_id = item.wa_message_id or item.id
            if item.direction == "outbound" and item.text == message and item_id not in attributed:
                return item_id
        return None

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"ctx.portal has no {name!r}: it offers send_text, mark_read and once (exactly once); "
            f"use ctx.portal.client.{name} for other, read-only calls"
        )
