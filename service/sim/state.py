"""The simulator's state: contacts, messages, webhook configuration, chaos, clock and history.

Pure: no I/O. Operations either return values or raise :class:`Refusal` carrying the HTTP
status and the portal's ``{"error": …}`` text; ``service.sim.app`` turns these into
responses and hands the webhook payloads they produce to ``service.sim.delivery``.
"""

from __future__ import annotations

import base64
import random
import secrets
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from service.portal.validation import (
    check_phone,
    check_text,
    check_webhook_events,
)
from service.samples import envelope, message_data
from service.sim.config import Refusal, SimConfig, iso
from service.sim.messages import StoredMessage, conversations_page, messages_page
from service.sim.templates import TemplateStore

__all__ = ["SimState"]

WINDOW = timedelta(hours=24)
NOT_VERIFIED = "The phone number must be verified by WhatsApp before webhooks can be configured"
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SimState:
    """Everything the simulated portal remembers. ``reset()`` returns to ``config``."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.settings = replace(self.config, chaos=replace(self.config.chaos))
        self.chaos = self.settings.chaos
        self.random = random.Random(self.config.seed)
        self.offset = 0.0
        self.seq = 0
        self.contacts: dict[str, tuple[str | None, datetime | None]] = {}
        self.messages: list[StoredMessage] = []
        self.by_wamid: dict[str, StoredMessage] = {}
        self.templates = TemplateStore()
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_enabled = False
        self.webhook_events: list[str] = ["messages", "statuses"]
        if self.config.webhook_url:
            self._check_url(self.config.webhook_url)
            self.webhook_url, self.webhook_enabled = self.config.webhook_url, True
            self.webhook_secret = self.config.webhook_secret or secrets.token_hex(32)
        self.sent: list[dict[str, Any]] = []
        self.mark_reads: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []

    # -- clock and chaos ----------------------------------------------------------------

    def now(self) -> datetime:
        """The simulator's clock: ours, moved by ``advance`` and by the configured skew."""
        return datetime.now(UTC) + timedelta(seconds=self.offset + self.settings.clock_skew)

    def advance(self, seconds: float) -> datetime:
        self.offset += seconds
        return self.now()

    def roll(self, next_name: str, rate: float) -> bool:
        """Whether a chaos event fires now: a pending 'next N' count first, then the rate."""
        pending: int = getattr(self.chaos, next_name)
        if pending > 0:
            setattr(self.chaos, next_name, pending - 1)
            return True
        return rate > 0 and self.random.random() < rate

    def roll_duplicate(self) -> bool:
        rate = self.chaos.duplicate_rate
        return rate > 0 and self.random.random() < rate

    # -- messages -----------------------------------------------------------------------

    def _store(
        self, phone: str, direction: str, kind: str, content: dict[str, Any], status: str
    ) -> StoredMessage:
        self.seq += 1
        name = self.contacts.get(phone, (None, None))[0] if direction == "inbound" else None
        tail = base64.b64encode(f"{phone}:{uuid.uuid4().hex[:20]}".encode()).decode()
        message = StoredMessage(
            self.seq, str(uuid.uuid4()), f"wamid.{tail}", phone, direction, kind, content,
            status, self.now(), name,
        )  # fmt: skip
        self.messages.append(message)
        self.by_wamid[message.wa_message_id] = message
        return message

    def inbound(self, sender: Any, name: Any, kind: Any, content: Any) -> StoredMessage:
        """Record a message from a contact (it opens their 24-hour window)."""
        if check_phone(sender):
            raise Refusal(400, "Invalid phone number format")
        if not isinstance(kind, str) or not kind:
            raise Refusal(400, "type is required (text, image, button …)")
        if kind == "text" and isinstance(content, str):
            content = {"body": content}
        if not isinstance(content, dict):
            raise Refusal(400, "content must be an object (or a string for text)")
        assert isinstance(sender, str)
        old_name = self.contacts.get(sender, (None, None))[0]
        self.contacts[sender] = (name if isinstance(name, str) and name else old_name, self.now())
        return self._store(sender, "inbound", kind, {kind: content}, "received")

    def inbound_payload(self, message: StoredMessage, context: str | None) -> dict[str, Any]:
        data = message_data(
            sender=message.phone,
            name=message.contact_name or "",
            kind=message.type,
            content=message.content[message.type],
            message_id=message.wa_message_id,
            when=message.timestamp,
            context=context,
        )
        return self.envelope("message", data)

    def envelope(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """The envelope the simulator delivers ``data`` in: now, on its clock."""
        return envelope(event, data, when=self.now(), project_id=self.settings.project_id)

    def send_text(self, body: Any) -> StoredMessage:
        """Accept an outbound text, or refuse it as the portal does."""
        to = body.get("to") if isinstance(body, dict) else None
        text = body.get("message") if isinstance(body, dict) else None
        if check_phone(to):
            raise Refusal(400, "Invalid phone number format")
        if problem := check_text(text):
            raise Refusal(400, problem.error)
        assert isinstance(to, str) and isinstance(text, str)
        last_inbound = self.contacts.get(to, (None, None))[1]
        if last_inbound is None or self.now() - last_inbound > WINDOW:
            raise Refusal(400, "Outside 24-hour messaging window")
        message = self._store(to, "outbound", "text", {"text": {"body": text}}, "accepted")
        if self.chaos.record_delay > 0:  # in the conversation's history only that much later
            message.recorded_at = message.timestamp + timedelta(seconds=self.chaos.record_delay)
        self.sent.append(
            {
                "messageId": message.wa_message_id,
                "to": to,
                "message": text,
                "at": iso(message.timestamp),
            }
        )
        return message

    def status_payload(
        self, message: StoredMessage, status: str, errors: list[Any] | None = None
    ) -> dict[str, Any]:
        """Record ``status`` (if it advances the message) and return its webhook payload."""
        if STATUS_RANK.get(status, 0) > STATUS_RANK.get(message.status, 0):
            message.status = status
        data: dict[str, Any] = {
            "messageId": message.wa_message_id,
            "status": status,
            "recipient": message.phone,
            "timestamp": str(int(self.now().timestamp())),
        }
        if errors is not None:
            data["errors"] = errors
        return self.envelope("status", data)

    def mark_read(self, body: Any) -> None:
        message_id = body.get("messageId") if isinstance(body, dict) else None
        typing = body.get("showTypingIndicator", False) if isinstance(body, dict) else False
        if not isinstance(message_id, str) or not message_id.startswith("wamid."):
            raise Refusal(400, "Invalid parameter")
        if not isinstance(typing, bool):
            raise Refusal(400, "Invalid parameter")
        message = self.by_wamid.get(message_id)
        if message is None:
            raise Refusal(404, "Message not found")
        if message.direction != "inbound":
            raise Refusal(400, "Invalid parameter")
        message.status = "read"
        self.mark_reads.append(
            {"messageId": message_id, "from": message.phone, "showTypingIndicator": typing,
             "at": iso(self.now())}
        )  # fmt: skip

    def conversations(self, cursor: str | None, limit: str | None) -> dict[str, Any]:
        """GET /conversations: a page of conversations, the latest first."""
        return conversations_page(self.messages, self.contacts, cursor, limit)

    def conversation_messages(
        self, phone: str, cursor: str | None, limit: str | None
    ) -> dict[str, Any]:
        """GET /conversations/:phone/messages: a page of its messages, the latest first."""
        return messages_page(self.messages, phone, cursor, limit, self.now())

    # -- webhook configuration ----------------------------------------------------------

    def webhook_json(self) -> dict[str, Any]:
        return {
            "phoneNumber": self.settings.phone_number,
            "webhookUrl": self.webhook_url,
            "webhookSecret": self.webhook_secret,
            "webhookEnabled": self.webhook_enabled,
            "webhookEvents": list(self.webhook_events),
        }

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return
        insecure_ok = self.settings.allow_insecure_webhooks
        if parts.scheme == "http" and insecure_ok and parts.hostname in _LOCAL_HOSTS:
            return
        raise Refusal(400, "Webhook URL must be an HTTPS URL")

    def set_webhook(self, body: Any) -> None:
        if not self.settings.verified:
            raise Refusal(400, NOT_VERIFIED)
        if not isinstance(body, dict):
            raise Refusal(400, "Invalid parameter")
        url, enabled = body.get("webhookUrl"), body.get("webhookEnabled")
        if not isinstance(url, str) or not isinstance(enabled, bool):
            raise Refusal(400, "Invalid parameter")
        if url:
            self._check_url(url)
        elif enabled:
            raise Refusal(400, "Invalid parameter")
        if "webhookEvents" in body:
            if check_webhook_events(body["webhookEvents"]):
                raise Refusal(400, "Invalid parameter")
            self.webhook_events = list(dict.fromkeys(body["webhookEvents"]))
        self.webhook_url, self.webhook_enabled = url, enabled
        if enabled and self.webhook_secret is None:
            self.webhook_secret = secrets.token_hex(32)

    def clear_webhook(self) -> None:
        """Disable and clear; the secret is kept so re-enabling does not break receivers."""
        self.webhook_url, self.webhook_enabled = "", False
        self.webhook_events = ["messages", "statuses"]

    def wants(self, event: str) -> bool:
        """Whether an event of this kind is to be delivered now."""
        wanted = {"message": "messages", "status": "statuses"}.get(event)
        return bool(
            self.webhook_enabled
            and self.webhook_url
            and self.webhook_secret
            and (wanted is None or wanted in self.webhook_events)
        )

    def history(self, phone: str | None = None) -> dict[str, Any]:
        """What happened: sends, mark-reads (typing shown or not) and webhook deliveries."""

        def keep(item: dict[str, Any], key: str) -> bool:
            return phone is None or item.get(key) == phone

        return {
            "sent": [s for s in self.sent if keep(s, "to")],
            "markReads": [m for m in self.mark_reads if keep(m, "from")],
            "deliveries": [d for d in self.deliveries if keep(d, "phone")],
            "clock": iso(self.now()),
            "chaos": asdict(self.chaos),
        }
