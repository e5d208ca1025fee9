"""The exactly-once ledger in memory (``workers.ledger`` has the protocol and its rules):
for the ``Harness``, dry-run replays and unit tests of handlers, no Redis."""

from __future__ import annotations

import time
from typing import Any

from workers.execution import ExecutionToken, Superseded
from workers.ledger import Entry

__all__ = ["MemoryLedger"]


class MemoryLedger:
    """The same ledger in a dict, for unit tests of handlers (``token``: to test cancellation)."""

    def __init__(self, token: ExecutionToken | None = None) -> None:
        self.token = token
        self.handlers: set[str] = set()
        self.steps: dict[tuple[str, str], Entry] = {}
        self.sent: dict[str, set[str]] = {}

    def ensure_current(self) -> None:
        if self.token is not None and self.token.cancelled:
            raise Superseded(self.token, "the engine cancelled it")

    async def handler_done(self, handler: str) -> bool:
        return handler in self.handlers

    async def mark_handler_done(self, handler: str) -> None:
        self.ensure_current()
        self.handlers.add(handler)

    async def get(self, handler: str, step: str) -> Entry | None:
        return self.steps.get((handler, step))

    async def intend(self, handler: str, step: str) -> None:
        self.ensure_current()
        self.steps[(handler, step)] = Entry("intent", time.time())

    async def complete(
        self, handler: str, step: str, result: dict[str, Any], *, deferred: bool = False
    ) -> None:
        self.ensure_current()
        self.steps[(handler, step)] = Entry("done", time.time(), result)

    async def flush(self) -> None:
        pass  # nothing is deferred in memory

    def take_sent(self) -> list[tuple[str, str]]:
        return []  # written at once in memory

    async def abandon(self, handler: str, step: str) -> None:
        self.ensure_current()
        self.steps.pop((handler, step), None)

    async def clock(self) -> float:
        return time.time()

    async def sent_ids(self, phone: str) -> set[str]:
        return set(self.sent.get(phone, ()))

    async def record_sent(self, handler: str, step: str, phone: str, message_id: str) -> None:
        self.ensure_current()
        self.sent.setdefault(phone, set()).add(message_id)
        self.steps[(handler, step)] = Entry("done", time.time(), {"message_id": message_id})
