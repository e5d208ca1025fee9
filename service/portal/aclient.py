"""``AsyncPortalClient``: :class:`~service.portal.client.PortalClient` on the event loop.

The same methods as coroutines (``iter_messages``/``iter_conversations`` as async iterators),
the same validation, errors, retry rules and observer calls: both clients run the endpoints of
``service.portal.endpoints`` through ``service.portal.rules``; only the driver differs.

Its transport is aiohttp's connection pool under httpx's API (``service.portal.aiotransport``;
chosen by ``bench/portal_transport.py``), sized by ``settings.max_connections`` for hundreds of
calls in flight. Build one per process *inside* the running loop, share it between tasks, and
``await client.aclose()`` (or ``async with``) before the loop ends::

    redis = redis.asyncio.Redis.from_url(url, max_connections=…)
    settings = PortalSettings.from_env()
    portal = AsyncPortalClient(settings, limiter=AsyncRateLimiter.from_settings(redis, settings))
    try:
        await portal.mark_read(message_id, show_typing_indicator=True)
        await portal.send_text("919876543210", "On its way")
    finally:
        await portal.aclose()
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
import orjson

from service import tracing
from service.portal import endpoints
from service.portal.aiotransport import portal_transport
from service.portal.backoff import RetryPolicy
from service.portal.client import http_options
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
from service.portal.rules import AsyncLimiter, Call, CallObserver, NoObserver, call_rules
from service.portal.transport import AsyncNoLimiter, adrive
from service.portal.validation import CONVERSATIONS_MAX_LIMIT, MESSAGES_MAX_LIMIT

__all__ = ["AsyncPortalClient"]

R = TypeVar("R")


def _dumps(value: Any) -> bytes:
    """JSON bytes (orjson; the standard library for what orjson refuses, a lone surrogate)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


