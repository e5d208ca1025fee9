"""Reconciling a send of unknown outcome on the portal's clock, not ours."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from service.portal import Message, OutcomeUnknown, Page, SentMessage
from workers.effects import Effects, search_from
from workers.ledgermemory import MemoryLedger

PHONE = "919876543210"
SKEW = timedelta(minutes=-15)  # the portal's clock is 15 minutes behind ours


@dataclass
class SkewedPortal:
    """A portal whose clock is ``skew`` off ours: its history's timestamps and its Date
    header (whole seconds) say so. It accepts the first send but answers 500."""

    skew: timedelta
    dated: bool = True
    history: list[Message] = field(default_factory=list)
    sends: int = 0

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skew

    async def send_text(self, to: str, message: str) -> SentMessage:
        self.sends += 1
        self.history.insert(
            0,
            Message(
                id=f"m{self.sends}",
                wa_message_id=f"wamid.OUT{self.sends}",
                direction="outbound",
                type="text",
                content={"text": {"body": message}},
                status="sent",
                timestamp=self.now(),
                contact_name=None,
            ),
        )
        if self.sends == 1:
            raise OutcomeUnknown("send_text", "the portal answered 500 after accepting")
        return SentMessage(f"wamid.OUT{self.sends}")

    async def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        pass

    async def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]:
        date = self.now().replace(microsecond=0) if self.dated else None
        return Page(tuple(self.history), None, False, server_time=date)


async def send_then_retry(portal: SkewedPortal) -> None:
    ledger = MemoryLedger()
    with pytest.raises(OutcomeUnknown):
        await Effects(portal, ledger, "h").send_text(PHONE, "Your order shipped")
    await Effects(portal, ledger, "h").send_text(PHONE, "Your order shipped")


@pytest.mark.parametrize("skew", [SKEW, -SKEW])
def test_a_lost_send_is_found_on_a_portal_15_minutes_off(skew: timedelta) -> None:
    portal = SkewedPortal(skew)
    asyncio.run(send_then_retry(portal))
    assert portal.sends == 1


def test_without_the_portals_clock_the_old_rule_still_applies_and_a_skew_past_it_resends() -> None:
    """What the anchor fixes: searching back 10 minutes by our clock misses the send."""
    portal = SkewedPortal(SKEW, dated=False)
    asyncio.run(send_then_retry(portal))
    assert portal.sends == 2


def test_the_search_starts_before_the_intent_on_the_portals_clock() -> None:
    intended_at = 1_000_000.0
    portal_offset = -900.0  # its clock, 15 minutes behind
    asked, answered = intended_at + 30, intended_at + 30.4
    server_time = datetime.fromtimestamp(int(answered + portal_offset), UTC)  # whole seconds

    since = search_from(intended_at, server_time, asked, answered)

    on_portal_clock = datetime.fromtimestamp(intended_at + portal_offset, UTC)
    assert on_portal_clock - timedelta(seconds=10) < since < on_portal_clock
