"""The portal API client: every documented endpoint (spec §1–4), typed results, safe retries.

``PortalClient(settings)`` keeps one ``httpx.Client`` (one connection pool, one TLS context)
for its lifetime: build one per process and close it at exit.

Retries never double a message. The portal has no idempotency key, so:

- idempotent calls (reads, mark-read, template edit/delete, webhook configuration) retry on
  429, 5xx and transport errors;
- calls that create something (``send_text``, ``create_template``) retry only when the
  request provably never reached the portal (connect error, connect or pool timeout) or was
  refused with 429; a read timeout, a broken connection or a 5xx after the request was sent
  raises :class:`~service.portal.errors.OutcomeUnknown` (``find_sent`` helps reconcile).

Waits are exponential with full jitter, at least ``Retry-After``, bounded by
``RetryPolicy.max_attempts`` and ``RetryPolicy.budget`` seconds; a wait longer than the
budget left raises :class:`~service.portal.errors.RateLimited` at once, so an RQ job is
rescheduled rather than sleeping in the worker. A shared :class:`Limiter` (see
``service.portal.ratelimit``) paces every process and holds all of them back after a 429.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from service.events import mask_phone
from service.portal.backoff import RetryPolicy
from service.portal.config import PortalSettings
from service.portal.errors import invalid_request
from service.portal.models import (
    Conversation,
    Message,
    Page,
    SentMessage,
    Template,
    WebhookConfig,
    WebhookTestResult,
)
from service.portal.transport import Caller, CallObserver, Limiter
from service.portal.validation import (
    CONVERSATIONS_MAX_LIMIT,
    MESSAGES_MAX_LIMIT,
    Problem,
    check_category,
    check_components,
    check_limit,
    check_phone,
    check_template,
    check_text,
    check_webhook_events,
)

__all__ = ["Limiter", "PortalClient"]

log = structlog.get_logger("wabahooks.portal")


def _refuse(call: str, problem: Problem | None) -> None:
    if problem is not None:
        raise invalid_request(call, problem.error, problem.detail, status=None)


def _ignore(_body: Any) -> None:
    return None


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass  # the portal API sets no cookies


class _CookielessClient(httpx.Client):
    """An httpx client that keeps no cookies: httpx otherwise wraps every response in
    urllib objects to look for ``Set-Cookie`` (measured: 6% of a mark-read job's time)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: Any) -> None:
        pass


class PortalClient:
    """A synchronous client for the WABA Portal API. Use as a context manager or ``close()``."""

    def __init__(
        self,
        settings: PortalSettings,
        *,
        limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        observer: CallObserver | None = None,
    ) -> None:
        self._url = settings.api_url
        http = _CookielessClient(
            base_url=settings.api_url.rstrip("/") + "/",
            headers={
                "Authorization": f"Bearer {settings.api_key}",
                "User-Agent": "wabahooks",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            transport=transport,
            follow_redirects=False,
        )
        policy = retry or RetryPolicy(
            max_attempts=settings.max_attempts, budget=settings.retry_budget
        )
        self._caller = Caller(
            http,
            retry=policy,
            limiter=limiter,
            sleep=sleep,
            clock=clock,
            rand=rand,
            observer=observer,
        )
        self._call = self._caller.call

    def __repr__(self) -> str:
        return f"PortalClient(api_url={self._url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._caller.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- messages -----------------------------------------------------------------------

    def send_text(self, to: str, message: str) -> SentMessage:
        """Send a free-form text (inside the 24-hour window); return its ``wamid.`` id."""
        _refuse("send_text", check_phone(to))
        _refuse("send_text", check_text(message))
        sent = self._call(
            "send_text",
            "POST",
            "messages/text",
            SentMessage.from_json,
            body={"to": to, "message": message},
            idempotent=False,
        )
        log.info("portal_sent", to=mask_phone(to), message_id=sent.message_id)
        return sent

    def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        """Mark an inbound message read (blue ticks), optionally showing "typing…"."""
        if not isinstance(message_id, str) or not message_id.startswith("wamid."):
            _refuse(
                "mark_read",
                Problem("Invalid parameter", "messageId must be the inbound wamid.… id"),
            )
        self._call(
            "mark_read",
            "POST",
            "messages/mark-read",
            _ignore,
            body={"messageId": message_id, "showTypingIndicator": show_typing_indicator},
        )

    # -- conversations ------------------------------------------------------------------

    def conversations(self, *, cursor: str | None = None, limit: int = 20) -> Page[Conversation]:
        """Return one page of conversations, newest first."""
        _refuse("conversations", check_limit(limit, CONVERSATIONS_MAX_LIMIT))
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._call("conversations", "GET", "conversations", Conversation.page, params=params)

    def iter_conversations(self, *, limit: int = CONVERSATIONS_MAX_LIMIT) -> Iterator[Conversation]:
        """Yield every conversation, newest first, following ``nextCursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.conversations(cursor=cursor, limit=limit)
            yield from page.items
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]:
        """Return one page of a conversation's messages (ours included), newest first."""
        _refuse("messages", check_phone(phone_number))
        _refuse("messages", check_limit(limit, MESSAGES_MAX_LIMIT))
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._call(
            "messages", "GET", f"conversations/{phone_number}/messages", Message.page, params=params
        )

    def iter_messages(
        self, phone_number: str, *, limit: int = MESSAGES_MAX_LIMIT
    ) -> Iterator[Message]:
        """Yield every message of a conversation, newest first, page by page."""
        cursor: str | None = None
        while True:
            page = self.messages(phone_number, cursor=cursor, limit=limit)
            yield from page.items
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    def find_sent(self, to: str, message: str, *, since: datetime) -> Message | None:
        """Return our outbound ``message`` to ``to`` sent at or after ``since``, if any.

        The way to settle an :class:`~service.portal.errors.OutcomeUnknown` send.
        """
        for item in self.iter_messages(to):
            if item.timestamp < since:
                return None
            if item.direction == "outbound" and item.text == message:
                return item
        return None

    # -- templates ----------------------------------------------------------------------

    def templates(self) -> list[Template]:
        """Return every template with its review status."""

        def parse(body: Any) -> list[Template]:
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ValueError("data is not a list")
            return [Template.from_json(item) for item in data]

        return self._call("templates", "GET", "templates", parse)

    def create_template(
        self,
        name: str,
        category: str,
        language: str,
        components: Sequence[Mapping[str, Any]],
    ) -> Template:
        """Submit a new template for review (only TEXT headers; BODY variables need examples)."""
        _refuse("create_template", check_template(name, category, language, list(components)))
        body = {
            "name": name,
            "category": category,
            "language": language,
            "components": [dict(c) for c in components],
        }
        return self._call(
            "create_template", "POST", "templates", _template, body=body, idempotent=False
        )

    def edit_template(
        self, template_id: str, category: str, components: Sequence[Mapping[str, Any]]
    ) -> Template:
        """Edit a REJECTED template by its numeric id and resubmit it for review."""
        if not template_id.isdigit():
            _refuse(
                "edit_template",
                Problem("Invalid parameter", "templates are edited by numeric id, not by name"),
            )
        _refuse("edit_template", check_category(category))
        _refuse("edit_template", check_components(list(components)))
        body = {"category": category, "components": [dict(c) for c in components]}
        return self._call(
            "edit_template", "POST", f"templates/{template_id}/edit", _template, body=body
        )

    def delete_template(self, name: str) -> None:
        """Delete the template(s) called ``name`` (every language)."""
        if not name:
            _refuse("delete_template", Problem("Invalid parameter", "name must not be empty"))
        self._call("delete_template", "DELETE", f"templates/{quote(name, safe='')}", _ignore)

    # -- webhook configuration ----------------------------------------------------------

    def webhook(self) -> WebhookConfig:
        """Return the webhook configuration, secret included."""
        return self._call("webhook", "GET", "webhook", _webhook_config)

    def set_webhook(
        self, url: str, *, enabled: bool, events: Sequence[str] | None = None
    ) -> WebhookConfig:
        """Point webhooks at ``url`` (HTTPS; "" clears it); the first enable makes the secret."""
        body: dict[str, Any] = {"webhookUrl": url, "webhookEnabled": enabled}
        if events is not None:
            _refuse("set_webhook", check_webhook_events(list(events)))
            body["webhookEvents"] = list(events)
        return self._call("set_webhook", "PUT", "webhook", _webhook_config, body=body)

    def test_webhook(self) -> WebhookTestResult:
        """Have the portal send a test event to our endpoint; return what happened."""
        return self._call("test_webhook", "POST", "webhook/test", WebhookTestResult.from_json)

    def delete_webhook(self) -> None:
        """Disable webhooks and clear their configuration."""
        self._call("delete_webhook", "DELETE", "webhook", _ignore)


def _template(body: Any) -> Template:
    data = body.get("data", body) if isinstance(body, dict) else body
    return Template.from_json(data)


def _webhook_config(body: Any) -> WebhookConfig:
    if not isinstance(body, dict):
        raise ValueError("response is not an object")
    return WebhookConfig.from_json(body.get("data"))
