"""Handlers and jobs for bench/workers.py."""

from __future__ import annotations

import os
from typing import Any

import httpx

from workers import Context, InboundMessage, Router

noop = Router("bench-noop")
sync_pair = Router("bench-sync-pair")

REPLY = "Thanks, we got your message."


@noop.message()
def do_nothing(event: InboundMessage, ctx: Context) -> None:
    pass


@sync_pair.message(replies=True)
def mark_and_reply(event: InboundMessage, ctx: Context) -> None:
    """The built-ins' two calls as one plain def handler (runs in the thread pool)."""
    ctx.portal.mark_read(event.message_id, show_typing_indicator=True)
    ctx.portal.send_text(event.sender, REPLY)


def noop_job(n: int) -> None:
    """The stock no-op baseline's job: nothing."""


_client: dict[str, httpx.Client] = {}


def stock_pair(message_id: str, sender: str) -> None:
    """The stock baseline's job: the same two calls with one shared sync httpx client."""
    if "c" not in _client:
        _client["c"] = httpx.Client(
            base_url=os.environ["WABA_API_URL"].rstrip("/") + "/",
            headers={"Authorization": f"Bearer {os.environ['WABA_API_KEY']}"},
            timeout=30,
        )
    client = _client["c"]
    client.post(
        "messages/mark-read", json={"messageId": message_id, "showTypingIndicator": True}
    ).raise_for_status()
    client.post("messages/text", json={"to": sender, "message": REPLY}).raise_for_status()


async def saq_pair(ctx: dict[str, Any], *, message_id: str, sender: str) -> None:
    """saq's job: the same two calls over one shared aiohttp session."""
    session = ctx["session"]
    url = ctx["url"]
    async with session.post(
        f"{url}/messages/mark-read", json={"messageId": message_id, "showTypingIndicator": True}
    ) as response:
        response.raise_for_status()
    async with session.post(
        f"{url}/messages/text", json={"to": sender, "message": REPLY}
    ) as response:
        response.raise_for_status()
