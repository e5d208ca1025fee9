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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from email.utils import format_datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.sim.config import SETTING_NAMES, Refusal, SimConfig, update
from service.sim.delivery import Deliverer
from service.sim.state import SimState

__all__ = ["create_sim_app"]

Handler = Callable[[Request], Awaitable[Response]]
TEST_MESSAGE = "This is a test webhook from WABA Portal"


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise Refusal(400, "Invalid JSON body") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refusal(400, "Send a JSON object")
    return body


def _ok(data: Any = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"success": True, **extra}
    if data is not None:
        body["data"] = data
    return JSONResponse(body)


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


def create_sim_app(config: SimConfig | None = None) -> Starlette:
    """Return the simulator app; its state is ``app.state.sim``."""
    state = SimState(config or SimConfig())
    box: dict[str, Deliverer] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            box["deliverer"] = Deliverer(state, http)
            try:
                yield
            finally:
                await box["deliverer"].close()

    def api(handler: Handler, *, write: bool) -> Handler:
        async def endpoint(request: Request) -> Response:
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
            try:
                return await handler(request)
            except Refusal as refusal:
                return JSONResponse({"error": refusal.error}, refusal.status)

        return endpoint

    # -- the portal API -----------------------------------------------------------------

    async def send_text(request: Request) -> Response:
        message = state.send_text(await _body(request))
        box["deliverer"].statuses(message)
        record = state.sent[-1]
        if state.chaos.hold_after_send > 0:  # a client dying now leaves its send unrecorded
            await asyncio.sleep(state.chaos.hold_after_send)
        if state.roll("error_after_send_next", state.chaos.error_after_send_rate):
            record["answered"] = 500
            return JSONResponse({"error": "Internal server error"}, 500)
        record["answered"] = 200
        return _ok(messageId=message.wa_message_id)

    async def mark_read(request: Request) -> Response:
        state.mark_read(await _body(request))
        return _ok()

    async def conversations(request: Request) -> Response:
        params = request.query_params
        return JSONResponse(state.conversations(params.get("cursor"), params.get("limit")))

    async def messages(request: Request) -> Response:
        params = request.query_params
        phone = request.path_params["phone"]
        return JSONResponse(
            state.conversation_messages(phone, params.get("cursor"), params.get("limit"))
        )

    async def templates(_request: Request) -> Response:
        return JSONResponse({"data": state.templates.all()})

    async def create_template(request: Request) -> Response:
        return _ok(state.templates.create(await _body(request)))

    async def edit_template(request: Request) -> Response:
        body = await _body(request)
        return _ok(state.templates.edit(request.path_params["id"], body))

    async def delete_template(request: Request) -> Response:
        state.templates.delete(request.path_params["name"])
        return _ok()

    async def get_webhook(_request: Request) -> Response:
        return _ok(state.webhook_json())

    async def put_webhook(request: Request) -> Response:
        state.set_webhook(await _body(request))
        return _ok(state.webhook_json())

    async def delete_webhook(_request: Request) -> Response:
        state.clear_webhook()
        return _ok()

    async def test_webhook(_request: Request) -> Response:
        url, secret = state.webhook_url, state.webhook_secret
        if not (url and state.webhook_enabled and secret):
            raise Refusal(400, "Webhook is not configured: set a webhookUrl and enable it first")
        payload = state.envelope("test", {"message": TEST_MESSAGE, "testId": uuid.uuid4().hex})
        result = await box["deliverer"].post(url, payload, secret)
        state.deliveries.append(
            {"event": "test", "phone": None, "url": url, "duplicate": False, "done": True,
             "attempts": [result.to_json()], "delivered": result.ok, "payload": payload}
        )  # fmt: skip
        data: dict[str, Any] = {
            "webhookUrl": url,
            "statusCode": result.status_code,
            "statusText": result.reason,
            "duration": f"{result.duration_ms}ms",
            "responseBody": result.body,
            "testPayload": payload,
        }
        if result.ok:
            return _ok(data)
        error = (
            f"Webhook endpoint returned status {result.status_code}"
            if result.status_code is not None
            else f"Webhook endpoint could not be reached ({result.reason})"
        )
        return JSONResponse({"success": False, "error": error, "data": data})

    # -- the control API ----------------------------------------------------------------

    def ctl(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Refusal as refusal:
                return JSONResponse({"error": refusal.error}, refusal.status)

        return endpoint

    async def inbound(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise Refusal(400, "Send an object: from, name, type, content")
        content = body.get("content", body.get("text"))
        message = state.inbound(
            body.get("from"), body.get("name"), body.get("type", "text"), content
        )
        context = body.get("context")
        payload = state.inbound_payload(message, context if isinstance(context, str) else None)
        box["deliverer"].deliver(payload, message.phone)
        return JSONResponse({"messageId": message.wa_message_id, "id": message.id})

    async def status(request: Request) -> Response:
        body = await _body(request)
        message = state.by_wamid.get(str(body.get("messageId"))) if isinstance(body, dict) else None
        if message is None or message.direction != "outbound":
            raise Refusal(404, "No outbound message with that messageId")
        errors = body.get("errors")
        payload = state.status_payload(message, str(body.get("status", "failed")), errors)
        box["deliverer"].deliver(payload, message.phone)
        return JSONResponse({"status": message.status})

    async def history(request: Request) -> Response:
        return JSONResponse(state.history(request.query_params.get("phone")))

    async def deliveries(_request: Request) -> Response:
        return JSONResponse({"pending": box["deliverer"].pending})

    async def wait_deliveries(request: Request) -> Response:
        body = await _body(request) if await request.body() else {}
        timeout = body.get("timeout", 10) if isinstance(body, dict) else 10
        if not isinstance(timeout, int | float) or timeout < 0:
            raise Refusal(400, "timeout must be a number of seconds")
        return JSONResponse({"pending": await box["deliverer"].drain(float(timeout))})

    async def chaos(request: Request) -> Response:
        if request.method == "PUT":
            body = await _body(request)
            update(state.chaos, _object(body))
        return JSONResponse(asdict(state.chaos))

    async def settings(request: Request) -> Response:
        if request.method == "PUT":
            body = await _body(request)
            update(state.settings, _object(body), SETTING_NAMES)
        return JSONResponse({name: getattr(state.settings, name) for name in sorted(SETTING_NAMES)})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            seconds = body.get("advance") if isinstance(body, dict) else None
            if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                raise Refusal(400, "advance must be a number of seconds")
            state.advance(float(seconds))
        return JSONResponse({"now": state.history()["clock"]})

    async def template_status(request: Request) -> Response:
        body = await _body(request)
        wanted = body.get("status") if isinstance(body, dict) else None
        return JSONResponse(
            {"data": state.templates.set_status(request.path_params["key"], wanted)}
        )

    async def reset(_request: Request) -> Response:
        await box["deliverer"].close()
        state.reset()
        return JSONResponse({"reset": True})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                            exc.status_code)  # fmt: skip

    v1 = "/api/v1"
    routes = [
        Route(f"{v1}/messages/text", api(send_text, write=True), methods=["POST"]),
        Route(f"{v1}/messages/mark-read", api(mark_read, write=True), methods=["POST"]),
        Route(f"{v1}/conversations", api(conversations, write=False), methods=["GET"]),
        Route(
            f"{v1}/conversations/{{phone}}/messages", api(messages, write=False), methods=["GET"]
        ),
        Route(f"{v1}/templates", api(templates, write=False), methods=["GET"]),
        Route(f"{v1}/templates", api(create_template, write=True), methods=["POST"]),
        Route(f"{v1}/templates/{{id}}/edit", api(edit_template, write=True), methods=["POST"]),
        Route(f"{v1}/templates/{{name}}", api(delete_template, write=True), methods=["DELETE"]),
        Route(f"{v1}/webhook", api(get_webhook, write=False), methods=["GET"]),
        Route(f"{v1}/webhook", api(put_webhook, write=True), methods=["PUT"]),
        Route(f"{v1}/webhook", api(delete_webhook, write=True), methods=["DELETE"]),
        Route(f"{v1}/webhook/test", api(test_webhook, write=True), methods=["POST"]),
        Route("/sim/inbound", ctl(inbound), methods=["POST"]),
        Route("/sim/status", ctl(status), methods=["POST"]),
        Route("/sim/history", ctl(history), methods=["GET"]),
        Route("/sim/deliveries", ctl(deliveries), methods=["GET"]),
        Route("/sim/deliveries/wait", ctl(wait_deliveries), methods=["POST"]),
        Route("/sim/chaos", ctl(chaos), methods=["GET", "PUT"]),
        Route("/sim/settings", ctl(settings), methods=["GET", "PUT"]),
        Route("/sim/clock", ctl(clock), methods=["GET", "POST"]),
        Route("/sim/templates/{key}/status", ctl(template_status), methods=["POST"]),
        Route("/sim/reset", ctl(reset), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.add_middleware(_DateHeader, state=state)
    app.state.sim = state
    return app
