"""The portal API client: every documented endpoint (spec §1–4), typed results, safe retries.

``PortalClient(settings)`` keeps one ``httpx.Client`` (one connection pool of
``settings.max_connections``, one TLS context) for its lifetime: build one per process and
close it at exit. ``AsyncPortalClient`` (``service.portal.aclient``) is its twin on the event
loop; both run the endpoints of ``service.portal.endpoints`` by the rules of
``service.portal.rules``.

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
``service.portal.ratelimit``) paces sends across processes and holds every call of every
process back after a 429.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from service.portal import endpoints
from service.portal.backoff import RetryPolicy
from service.portal.config import PortalSettings
from service.portal.models import (
    Conversation,
    Message,
    Page,
    SentMessage,
    Template,
    WebhookConfig,
    WebhookTestResult,
)
from service.portal.rules import Call, CallObserver, Limiter, NoObserver, call_rules
from service.portal.transport import NoLimiter, drive
from service.portal.validation import CONVERSATIONS_MAX_LIMIT, MESSAGES_MAX_LIMIT

__all__ = ["Limiter", "PortalClient", "http_options"]

R = TypeVar("R")


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass  # the portal API sets no cookies


class NoCookieJar:
    """Mixed into an httpx client, keeps no cookies: httpx otherwise wraps every response in
    urllib objects to look for ``Set-Cookie`` (measured: 6% of a mark-read job's time)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: Any) -> None:
        pass


class _CookielessClient(NoCookieJar, httpx.Client):
    pass


def http_options(settings: PortalSettings) -> dict[str, Any]:
    """Return the options both clients give httpx: base URL, headers, timeouts, pool size."""
    return {
        "base_url": settings.api_url.rstrip("/") + "/",
        "headers": {
            "Authorization": f"Bearer {settings.api_key}",
            "User-Agent": "wabahooks",
            "Accept": "application/json",
        },
        "timeout": httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        "limits": settings.limits(),
        "follow_redirects": False,
    }


class PortalClient:
    """A synchronous client for the WABA Portal API. Use as a context manager or ``close()``.

    Safe to share between threads (httpx's pool and the Redis limiter are).
    """

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
        self._http = _CookielessClient(transport=transport, **http_options(settings))
        self._retry = retry or RetryPolicy(
            max_attempts=settings.max_attempts, budget=settings.retry_budget
        )
        self._limiter: Limiter = limiter if limiter is not None else NoLimiter()
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._observer: CallObserver = observer if observer is not None else NoObserver()

    def __repr__(self) -> str:
        return f"PortalClient(api_url={self._url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def run(self, call: Call[R]) -> R:
        """Run one :class:`~service.portal.rules.Call` by the rules; return its result."""
        rules = call_rules(
            call, self._retry, clock=self._clock, rand=self._rand, observer=self._observer
        )
        return drive(rules, self._http, self._limiter, self._sleep)

    # -- messages -----------------------------------------------------------------------

    def send_text(self, to: str, message: str) -> SentMessage:
        """Send a free-form text (inside the 24-hour window); return its ``wamid.`` id."""
        return self.run(endpoints.send_text(to, message))

    def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        """Mark an inbound message read (blue ticks), optionally showing "typing…"."""
        self.run(endpoints.mark_read(message_id, show_typing_indicator))

    # -- conversations ------------------------------------------------------------------

    def conversations(self, *, cursor: str | None = None, limit: int = 20) -> Page[Conversation]:
        """Return one page of conversations, newest first (``server_time``: the portal's)."""
        return self.run(endpoints.conversations(cursor, limit))

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
        return self.run(endpoints.messages(phone_number, cursor, limit))

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
        cursor: str | None = None
        while True:
            page = self.messages(to, cursor=cursor, limit=MESSAGES_MAX_LIMIT)
            found, stop = endpoints.found_sent(page, message, since)
            if stop:
                return found
            cursor = page.next_cursor

    # -- templates ----------------------------------------------------------------------

    def templates(self) -> list[Template]:
        """Return every template with its review status."""
        return self.run(endpoints.templates())

    def create_template(
        self,
        name: str,
        category: str,
        language: str,
        components: Sequence[Mapping[str, Any]],
    ) -> Template:
        """Submit a new template for review (only TEXT headers; BODY variables need examples)."""
        return self.run(endpoints.create_template(name, category, language, components))

    def edit_template(
        self, template_id: str, category: str, components: Sequence[Mapping[str, Any]]
    ) -> Template:
        """Edit a REJECTED template by its numeric id and resubmit it for review."""
        return self.run(endpoints.edit_template(template_id, category, components))

    def delete_template(self, name: str) -> None:
        """Delete the template(s) called ``name`` (every language)."""
        self.run(endpoints.delete_template(name))

    # -- webhook configuration ----------------------------------------------------------

    def webhook(self) -> WebhookConfig:
        """Return the webhook configuration, secret included."""
        return self.run(endpoints.webhook())

    def set_webhook(
        self, url: str, *, enabled: bool, events: Sequence[str] | None = None
    ) -> WebhookConfig:
        """Point webhooks at ``url`` (HTTPS; "" clears it); the first enable makes the secret."""
        return self.run(endpoints.set_webhook(url, enabled, events))

    def test_webhook(self) -> WebhookTestResult:
        """Have the portal send a test event to our endpoint; return what happened."""
        return self.run(endpoints.test_webhook())

    def delete_webhook(self) -> None:
        """Disable webhooks and clear their configuration."""
        self.run(endpoints.delete_webhook())
