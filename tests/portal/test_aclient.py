"""AsyncPortalClient over its real transport (aiohttp under httpx's API): against the simulator,
and against a raw socket server that misbehaves in the ways that decide whether a send may be
repeated."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from service.portal import AsyncPortalClient, OutcomeUnknown, PortalSettings, TransportError
from service.portal.backoff import RetryPolicy
from service.portal.config import KEEPALIVE_EXPIRY
from tests.support.portal import API_KEY, FAST_RETRY, inbound

PHONE = "919876543210"
T = TypeVar("T")


def run(sim_server: str, body: Callable[[AsyncPortalClient], Awaitable[T]]) -> T:
    """Run ``body`` with an AsyncPortalClient on the simulator, in a fresh event loop."""

    async def main() -> T:
        settings = PortalSettings(api_url=f"{sim_server}/api/v1", api_key=API_KEY)
        async with AsyncPortalClient(settings, retry=FAST_RETRY) as portal:
            return await body(portal)

    return asyncio.run(main())


def test_mark_read_and_send_reach_the_simulator(sim_server: str, control: httpx.Client) -> None:
    wamid = inbound(control, PHONE, "Where is my order?")

    async def body(portal: AsyncPortalClient) -> str:
        await portal.mark_read(wamid, show_typing_indicator=True)
        sent = await portal.send_text(PHONE, "On its way")
        return sent.message_id

    message_id = run(sim_server, body)
    history = control.get("/sim/history", params={"phone": PHONE}).json()
    assert [m["messageId"] for m in history["markReads"]] == [wamid]
    assert history["markReads"][0]["showTypingIndicator"] is True
    assert [(s["messageId"], s["answered"]) for s in history["sent"]] == [(message_id, 200)]


def test_pages_iterate_newest_first_with_the_portals_time(
    sim_server: str, control: httpx.Client
) -> None:
    for n in range(5):
        inbound(control, PHONE, f"message {n}")

    async def body(portal: AsyncPortalClient) -> tuple[Any, list[str | None], list[str]]:
        first = await portal.messages(PHONE, limit=2)
        texts = [m.text async for m in portal.iter_messages(PHONE, limit=2)]
        phones = [c.phone_number async for c in portal.iter_conversations(limit=1)]
        return first, texts, phones

    first, texts, phones = run(sim_server, body)
    assert texts == [f"message {n}" for n in reversed(range(5))] and phones == [PHONE]
    assert first.has_more and [m.text for m in first.items] == ["message 4", "message 3"]
    assert first.server_time is not None and first.server_time.tzinfo is UTC
    assert abs(first.server_time - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_skewed_portal_says_so_in_its_date_header_and_timestamps(
    sim_server: str, control: httpx.Client
) -> None:
    skew = 15 * 60.0
    control.put("/sim/settings", json={"clock_skew": skew}).raise_for_status()
    inbound(control, PHONE, "hello from the future")

    async def body(portal: AsyncPortalClient) -> Any:
        await portal.send_text(PHONE, "hello back")
        return await portal.messages(PHONE)

    page = run(sim_server, body)
    ahead = datetime.now(UTC) + timedelta(seconds=skew)
    assert page.server_time is not None and abs(page.server_time - ahead) < timedelta(seconds=5)
    for item in page.items:
        assert abs(item.timestamp - ahead) < timedelta(seconds=5)
    # A search anchored on the portal's own clock finds the send, whatever ours says.
    since = page.server_time - timedelta(minutes=1)
    found = run(sim_server, lambda portal: portal.find_sent(PHONE, "hello back", since=since))
    assert found is not None and found.direction == "outbound"
    control.post("/sim/reset").raise_for_status()
    assert control.get("/sim/settings").json()["clock_skew"] == 0.0


# -- a misbehaving server -----------------------------------------------------------------


async def serve_raw(
    answer: Callable[[bytes], bytes | None],
) -> tuple[asyncio.Server, str, list[bytes]]:
    """A server that reads each request and writes ``answer(request)``, or drops the
    connection when it is None; returns the server, its URL and the requests seen."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                seen.append(request)
                reply = answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/api/v1", seen


def json_reply(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def client(url: str) -> AsyncPortalClient:
    return AsyncPortalClient(PortalSettings(api_url=url, api_key="k"), retry=FAST_RETRY)


def test_a_send_dropped_after_it_was_received_is_outcome_unknown_and_not_repeated() -> None:
    async def main() -> list[bytes]:
        server, url, seen = await serve_raw(lambda _request: None)
        async with server, client(url) as portal:
            with pytest.raises(OutcomeUnknown) as info:
                await portal.send_text(PHONE, "hi")
        assert "look for it" in str(info.value)
        assert isinstance(info.value.__cause__, httpx.RemoteProtocolError | httpx.ReadError)
        return seen

    assert len(asyncio.run(main())) == 1


def test_a_mark_read_dropped_after_it_was_received_is_retried() -> None:
    async def main() -> list[bytes]:
        server, url, seen = await serve_raw(lambda _request: None)
        async with server, client(url) as portal:
            with pytest.raises(TransportError):
                await portal.mark_read("wamid.A")
        return seen

    assert len(asyncio.run(main())) == FAST_RETRY.max_attempts


def test_a_send_that_could_not_connect_is_retried() -> None:
    async def main() -> None:
        server, url, _seen = await serve_raw(lambda _request: None)
        server.close()
        await server.wait_closed()  # nothing listens on the port any more
        async with client(url) as portal:
            with pytest.raises(TransportError) as info:
                await portal.send_text(PHONE, "hi")
        assert info.value.retryable and isinstance(info.value.__cause__, httpx.ConnectError)

    asyncio.run(main())


def test_no_cookie_is_kept_and_connections_are_reused() -> None:
    answer = json_reply(b'{"success":true}', b"set-cookie: session=abc; Path=/\r\n")

    async def main() -> list[bytes]:
        server, url, seen = await serve_raw(lambda _request: answer)
        async with server, client(url) as portal:
            for _ in range(3):
                await portal.mark_read("wamid.A")
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 3 and not any(b"\r\ncookie:" in r.lower() for r in seen)


def test_the_pool_holds_as_many_connections_as_configured() -> None:
    settings = PortalSettings(api_url="http://127.0.0.1:1/api/v1", api_key="k", max_connections=7)
    assert settings.limits().max_connections == 7
    assert settings.limits().max_keepalive_connections == 7
    # Idle connections are dropped before Node's (the portal's) and uvicorn's servers close
    # theirs, after 5 s: a send never goes out on a connection being closed.
    assert settings.limits().keepalive_expiry == KEEPALIVE_EXPIRY < 5
    assert RetryPolicy().max_attempts == 5  # the default the README states