class _DirectClient:
    """httpx's ``Request`` and ``Response`` over the transport, without ``httpx.AsyncClient``'s
    per-request machinery (URL merging, auth, redirect and cookie handling, none of which the
    portal uses): that machinery measured ~20 % of a worker's CPU per mark-read + reply at
    200 jobs in flight (py-spy), more than the aiohttp transport underneath."""

    def __init__(self, transport: httpx.AsyncBaseTransport, options: dict[str, Any]) -> None:
        self._transport = transport
        self._base = str(options["base_url"])
        self._headers = httpx.Headers(options["headers"])
        self._json_headers = httpx.Headers(
            {**options["headers"], "Content-Type": "application/json"}
        )
        #: URLs of the paths without parameters (sends, mark-reads), parsed once.
        self._urls: dict[str, httpx.URL] = {}
        timeout: httpx.Timeout = options["timeout"]
        self._extensions = {"timeout": timeout.as_dict()}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        url = self._urls.get(path) if params is None else None
        if url is None:
            url = httpx.URL(self._base + path, params=params)
            if params is None:
                self._urls[path] = url
        if json is None:
            request = httpx.Request(method, url, headers=self._headers, extensions=self._extensions)
        else:
            request = httpx.Request(
                method,
                url,
                content=_dumps(json),
                headers=self._json_headers,
                extensions=self._extensions,
            )
        response = await self._transport.handle_async_request(request)
        if not hasattr(response, "_content"):
            await response.aread()  # a test's transport may stream; the portal's reads it whole
        response.request = request
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class AsyncPortalClient:
    """An asyncio client for the WABA Portal API. Use ``async with`` or ``await aclose()``.

    ``transport``: an ``httpx.AsyncBaseTransport`` instead of the aiohttp one (tests pass an
    ``httpx.MockTransport``).
    """

    def __init__(
        self,
        settings: PortalSettings,
        *,
        limiter: AsyncLimiter | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        observer: CallObserver | None = None,
    ) -> None:
        self._url = settings.api_url
        #: What the send fence must grant a request (``service.portal.fence``).
        self._request_timeout = settings.read_timeout
        options = http_options(settings)
        self._http = _DirectClient(
            transport if transport is not None else portal_transport(options["limits"]), options
        )
        self._retry = retry or RetryPolicy(
            max_attempts=settings.max_attempts, budget=settings.retry_budget
        )
        self._limiter: AsyncLimiter = limiter if limiter is not None else AsyncNoLimiter()
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._observer: CallObserver = observer if observer is not None else NoObserver()

    def __repr__(self) -> str:
        return f"AsyncPortalClient(api_url={self._url!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPortalClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def run(self, call: Call[R]) -> R:
        """Run one :class:`~service.portal.rules.Call` by the rules; return its result."""
        rules = call_rules(
            call, self._retry, clock=self._clock, rand=self._rand, observer=self._observer
        )
        http = tracing.portal_requester(self._http, call, self._url)  # as is when off
        return await adrive(
            rules, http, self._limiter, self._sleep, request_timeout=self._request_timeout
        )

    # -- messages -----------------------------------------------------------------------

    async def send_text(self, to: str, message: str) -> SentMessage:
        """Send a free-form text (inside the 24-hour window); return its ``wamid.`` id."""
        return await self.run(endpoints.send_text(to, message))

    async def mark_read(self, message_id: str, *, show_typing_indicator: bool = False) -> None:
        """Mark an inbound message read (blue ticks), optionally showing "typing…"."""
        await self.run(endpoints.mark_read(message_id, show_typing_indicator))

    # -- conversations ------------------------------------------------------------------

    async def conversations(
        self, *, cursor: str | None = None, limit: int = 20
    ) -> Page[Conversation]:
        """Return one page of conversations, newest first (``server_time``: the portal's)."""
        return await self.run(endpoints.conversations(cursor, limit))

    async def iter_conversations(
        self, *, limit: int = CONVERSATIONS_MAX_LIMIT
    ) -> AsyncIterator[Conversation]:
        """Yield every conversation, newest first, following ``nextCursor`` page by page."""
        cursor: str | None = None
        while True:
            page = await self.conversations(cursor=cursor, limit=limit)
            for item in page.items:
                yield item
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def messages(
        self, phone_number: str, *, cursor: str | None = None, limit: int = 30
    ) -> Page[Message]:
        """Return one page of a conversation's messages (ours included), newest first."""
        return await self.run(endpoints.messages(phone_number, cursor, limit))

    async def iter_messages(
        self, phone_number: str, *, limit: int = MESSAGES_MAX_LIMIT
    ) -> AsyncIterator[Message]:
        """Yield every message of a conversation, newest first, page by page."""
        cursor: str | None = None
        while True:
            page = await self.messages(phone_number, cursor=cursor, limit=limit)
            for item in page.items:
                yield item
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def find_sent(self, to: str, message: str, *, since: datetime) -> Message | None:
        """Return our outbound ``message`` to ``to`` sent at or after ``since``, if any.

        The way to settle an :class:`~service.portal.errors.OutcomeUnknown` send.
        """
        cursor: str | None = None
        while True:
            page = await self.messages(to, cursor=cursor, limit=MESSAGES_MAX_LIMIT)
            found, stop = endpoints.found_sent(page, message, since)
            if stop:
                return found
            cursor = page.next_cursor

    # -- templates ----------------------------------------------------------------------

    async def templates(self) -> list[Template]:
        """Return every template with its review status."""
        return await self.run(endpoints.templates())

    async def create_template(
        self,
        name: str,
        category: str,
        language: str,
        components: Sequence[Mapping[str, Any]],
    ) -> Template:
        """Submit a new template for review (only TEXT headers; BODY variables need examples)."""
        return await self.run(endpoints.create_template(name, category, language, components))

    async def edit_template(
        self, template_id: str, category: str, components: Sequence[Mapping[str, Any]]
    ) -> Template:
        """Edit a REJECTED template by its numeric id and resubmit it for review."""
        return await self.run(endpoints.edit_template(template_id, category, components))

    async def delete_template(self, name: str) -> None:
        """Delete the template(s) called ``name`` (every language)."""
        await self.run(endpoints.delete_template(name))

    # -- webhook configuration ----------------------------------------------------------

    async def webhook(self) -> WebhookConfig:
        """Return the webhook configuration, secret included."""
        return await self.run(endpoints.webhook())

    async def set_webhook(
        self, url: str, *, enabled: bool, events: Sequence[str] | None = None
    ) -> WebhookConfig:
        """Point webhooks at ``url`` (HTTPS; "" clears it); the first enable makes the secret."""
        return await self.run(endpoints.set_webhook(url, enabled, events))

    async def test_webhook(self) -> WebhookTestResult:
        """Have the portal send a test event to our endpoint; return what happened."""
        return await self.run(endpoints.test_webhook())

    async def delete_webhook(self) -> None:
        """Disable webhooks and clear their configuration."""
        await self.run(endpoints.delete_webhook())
