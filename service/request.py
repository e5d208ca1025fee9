"""Reading a webhook request at the ASGI level: the body within its size and time limits, the
content type, the replay tolerance; a :class:`Refusal` carries the status and the one-line
reason the receiver answers with (``service.app``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "Incoming",
    "Refusal",
    "check_length",
    "check_replay",
    "is_json",
    "json_response",
    "read_body",
    "send_json",
    "too_large",
]


class Refusal(Exception):
    """A request we answer with an error status and a one-sentence reason."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message


def json_response(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Send a whole JSON response (plain ASGI: two messages, nothing else)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> Refusal:
    return Refusal(413, "too_large", f"Request body is larger than the {limit}-byte limit")


class Incoming:
    """What the webhook route reads of a request's head: three headers (raw ASGI bytes)."""

    __slots__ = ("content_length", "content_type", "signature")

    def __init__(self, scope: Scope) -> None:
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.signature: bytes | None = None
        for name, value in scope["headers"]:  # ASGI header names are lower case
            if name == b"content-length":
                self.content_length = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"x-webhook-signature":
                self.signature = value


def check_length(length: bytes | None, limit: int) -> None:
    if length is not None:
        if not length.isdigit():
            raise Refusal(400, "bad_request", "Content-Length is not a number")
        if int(length) > limit:
            raise too_large(limit)


async def read_body(receive: Receive, limit: int, timeout: float) -> bytes:
    """The body, at most ``limit`` bytes, all of it within ``timeout`` seconds.

    Memory: at most ``limit`` bytes here (plus uvicorn's 64 KiB read buffer) per request
    whose body is arriving, and such requests last at most ``timeout``."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Refusal(400, "bad_request", "The client left before its body arrived")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:  # chunked bodies: stop reading as soon as the limit is passed
                    raise too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise Refusal(
            408,
            "body_timeout",
            f"Request body did not arrive within {timeout:g} s ({size} bytes came); "
            "send it whole and at once",
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    if content_type == b"application/json":  # what the portal sends: the fast path
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def check_replay(envelope: Any, tolerance: int) -> None:
    stamp = envelope.get("timestamp") if isinstance(envelope, dict) else None
    try:
        sent = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        sent = None
    if sent is None:
        raise Refusal(
            401,
            "bad_timestamp",
            "Webhook timestamp is missing or not ISO-8601 (replay tolerance is on)",
        )
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    skew = abs((datetime.now(UTC) - sent).total_seconds())
    if skew > tolerance:
        raise Refusal(
            401,
            "bad_timestamp",
            f"Webhook timestamp is {skew:.0f} s away from now, "
            f"outside the {tolerance} s replay tolerance",
        )
