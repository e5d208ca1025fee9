"""The portal API of spec §1–4, as the simulator serves it (authentication and chaos in ``app``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.sim.common import deliverer_of, ok, read_json, sim_state
from service.sim.config import Refusal

TEST_MESSAGE = "This is a test webhook from WABA Portal"


async def send_text(request: Request) -> Response:
    state = sim_state(request)
    message = state.send_text(await read_json(request))
    deliverer_of(request).statuses(message)
    record = state.sent[-1]
    if state.chaos.hold_after_send > 0:  # a client dying now leaves its send unrecorded
        await asyncio.sleep(state.chaos.hold_after_send)
    if state.roll("error_after_send_next", state.chaos.error_after_send_rate):
        record["answered"] = 500
        return JSONResponse({"error": "Internal server error"}, 500)
    record["answered"] = 200
    return ok(messageId=message.wa_message_id)


async def mark_read(request: Request) -> Response:
    sim_state(request).mark_read(await read_json(request))
    return ok()


async def conversations(request: Request) -> Response:
    params = request.query_params
    return JSONResponse(sim_state(request).conversations(params.get("cursor"), params.get("limit")))


async def messages(request: Request) -> Response:
    params = request.query_params
    phone = request.path_params["phone"]
    return JSONResponse(
        sim_state(request).conversation_messages(phone, params.get("cursor"), params.get("limit"))
    )


async def templates(request: Request) -> Response:
    return JSONResponse({"data": sim_state(request).templates.all()})


async def create_template(request: Request) -> Response:
    return ok(sim_state(request).templates.create(await read_json(request)))


async def edit_template(request: Request) -> Response:
    body = await read_json(request)
    return ok(sim_state(request).templates.edit(request.path_params["id"], body))


async def delete_template(request: Request) -> Response:
    sim_state(request).templates.delete(request.path_params["name"])
    return ok()


async def get_webhook(request: Request) -> Response:
    return ok(sim_state(request).webhook_json())


async def put_webhook(request: Request) -> Response:
    state = sim_state(request)
    state.set_webhook(await read_json(request))
    return ok(state.webhook_json())


async def delete_webhook(request: Request) -> Response:
    sim_state(request).clear_webhook()
    return ok()


async def test_webhook(request: Request) -> Response:
    state = sim_state(request)
    url, secret = state.webhook_url, state.webhook_secret
    if not (url and state.webhook_enabled and secret):
        raise Refusal(400, "Webhook is not configured: set a webhookUrl and enable it first")
    payload = state.envelope("test", {"message": TEST_MESSAGE, "testId": uuid.uuid4().hex})
    result = await deliverer_of(request).post(url, payload, secret)
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
        return ok(data)
    error = (
        f"Webhook endpoint returned status {result.status_code}"
        if result.status_code is not None
        else f"Webhook endpoint could not be reached ({result.reason})"
    )
    return JSONResponse({"success": False, "error": error, "data": data})
