"""The policy for one event: the contact's record, the reply gate, the send check.

:class:`Policy` lives as long as the worker process; :meth:`Policy.scope` makes an
:class:`EventScope` per job (one Redis round trip for a message: the contact's record
and opt-out flag). Dispatch asks :meth:`EventScope.gate` before every handler that
declared ``replies=``; ``ctx.portal.send_text`` asks :meth:`EventScope.before_send`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from service.logs import mask_phone
from service.policystore import PolicyKeys
from service.portal import PortalError
from service.settings import DEFAULT_SENT_TTL
from service.typedevents import Event, InboundMessage
from workers.coalesce import Burst
from workers.convredis import cancel_conversation
from workers.dispatch import Permanent
from workers.effects import AsyncPortalAPI, Effects
from workers.ledger import Ledger
from workers.policy import handover as handover_hooks
from workers.policy.config import PolicyConfig
from workers.policy.errors import OptedOut
from workers.policy.state import DAY, ContactRecord, MessagingWindow, PolicyStore, window_of
from workers.router import Registration

__all__ = ["BUILTIN_REPLIERS", "INBOX_PAGE", "EventScope", "Policy", "message_time"]

log = structlog.get_logger("wabahooks.policy")

#: The policy's own router: never held back by it.
ROUTER = "policy"
#: Built-ins whose replies are skipped when the window is closed (yours decide: ctx.window).
BUILTIN_REPLIERS = frozenset({"auto_reply"})
#: Messages read from the conversation to look for an answer from the portal's inbox.
INBOX_PAGE = 20


def message_time(event: InboundMessage, now: float) -> float:
    """The message's own time (``data.timestamp``, epoch seconds), never later than ``now``
    (a portal clock ahead of ours must not lengthen the window); ``now`` without one."""
    try:
        return min(float(event.data.get("timestamp")), now)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return now


class Policy:
    """The worker's policy: its configuration, its store, the portal (for reads)."""

    def __init__(
        self,
        config: PolicyConfig,
        redis: Any,
        portal: AsyncPortalAPI,
        *,
        prefix: str = "wabahooks:",
        sent_ttl: int = DEFAULT_SENT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = PolicyStore(redis, PolicyKeys(prefix), sent_ttl=sent_ttl)
        self.redis = redis
        self.portal = portal
        self.prefix = prefix
        self.clock = clock

    def message_time(self, event: InboundMessage) -> float:
        """When the contact wrote ``event``: its own time (see :func:`message_time`)."""
        return message_time(event, self.clock())

    async def cancel_steps(self, phone: str) -> Mapping[str, Any] | None:
        """End ``phone``'s pending wait-for-reply step (``workers.convredis``); return it."""
        return await cancel_conversation(self.redis, phone, prefix=self.prefix)

    async def schedule_nudge(self, scope: EventScope, agent: str) -> bool:
        """Schedule ``agent``'s nudge before their window closes (``workers.policy.nudge``)."""
        from workers.policy import nudge  # nudge imports the job format; only needed here

        return await nudge.schedule(scope, agent)

    async def scope(
        self, event: Event | None, *, job_id: str, ledger: Ledger, contact: str | None = None
    ) -> EventScope:
        """The policy for one job's event (its contact's record loaded, for a message; for a
        conversation's flush job, which has no event yet, ``contact``'s)."""
        record = None
        if isinstance(event, InboundMessage) and event.sender:
            record = await self.store.load(event.sender)
        elif event is None and contact:
            record = await self.store.load(contact)
        return EventScope(self, event, record, job_id, ledger)


class EventScope:
    """The policy while one event is handled (``ctx.policy``)."""

    def __init__(
        self,
        policy: Policy,
        event: Event | None,
        record: ContactRecord | None,
        job_id: str,
        ledger: Ledger,
    ) -> None:
        self.policy = policy
        self.config = policy.config
        self.store = policy.store
        self.event = event
        self.record = record
        self.job_id = job_id
        self.ledger = ledger
        self._inbox: bool | None = None
        #: Set when the message was a policy command (STOP, START): nothing else answers it.
        self.answered: str | None = None
        #: Notices and agent answers the policy itself sends (exactly once per event).
        self.effects = Effects(policy.portal, ledger, "policy:notices", policy=self)

    def now(self) -> float:
        return self.policy.clock()

    @property
    def contact(self) -> str | None:
        """The event's contact (a message's sender), if any."""
        return self.record.phone if self.record is not None else None

    @property
    def is_agent(self) -> bool:
        return self.contact in self.config.agents

    def inbound_at(self) -> float | None:
        """The contact's last inbound message time, this message included."""
        assert self.record is not None
        at = self.record.inbound_at
        if isinstance(self.event, InboundMessage):
            own = self.policy.message_time(self.event)
            at = own if at is None else max(at, own)
        return at

    def window(self) -> MessagingWindow:
        """The event contact's 24-hour window (closed and unknown without a contact)."""
        if self.record is None:
            return MessagingWindow(False, None, known=False)
        return window_of(self.inbound_at(), self.now(), self.config.window.margin)

    async def window_of(self, phone: str) -> MessagingWindow:
        """Another number's window (e.g. an agent's), from its record."""
        if phone == self.contact:
            return self.window()
        at = await self.store.inbound_at(phone)
        return window_of(at, self.now(), self.config.window.margin)

    # -- the reply gate (dispatch) ------------------------------------------------------

    async def gate(self, event: Event, registration: Registration | None) -> str | None:
        """Why a reply handler must not run for ``event`` now (None: it may).

        ``registration`` None asks for any reply (whether to show "typing…"). A coalesced
        burst is judged as its latest message (a reply to it is a reply to that message)."""
        if isinstance(event, Burst) and event.messages:
            event = event.messages[-1]
            if self.event is None:
                self.event = event  # the inbox check reads the conversation from it
        if self.record is None or self.is_agent or not isinstance(event, InboundMessage):
            return None
        if registration is not None and registration.router == ROUTER:
            return None
        now = self.now()
        if self.answered is not None:
            return self.answered
        if self.record.suppressed:
            return "opted out"
        if self.record.handover_active(now):
            return "handover"
        if registration is not None and registration.router in BUILTIN_REPLIERS:
            if not self.window().open:
                return "window closed"
        if self.config.handover.detect_inbox and await self._answered_from_inbox():
            return "handover"
        return None

    async def _answered_from_inbox(self) -> bool:
        """Whether someone answered the contact outside wabahooks (the portal's inbox).

        One read of the conversation (a portal call and a rate token), at most once per
        event: outbound items newer than the contact's previous inbound message whose ids
        are not among our recorded sends, more of them than our open intents (sends begun
        whose outcome is unknown count as ours)."""
        if self._inbox is not None:
            return self._inbox
        assert self.record is not None and isinstance(self.event, InboundMessage)
        phone, current = self.record.phone, self.event.message_id
        try:
            page = await self.policy.portal.messages(phone, limit=INBOX_PAGE)
        except (PortalError, Permanent) as exc:  # Permanent: the portal is not configured
            log.warning("policy.inbox.unread", error=f"{type(exc).__name__}: {exc}")
            self._inbox = False
            return False
        ended = self.record.handover_ended
        candidates: list[str] = []
        passed = False
        for item in page.items:  # newest first
            item_id = item.wa_message_id or item.id
            if item.direction == "inbound":
                if passed:
                    break  # the previous inbound message: older answers are not news
                passed = item_id == current
                continue
            if ended is None or item.timestamp.timestamp() > ended:
                candidates.append(item_id)  # (before a handover's end: that human's, known)
        ours = await self.ledger.sent_ids(phone) | await self.store.ours(phone)
        foreign = [c for c in candidates if c not in ours]
        self._inbox = bool(foreign) and len(foreign) > await self.store.open_intents(
            phone, self.now() - DAY
        )
        if self._inbox:
            log.info("policy.inbox.reply", contact=mask_phone(phone), foreign=len(foreign))
            await self.set_handover(phone, True, by="inbox", notice=False)
        return self._inbox

    # -- handover -----------------------------------------------------------------------

    async def record_for(self, phone: str) -> ContactRecord:
        if phone == self.contact and self.record is not None:
            return self.record
        return await self.store.load(phone)

    async def set_handover(self, phone: str, on: bool, *, by: str, notice: bool = True) -> None:
        """Turn ``phone``'s handover on or off (with the configured notice, if any)."""
        record = await self.record_for(phone)
        was = record.handover_active(self.now())
        config = self.config.handover
        await self.store.set_handover(record, on, by=by, now=self.now(), idle=config.idle)
        log.info("policy.handover", contact=mask_phone(phone), on=on, by=by)
        if on and not was:
            await handover_hooks.on_handover_started(self, phone)
        text = config.on_notice if on else config.off_notice
        if notice and text and was != on:
            await self.notify(phone, text, step=f"handover-{'on' if on else 'off'}:{phone}")

    async def handover_from_handler(self, on: bool, handler: str) -> None:
        """``ctx.handover()``: the event's contact."""
        if self.contact is None:
            raise RuntimeError("ctx.handover() needs a message event: it acts on its sender")
        await self.set_handover(self.contact, on, by=f"handler {handler}")

    async def may_forward(self, agent: str) -> bool:
        """Whether a forward to ``agent`` can go out: their window is open, or not known
        (then the portal decides)."""
        window = await self.window_of(agent)
        return window.open or not window.known

    async def forwarded(self, agent: str, customer: str, message_id: str) -> None:
        """A message of ``customer`` went to ``agent`` as ``message_id``: link it (for the
        agent's reply) and schedule the agent's nudge."""
        await self.store.link_forward(message_id, customer, self.now())
        await self.policy.schedule_nudge(self, agent)

    async def notify(self, phone: str, text: str, *, step: str) -> bool:
        """Send a notice once for this event if ``phone``'s window allows; return if sent."""
        if not (await self.window_of(phone)).open:
            log.info("policy.notice.skipped", contact=mask_phone(phone), reason="window closed")
            return False
        await self.effects.send_text(phone, text, step=step, transactional=True)
        return True

    # -- the send check (ctx.portal.send_text) ----------------------------------------

    async def before_send(self, to: str, *, transactional: bool) -> None:
        """Refuse a send to an opted-out contact unless it is transactional."""
        if transactional:
            return
        if to == self.contact and self.record is not None:
            suppressed = self.record.suppressed
        else:
            suppressed = await self.store.is_suppressed(to)
        if suppressed:
            raise OptedOut(
                f"+{mask_phone(to)} opted out (STOP): send refused. Send only what the contact "
                "asked for, marked send_text(..., transactional=True); START opts back in"
            )

    async def intending(self, to: str, step: str) -> None:
        if self.config.handover.detect_inbox:
            await self.store.intend(to, f"{self.job_id}:{step}", self.now())

    async def settled(self, to: str, step: str, message_id: str | None) -> None:
        """The send's outcome is known: its intent goes, its id is recorded as ours at once
        (the ledger writes it only as the job ends; a worker killed before then must not
        leave our own message looking like someone else's)."""
        if self.config.handover.detect_inbox:
            await self.store.settle(to, f"{self.job_id}:{step}", message_id)
