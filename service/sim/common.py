"""What the simulator's endpoints share: the state and deliverer on the app, JSON in and out."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.sim.config import Refusal
from service.sim.delivery import Deliverer
from service.sim.state import SimState

__all__ = ["deliverer_of", "json_object", "ok", "read_json", "sim_state"]


def sim_state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


def deliverer_of(request: Request) -> Deliverer:
    deliverer: Deliverer = request.app.state.deliverer
    return deliverer


async def read_json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise Refusal(400, "Invalid JSON body") from None


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refusal(400, "Send a JSON object")
    return body


def ok(data: Any = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"success": True, **extra}
    if data is not None:
        body["data"] = data
    return JSONResponse(body)
