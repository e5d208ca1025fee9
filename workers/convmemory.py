"""Conversation state in memory, on a clock a test moves: the :class:`~workers.testing.Harness`'s.

The same rules as ``workers/lua/conv_*.lua`` (Redis), for unit tests of handlers without
Redis: a pending step per contact with a generation that every answer, timeout, cancel and
new ``expect`` moves on; a burst per (contact, coalescing handler) with one flush timer,
re-armed by each message up to ``max_wait``; flush and timeout "jobs" that the harness
runs when its clock passes their due time (``Harness.advance``). Each job's own records
go to its :class:`~workers.ledger.MemoryLedger`, as they go to the job's hash in Redis.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from workers.coalesce import Window
from workers.conversation import CONVERSATION, Pending
from workers.ledger import Ledger

__all__ = ["Clock", "MemoryConversations", "Timer"]

_ids = itertools.count(1)


@dataclass
class Clock:
    """The harness's time, in epoch seconds: it moves only when the test moves it."""

    now: float = field(default_factory=time.time)


@dataclass
class Timer:
    """A flush or step-timeout job, due at ``due``."""

    due: float
    kind: str
    job_id: str
    kwargs: dict[str, Any]
    #: A timeout's generation (the step it belongs to).
    gen: int = 0


@dataclass
class _Burst:
    job_id: str
    first: float
    messages: list[dict[str, Any]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


class MemoryConversations:
    """Every contact's pending step and bursts, and the timers that end them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.steps: dict[str, dict[str, Any]] = {}
        self.gens: dict[str, int] = {}
        self.bursts: dict[tuple[str, str], _Burst] = {}
        self.timers: dict[str, Timer] = {}

    def for_job(self, job_id: str, ledger: Ledger) -> MemoryJobConversations:
        """The store of one job (its records go to ``ledger``)."""
        return MemoryJobConversations(self, job_id, ledger)

    def cancel(self, contact: str) -> dict[str, Any] | None:
        """End ``contact``'s pending step, if any (its timeout will not run); return what it
        was (``step``, ``data``, ``gen``), as ``workers.convredis.cancel_conversation`` does."""
        step = self.steps.pop(contact, None)
        if step is None:
            return None
        self.gens[contact] += 1
        self.timers.pop(step["timer"], None)
        return {"step": step["step"], "data": step["data"], "gen": step["gen"]}

    def next_due(self, until: float) -> Timer | None:
        """Take the earliest timer due by ``until``, if any."""
        due = [t for t in self.timers.values() if t.due <= until]
        if not due:
            return None
        timer = min(due, key=lambda t: t.due)
        del self.timers[timer.job_id]
        return timer


class MemoryJobConversations:
    """:class:`~workers.conversation.ConversationStore` of one job, in memory."""

    def __init__(self, state: MemoryConversations, job_id: str, ledger: Ledger) -> None:
        self._state = state
        self._job_id = job_id
        self._ledger = ledger
        #: A timeout job's generation, while it runs.
        self.gen: int | None = None

    async def pending(self, contact: str) -> Pending | None:
        step = self._state.steps.get(contact)
        if step is None:
            return None
        return Pending(step["step"], step["gen"], json.loads(step["data"]), step["deadline"])

    async def expect(
        self, contact: str, step: str, *, timeout: float, data: Any, record: tuple[str, str]
    ) -> int:
        state = self._state
        old = state.steps.get(contact)
        if old is not None:
            state.timers.pop(old["timer"], None)
        gen = state.gens[contact] = state.gens.get(contact, 0) + 1
        timer = f"timeout-{next(_ids)}"
        deadline = state.clock.now + timeout
        state.steps[contact] = {
            "step": step,
            "gen": gen,
            "data": json.dumps(data),
            "deadline": deadline,
            "timer": timer,
        }
        kwargs = {"kind": "timeout", "conversation": contact, "step": step}
        state.timers[timer] = Timer(deadline, "timeout", timer, kwargs, gen)
        await self._ledger.complete(*record, {"gen": gen})
        return gen

    async def advance(
        self, contact: str, *, how: str, gen: int | None, record: tuple[str, str] | None
    ) -> dict[str, Any] | None:
        state = self._state
        expected = self.gen if how == "timeout" else gen
        step = state.steps.get(contact)
        if step is None or (expected is not None and step["gen"] != expected):
            if record is not None and how == "cancel":
                await self._ledger.complete(*record, {})
            return None
        del state.steps[contact]
        state.gens[contact] += 1
        if how != "timeout":
            state.timers.pop(step["timer"], None)
        result = {"step": step["step"], "data": step["data"], "gen": step["gen"], "how": how}
        if record is not None:
            await self._ledger.complete(*record, result)
        return result

    async def append(
        self, contact: str, handler: str, window: Window, message: dict[str, Any]
    ) -> bool:
        state, now = self._state, self._state.clock.now
        message_id = str(message["envelope"]["data"]["messageId"])
        burst = state.bursts.get((contact, handler))
        if burst is not None and message_id in burst.ids:
            await self._ledger.complete(handler, "coalesce", {})
            return False
        if burst is None:
            job_id = f"flush-{next(_ids)}"
            burst = state.bursts[(contact, handler)] = _Burst(job_id, now)
            kwargs = {"kind": "flush", "conversation": contact, "handler": handler}
            state.timers[job_id] = Timer(now, "flush", job_id, kwargs)
        burst.messages.append(message)
        burst.ids.add(message_id)
        timer = state.timers.get(burst.job_id)
        if timer is not None:  # not fired yet: re-arm
            timer.due = min(now + window.quiet, burst.first + window.max_wait)
            if len(burst.messages) >= window.max_messages:
                timer.due = now
        await self._ledger.complete(handler, "coalesce", {})
        return True

    async def seal(self, contact: str, handler: str) -> list[dict[str, Any]] | None:
        burst = self._state.bursts.get((contact, handler))
        if burst is None or burst.job_id != self._job_id:
            return None
        del self._state.bursts[(contact, handler)]
        await self._ledger.complete(CONVERSATION, "burst", {"messages": burst.messages})
        return burst.messages
