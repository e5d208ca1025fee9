"""Helpers for the portal tests: serve an ASGI app on 127.0.0.1, collect webhooks, drive the sim."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.portal.backoff import RetryPolicy

API_KEY = "sim-key"
READONLY_KEY = "sim-readonly"
FAST_RETRY = RetryPolicy(max_attempts=4, base=0.001, cap=0.01, budget=5.0)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yield its base URL.

    Without uvicorn's ``Date`` header: the simulator sends its own, on its own clock.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        loop="asyncio",
        http="httptools",
        ws="none",
        date_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@dataclass
class Collector:
    """Webhooks received: (headers, raw body); ``status`` is what the next ones are answered."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            status = self.statuses.pop(0) if self.statuses else 200
            return JSONResponse({"received": status == 200}, status)

        return Starlette(routes=[Route("/webhook", hook, methods=["POST"])])


def drain(control: httpx.Client, wait: float = 300.0) -> None:
    """Wait until the simulator has finished every webhook delivery (at most ``wait`` s: a
    bound on a hang, not a speed check; the request's own timeout is longer, so the simulator
    always answers). 60 s was too short on a machine running two suites at once: the fifty
    contacts' test (4,000 deliveries into a receiver in this process) ran out of it twice."""
    response = control.post("/sim/deliveries/wait", json={"timeout": wait}, timeout=wait + 30)
    if response.json() != {"pending": 0}:
        # Say what is stuck: the unfinished deliveries and their attempts so far.
        history = control.get("/sim/history", timeout=30).json()
        stuck = [
            {k: d.get(k) for k in ("event", "status", "messageId", "attempts")}
            for d in history["deliveries"]
            if not d.get("done")
        ]
        raise AssertionError(
            f"deliveries still pending after {wait} s: {response.json()}, {stuck[:5]}"
        )


def inbound(control: httpx.Client, sender: str = "919876543210", text: str = "Hello") -> str:
    """A contact writes to us; return the message's wamid."""
    response = control.post(
        "/sim/inbound", json={"from": sender, "name": "John Doe", "type": "text", "content": text}
    )
    response.raise_for_status()
    message_id: str = response.json()["messageId"]
    return message_id
