"""The two drivers of ``service.portal.rules``: the same rules, blocking or on the event loop.

Each driver only does what the rules ask (see :func:`~service.portal.rules.call_rules`):
ask the limiter, sleep, send over httpx, report a 429 to the limiter. Nothing about retries,
errors or pacing is decided here, so the sync and async clients cannot drift apart.

The async driver is also the one place every request of a worker's job passes, after the
limiter's waits and between the client's own retries: before each request that is not a GET
it asks the running execution's send fence (``service.portal.fence``) and cuts the request
off when the fence's time is up (as a read timeout: for a send, an unknown outcome).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Protocol, TypeVar

import httpx

from service.portal.fence import SendFence, current_fence
from service.portal.rules import (
    AsyncLimiter,
    CallObserver,
    HoldOff,
    Limiter,
    Op,
    Permit,
    Send,
    Sleep,
)

__all__ = ["AsyncNoLimiter", "CallObserver", "Limiter", "NoLimiter", "adrive", "drive"]

R = TypeVar("R")


class NoLimiter:
    """Paces nothing, holds nothing back: the limiter when none is given (sync or async)."""

    def acquire(self, contact: str | None = None) -> float:
        return 0.0

    def held(self) -> float:
        return 0.0

    def hold_off(self, seconds: float) -> None:
        pass


class AsyncNoLimiter:
    async def acquire(self, contact: str | None = None) -> float:
        return 0.0

    async def held(self) -> float:
        return 0.0

    async def hold_off(self, seconds: float) -> None:
        pass


def drive(
    rules: Generator[Op, Any, R],
    http: httpx.Client,
    limiter: Limiter,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """Run one call's rules to the end with blocking I/O; return its result."""
    reply: Any = None
    failure: httpx.TransportError | None = None
    while True:
        try:
            op = rules.throw(failure) if failure is not None else rules.send(reply)
        except StopIteration as done:
            result: R = done.value
            return result
        reply, failure = None, None
        if isinstance(op, Send):
            try:
                reply = http.request(op.method, op.path, json=op.body, params=op.params)
            except httpx.TransportError as exc:
                failure = exc
        elif isinstance(op, Permit):
            reply = limiter.acquire(op.contact) if op.paced else limiter.held()
        elif isinstance(op, Sleep):
            sleep(op.seconds)
        elif isinstance(op, HoldOff):
            limiter.hold_off(op.seconds)


class AsyncRequester(Protocol):
    """What :func:`adrive` sends with: ``httpx.AsyncClient.request``'s shape."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response: ...


async def adrive(
    rules: Generator[Op, Any, R],
    http: AsyncRequester,
    limiter: AsyncLimiter,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    request_timeout: float = 0.0,
) -> R:
    """Run one call's rules to the end on the event loop; return its result.

    ``request_timeout``: how long one request may take (the client's read timeout), which
    the send fence must grant before a request that is not a GET starts."""
    reply: Any = None
    failure: httpx.TransportError | None = None
    while True:
        try:
            op = rules.throw(failure) if failure is not None else rules.send(reply)
        except StopIteration as done:
            result: R = done.value
            return result
        reply, failure = None, None
        if isinstance(op, Send):
            fence = current_fence.get() if op.method != "GET" else None
            try:
                if fence is None:
                    reply = await http.request(op.method, op.path, json=op.body, params=op.params)
                else:
                    reply = await _fenced(fence, request_timeout, http, op)
            except httpx.TransportError as exc:
                failure = exc
        elif isinstance(op, Permit):
            reply = await (limiter.acquire(op.contact) if op.paced else limiter.held())
        elif isinstance(op, Sleep):
            await sleep(op.seconds)
        elif isinstance(op, HoldOff):
            await limiter.hold_off(op.seconds)


async def _fenced(
    fence: SendFence, request_timeout: float, http: AsyncRequester, op: Send
) -> httpx.Response:
    """Send ``op`` once the fence lets it start, cut off when the fence's time is up."""
    allowed = await fence.clearance(request_timeout)
    cutoff = asyncio.timeout(allowed)
    try:
        async with cutoff:
            return await http.request(op.method, op.path, json=op.body, params=op.params)
    except TimeoutError as exc:
        if not cutoff.expired():
            raise
        raise httpx.ReadTimeout(
            f"cut off after {allowed:.1f} s: the execution's lease would end before an answer"
        ) from exc
    finally:
        fence.ended()
