"""The simulator's webhook deliveries: signed as the portal signs, retried, tracked.

Each delivery POSTs ``service.signature.js_stringify(payload)`` with ``X-Webhook-Signature``
= hex HMAC-SHA256 under the webhook secret, and retries non-2xx answers and transport errors
with exponential backoff. Every attempt is recorded in ``SimState.deliveries``. Work runs as
background tasks on the server's event loop; :meth:`Deliverer.drain` waits for all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from service.signature import js_stringify, sign
from service.sim.messages import StoredMessage
from service.sim.state import SimState

__all__ = ["Deliverer", "PostResult"]


class PostResult:
    """One POST's outcome: a status code and body, or the transport error's name."""

    def __init__(self, status_code: int | None, reason: str, body: str, duration_ms: int) -> None:
        self.status_code = status_code
        self.reason = reason
        self.body = body
        self.duration_ms = duration_ms

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> dict[str, Any]:
        if self.status_code is None:
            return {"error": self.reason, "durationMs": self.duration_ms}
        return {"statusCode": self.status_code, "durationMs": self.duration_ms}


class Deliverer:
    """Sends the simulator's webhooks in background tasks on the running loop."""

    def __init__(self, state: SimState, http: httpx.AsyncClient) -> None:
        self.state = state
        self.http = http
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every delivery; return how many are still pending."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=left)
        return len(self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def post(self, url: str, payload: dict[str, Any], secret: str) -> PostResult:
        """POST one signed webhook, once."""
        body = js_stringify(payload)
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, secret)}
        started = time.perf_counter()
        try:
            response = await self.http.post(
                url, content=body, headers=headers, timeout=self.state.settings.delivery_timeout
            )
        except httpx.HTTPError as exc:
            ms = round((time.perf_counter() - started) * 1000)
            return PostResult(None, type(exc).__name__, "", ms)
        ms = round((time.perf_counter() - started) * 1000)
        return PostResult(response.status_code, response.reason_phrase, response.text, ms)

    def deliver(self, payload: dict[str, Any], phone: str | None) -> None:
        """Deliver ``payload`` in the background (twice under the duplicate chaos)."""
        state = self.state
        if not state.wants(payload["event"]):
            return
        self.spawn(self._deliver(payload, phone, duplicate=False))
        if state.roll_duplicate():
            self.spawn(self._deliver(payload, phone, duplicate=True))

    async def deliver_now(self, payload: dict[str, Any], phone: str | None) -> None:
        """Deliver ``payload`` and return when done (used to keep statuses in order)."""
        if self.state.wants(payload["event"]):
            await self._deliver(payload, phone, duplicate=False)
            if self.state.roll_duplicate():
                await self._deliver(payload, phone, duplicate=True)

    async def _deliver(
        self, payload: dict[str, Any], phone: str | None, *, duplicate: bool
    ) -> None:
        state = self.state
        record: dict[str, Any] = {
            "event": payload["event"],
            "phone": phone,
            "messageId": payload["data"].get("messageId"),
            "status": payload["data"].get("status"),
            "url": state.webhook_url,
            "duplicate": duplicate,
            "attempts": [],
            "delivered": False,
            "done": False,
            "payload": payload,
        }
        state.deliveries.append(record)
        secret = state.webhook_secret or ""
        try:
            for attempt in range(1, max(1, state.settings.delivery_attempts) + 1):
                result = await self.post(record["url"], payload, secret)
                record["attempts"].append(result.to_json())
                if result.ok:
                    record["delivered"] = True
                    return
                if attempt < state.settings.delivery_attempts:
                    await asyncio.sleep(state.settings.delivery_backoff * 2 ** (attempt - 1))
        finally:
            record["done"] = True

    def statuses(self, message: StoredMessage) -> None:
        """Deliver sent -> delivered (-> read) for an accepted send, each after a short delay."""
        plan = ["sent", "delivered"] + (["read"] if self.state.settings.auto_read else [])
        if self.state.chaos.out_of_order:
            plan.reverse()
        self.spawn(self._statuses(message, plan))

    async def _statuses(self, message: StoredMessage, plan: list[str]) -> None:
        for status in plan:
            await asyncio.sleep(self.state.settings.status_delay)
            await self.deliver_now(self.state.status_payload(message, status), message.phone)
