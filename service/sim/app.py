"""A WABA Portal simulator: the API of spec §1–4, webhook delivery as §5, plus a control API.

``create_sim_app(SimConfig(...))`` returns a Starlette app keeping its state in memory
(``app.state.sim`` is the :class:`~service.sim.state.SimState`). Run it with
``wabahooks portal-sim``. Every response carries a ``Date`` header on the simulator's own
clock (``clock_skew`` and ``POST /sim/clock`` move it): serve the app with uvicorn's
``date_header=False``, or responses would carry two. API calls need
``Authorization: Bearer <api_key>``; keys listed in ``readonly_keys`` may only GET (403
otherwise).

Control API (no authentication: bind it to 127.0.0.1), all JSON:

==================================  ===========================================================
``POST /sim/inbound``               a contact writes: ``{"from", "name", "type", "content"}``
                                    (``content`` a string for text, else the type's object;
                                    optional ``"context": "wamid.…"``); opens the 24-hour
                                    window, delivers the message webhook; answers
                                    ``{"messageId": "wamid.…", "id": …}``
``POST /sim/status``                deliver a status: ``{"messageId", "status", "errors"?}``
                                    (e.g. ``failed`` with ``errors``)
``GET /sim/history[?phone=…]``      ``{"sent", "markReads", "deliveries", "clock", "chaos"}``:
                                    sends (with ``answered`` 200/500), mark-reads (with
                                    ``showTypingIndicator``), deliveries with every attempt
``GET /sim/deliveries``             ``{"pending": n}``: background deliveries not finished
``POST /sim/deliveries/wait``       ``{"timeout": s}`` (default 10): wait for them; ``{"pending"}``
``GET|PUT /sim/chaos``              read or change :class:`~service.sim.config.Chaos`
``GET|PUT /sim/settings``           read or change ``verified``, ``allow_insecure_webhooks``,
                                    ``auto_read``, ``status_delay``, ``delivery_attempts``,
                                    ``delivery_backoff``, ``delivery_timeout``, ``clock_skew``
``GET /sim/clock``                  ``{"now": ISO-8601}``
``POST /sim/clock``                 ``{"advance": seconds}``: move the simulator's clock
``POST /sim/templates/{key}/status``  ``{"status": "APPROVED" | "REJECTED" | …}`` by id or name
``POST /sim/reset``                 cancel deliveries, forget everything, back to the start-up
                                    configuration
==================================  ===========================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.utils import format_datetime

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.sim import api, control
from service.sim.common import sim_state
from service.sim.config import Refusal, SimConfig
from service.sim.delivery import Deliverer
from service.sim.state import SimState

__all__ = ["create_sim_app"]

Handler = Callable[[Request], Awaitable[Response]]


class _DateHeader:
    """Adds ``Date`` on the simulator's clock to every response (a skewed portal's, too)."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = format_datetime(self.state.now(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await self.app(scope, receive, dated)


def _authorised(handler: Handler, *, write: bool) -> Handler:
    """A portal API endpoint: chaos latency, the API key (read-only keys may only GET), chaos
    429/500, then the handler; a :class:`Refusal` becomes the portal's error body."""

    async def endpoint(request: Request) -> Response:
        state = sim_state(request)
        chaos = state.chaos
        if chaos.latency > 0:
            await asyncio.sleep(chaos.latency)
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        settings = state.settings
        if not key or (key != settings.api_key and key not in settings.readonly_keys):
            return JSONResponse({"error": "Invalid API key"}, 401)
        if write and key != settings.api_key:
            return JSONResponse({"error": "API key does not have permission"}, 403)
        if state.roll("rate_limit_next", chaos.rate_limit_rate):
            headers = {"Retry-After": f"{chaos.retry_after:g}"}
            return JSONResponse({"error": "Too many requests"}, 429, headers=headers)
        if state.roll("server_error_next", chaos.server_error_rate):
            return JSONResponse({"error": "Internal server error"}, 500)
        return await _refusals(handler)(request)

    return endpoint


def _refusals(handler: Handler) -> Handler:
    """A control endpoint: a :class:`Refusal` becomes ``{"error": …}`` with its status."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Refusal as refusal:
            return JSONResponse({"error": refusal.error}, refusal.status)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                        exc.status_code)  # fmt: skip


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    async with httpx.AsyncClient(follow_redirects=False) as http:
        app.state.deliverer = Deliverer(app.state.sim, http)
        try:
            yield
        finally:
            await app.state.deliverer.close()


_V1 = "/api/v1"
_READ, _WRITE = ["GET"], ["POST"]
ROUTES = [
    Route(f"{_V1}/messages/text", _authorised(api.send_text, write=True), methods=_WRITE),
    Route(f"{_V1}/messages/mark-read", _authorised(api.mark_read, write=True), methods=_WRITE),
    Route(f"{_V1}/conversations", _authorised(api.conversations, write=False), methods=_READ),
    Route(
        f"{_V1}/conversations/{{phone}}/messages",
        _authorised(api.messages, write=False),
        methods=_READ,
    ),  # fmt: skip
    Route(f"{_V1}/templates", _authorised(api.templates, write=False), methods=_READ),
    Route(f"{_V1}/templates", _authorised(api.create_template, write=True), methods=_WRITE),
    Route(
        f"{_V1}/templates/{{id}}/edit", _authorised(api.edit_template, write=True), methods=_WRITE
    ),  # fmt: skip
    Route(
        f"{_V1}/templates/{{name}}",
        _authorised(api.delete_template, write=True),
        methods=["DELETE"],
    ),  # fmt: skip
    Route(f"{_V1}/webhook", _authorised(api.get_webhook, write=False), methods=_READ),
    Route(f"{_V1}/webhook", _authorised(api.put_webhook, write=True), methods=["PUT"]),
    Route(f"{_V1}/webhook", _authorised(api.delete_webhook, write=True), methods=["DELETE"]),
    Route(f"{_V1}/webhook/test", _authorised(api.test_webhook, write=True), methods=_WRITE),
    Route("/sim/inbound", _refusals(control.inbound), methods=_WRITE),
    Route("/sim/status", _refusals(control.status), methods=_WRITE),
    Route("/sim/history", _refusals(control.history), methods=_READ),
    Route("/sim/deliveries", _refusals(control.deliveries), methods=_READ),
    Route("/sim/deliveries/wait", _refusals(control.wait_deliveries), methods=_WRITE),
    Route("/sim/chaos", _refusals(control.chaos), methods=["GET", "PUT"]),
    Route("/sim/settings", _refusals(control.settings), methods=["GET", "PUT"]),
    Route("/sim/clock", _refusals(control.clock), methods=["GET", "POST"]),
    Route("/sim/templates/{key}/status", _refusals(control.template_status), methods=_WRITE),
    Route("/sim/reset", _refusals(control.reset), methods=_WRITE),
]


def create_sim_app(config: SimConfig | None = None) -> Starlette:
    """Return the simulator app; its state is ``app.state.sim``, its deliverer (while the app
    runs) ``app.state.deliverer``."""
    state = SimState(config or SimConfig())
    app = Starlette(
        routes=ROUTES, lifespan=_lifespan, exception_handlers={HTTPException: _http_error}
    )
    app.add_middleware(_DateHeader, state=state)
    app.state.sim = state
    return app
