"""The conversation policy in memory, on a clock a test moves: the ``Harness``'s.

The same policy as the workers' (``workers.policy.scope``: the reply gate, opt-outs,
handovers, agents' relays, the window), its records in dicts instead of Redis
(:class:`MemoryPolicyStore`, the same methods as ``PolicyStore``). What differs, because a
harness has no queue: a contact's message arrives when it is delivered (the harness's
clock, not the message's own timestamp), and an agent's nudge is recorded in
:attr:`MemoryPolicy.nudges` instead of being scheduled as a job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from service.policystore import PolicyKeys
from service.typedevents import InboundMessage
from workers.convmemory import MemoryConversations
from workers.effects import AsyncPortalAPI
from workers.policy.config import PolicyConfig
from workers.policy.scope import EventScope, Policy
from workers.policy.state import DAY, ContactRecord, PolicyStore, record_from

__all__ = ["MemoryPolicy", "MemoryPolicyStore"]


class MemoryPolicyStore(PolicyStore):
    """:class:`~workers.policy.state.PolicyStore` in dicts (no expiry: nothing outlives a
    test). ``suppressed`` maps opted-out numbers to their entry (word, time)."""

    def __init__(self) -> None:
        super().__init__(None, PolicyKeys("wabahooks:"))  # type: ignore[arg-type]  # no Redis
        self.contacts: dict[str, dict[bytes, bytes]] = {}
        self.suppressed: dict[str, dict[str, Any]] = {}
        self.forwards: dict[str, str] = {}
        self.open: dict[str, float] = {}
        self.intents: dict[str, dict[str, float]] = {}
        self.sent: dict[str, set[str]] = {}

    async def hash_key(self) -> bytes:
        return b"harness"

    async def load(self, phone: str) -> ContactRecord:
        return self.record(phone)

    def record(self, phone: str) -> ContactRecord:
        """The contact's record as it stands (for a test to read)."""
        return record_from(phone, self.contacts.get(phone, {}), phone in self.suppressed)

    async def _write(self, phone: str, fields: Mapping[str, str | float]) -> None:
        stored = self.contacts.setdefault(phone, {})
        stored.update({k.encode(): str(v).encode() for k, v in fields.items()})

    async def _handover_on(self, phone: str, fields: Mapping[str, str | float], now: float) -> None:
        await self._write(phone, fields)
        self.open[phone] = now

    async def _handover_off(self, phone: str, ended: float) -> None:
        stored = self.contacts.setdefault(phone, {})
        for name in (b"handover", b"handover_by", b"handover_since", b"handover_until"):
            stored.pop(name, None)
        await self._write(phone, {"handover_ended": ended})

    async def set_suppressed(
        self, record: ContactRecord, on: bool, *, word: str, now: float
    ) -> None:
        record.suppressed = on
        if on:
            self.suppressed[record.phone] = {"at": now, "word": word}
        else:
            self.suppressed.pop(record.phone, None)

    async def is_suppressed(self, phone: str) -> bool:
        return phone in self.suppressed

    async def inbound_at(self, phone: str) -> float | None:
        return (await self.load(phone)).inbound_at

    async def link_forward(self, message_id: str, customer: str, now: float) -> None:
        self.forwards[message_id] = customer
        self.open[customer] = now

    async def forwarded_customer(self, message_id: str) -> str | None:
        return self.forwards.get(message_id)

    async def open_ending(self, digits: str, since: float) -> list[str]:
        return sorted(p for p, at in self.open.items() if at >= since and p.endswith(digits))

    async def intend(self, phone: str, member: str, now: float) -> None:
        self.intents.setdefault(phone, {})[member] = now

    async def settle(self, phone: str, member: str, message_id: str | None) -> None:
        self.intents.get(phone, {}).pop(member, None)
        if message_id is not None:
            self.sent.setdefault(phone, set()).add(message_id)

    async def ours(self, phone: str) -> set[str]:
        return set(self.sent.get(phone, ()))

    async def open_intents(self, phone: str, since: float) -> int:
        return sum(1 for at in self.intents.get(phone, {}).values() if at >= since)


class MemoryPolicy(Policy):
    """The policy of a ``Harness``: ``conversations`` (its steps, cancelled by a handover)
    and ``clock`` (its time) are the harness's."""

    def __init__(
        self,
        config: PolicyConfig,
        portal: AsyncPortalAPI,
        conversations: MemoryConversations,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(config, None, portal, clock=clock)
        self.store: MemoryPolicyStore = MemoryPolicyStore()
        self.conversations = conversations
        #: Agents' nudges as they would be scheduled: (agent, due time).
        self.nudges: list[tuple[str, float]] = []
        self._nudged: set[tuple[str, int]] = set()

    def message_time(self, event: InboundMessage) -> float:
        return self.clock()  # delivered now, on the harness's clock

    async def cancel_steps(self, phone: str) -> Mapping[str, Any] | None:
        return self.conversations.cancel(phone)

    async def schedule_nudge(self, scope: EventScope, agent: str) -> bool:
        anchor = await self.store.inbound_at(agent)
        if anchor is None:
            return False
        window = self.config.window
        closes = anchor + DAY - window.margin
        now = self.clock()
        if now >= closes or (agent, int(anchor)) in self._nudged:
            return False  # once per window, as the workers' nudge key makes it
        self._nudged.add((agent, int(anchor)))
        self.nudges.append((agent, max(now, closes - window.nudge_margin)))
        return True
