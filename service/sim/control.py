"""The simulator's control API (see ``service.sim.app``): contacts writing, statuses, the clock,
chaos, history and reset. No authentication: bind it to 127.0.0.1."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.sim.common import deliverer_of, json_object, read_json, sim_state
from service.sim.config import SETTING_NAMES, Refusal, update


async def inbound(request: Request) -> Response:
    state = sim_state(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Refusal(400, "Send an object: from, name, type, content")
    content = body.get("content", body.get("text"))
    message = state.inbound(body.get("from"), body.get("name"), body.get("type", "text"), content)
    context = body.get("context")
    payload = state.inbound_payload(message, context if isinstance(context, str) else None)
    deliverer_of(request).deliver(payload, message.phone)
    return JSONResponse({"messageId": message.wa_message_id, "id": message.id})


async def status(request: Request) -> Response:
    state = sim_state(request)
    body = await read_json(request)
    message = state.by_wamid.get(str(body.get("messageId"))) if isinstance(body, dict) else None
    if message is None or message.direction != "outbound":
        raise Refusal(404, "No outbound message with that messageId")
    errors = body.get("errors")
    payload = state.status_payload(message, str(body.get("status", "failed")), errors)
    deliverer_of(request).deliver(payload, message.phone)
    return JSONResponse({"status": message.status})


async def history(request: Request) -> Response:
    return JSONResponse(sim_state(request).history(request.query_params.get("phone")))


async def deliveries(request: Request) -> Response:
    return JSONResponse({"pending": deliverer_of(request).pending})


async def wait_deliveries(request: Request) -> Response:
    body = await read_json(request) if await request.body() else {}
    timeout = body.get("timeout", 10) if isinstance(body, dict) else 10
    if not isinstance(timeout, int | float) or timeout < 0:
        raise Refusal(400, "timeout must be a number of seconds")
    return JSONResponse({"pending": await deliverer_of(request).drain(float(timeout))})


async def chaos(request: Request) -> Response:
    state = sim_state(request)
    if request.method == "PUT":
        body = await read_json(request)
        update(state.chaos, json_object(body))
    return JSONResponse(asdict(state.chaos))


async def settings(request: Request) -> Response:
    state = sim_state(request)
    if request.method == "PUT":
        body = await read_json(request)
        update(state.settings, json_object(body), SETTING_NAMES)
    return JSONResponse({name: getattr(state.settings, name) for name in sorted(SETTING_NAMES)})


async def clock(request: Request) -> Response:
    state = sim_state(request)
    if request.method == "POST":
        body = await read_json(request)
        seconds = body.get("advance") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise Refusal(400, "advance must be a number of seconds")
        state.advance(float(seconds))
    return JSONResponse({"now": state.history()["clock"]})


async def template_status(request: Request) -> Response:
    body = await read_json(request)
    wanted = body.get("status") if isinstance(body, dict) else None
    return JSONResponse(
        {"data": sim_state(request).templates.set_status(request.path_params["key"], wanted)}
    )


async def reset(request: Request) -> Response:
    await deliverer_of(request).close()
    sim_state(request).reset()
    return JSONResponse({"reset": True})
