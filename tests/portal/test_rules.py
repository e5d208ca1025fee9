"""The portal's rules, once, run by both drivers: PortalClient and AsyncPortalClient alike.

Every test runs twice (``driver`` is "sync" or "async") against an ``httpx.MockTransport``,
with a fake clock whose sleep advances it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from service.portal import AsyncPortalClient, PortalClient
from service.portal.backoff import RetryPolicy
from service.portal.config import PortalSettings
from service.portal.errors import (
    InvalidPhoneNumber,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    TransportError,
)

SETTINGS = PortalSettings(api_url="https://portal.test/api/v1", api_key="k")
PHONE = "919876543210"


def sent() -> httpx.Response:
    return httpx.Response(200, json={"success": True, "messageId": "wamid.X"})


def ok() -> httpx.Response:
    return httpx.Response(200, json={"success": True})


POLICY = RetryPolicy(max_attempts=4, base=0.1, cap=1.0, budget=30.0)
Step = httpx.Response | Exception


class World:
    """A fake clock, a scripted portal, a recording limiter and observer: what a run saw."""

    def __init__(self, steps: list[Step], waits: list[float] | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.steps = steps
        self.requests: list[httpx.Request] = []
        self.waits = waits or []
        self.permits: list[str | None] = []
        self.held_off: list[float] = []
        self.observed: list[tuple[str, ...]] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    # the limiter
    def acquire(self, contact: str | None = None) -> float:
        self.permits.append(contact)
        return self.waits.pop(0) if self.waits else 0.0

    def held(self) -> float:
        return 0.0

    def hold_off(self, seconds: float) -> None:
        self.held_off.append(seconds)

    # the observer
    def portal_request(self, call: str, status: str, seconds: float) -> None:
        self.observed.append((call, status))

    def limiter_wait(self, seconds: float) -> None:
        self.observed.append(("limiter", f"{seconds:g}"))

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class AsyncLimiter:
    def __init__(self, world: World) -> None:
        self.world = world

    async def acquire(self, contact: str | None = None) -> float:
        return self.world.acquire(contact)

    async def held(self) -> float:
        return self.world.held()

    async def hold_off(self, seconds: float) -> None:
        self.world.hold_off(seconds)


Portal = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def portal(driver: str, world: World, policy: RetryPolicy = POLICY) -> Portal:
    """Return ``call(method, *args, **kwargs)`` on a client of the given driver."""
    options: dict[str, Any] = {
        "retry": policy,
        "clock": lambda: world.now,
        "rand": lambda: 0.5,
        "observer": world,
    }
    if driver == "sync":
        client = PortalClient(
            SETTINGS,
            limiter=world,
            transport=httpx.MockTransport(world.answer),
            sleep=world.sleep,
            **options,
        )
        return lambda name, *args, **kwargs: getattr(client, name)(*args, **kwargs)

    async def sleep(seconds: float) -> None:
        world.sleep(seconds)

    aclient = AsyncPortalClient(
        SETTINGS,
        limiter=AsyncLimiter(world),
        transport=httpx.MockTransport(world.answer),
        sleep=sleep,
        **options,
    )

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        return asyncio.run(getattr(aclient, name)(*args, **kwargs))

    return call


def test_a_send_goes_once_with_the_key_and_the_body(driver: str) -> None:
    world = World([sent()])
    assert portal(driver, world)("send_text", PHONE, "hi").message_id == "wamid.X"
    [request] = world.requests
    assert request.url == "https://portal.test/api/v1/messages/text"
    assert request.headers["authorization"] == "Bearer k" and "cookie" not in request.headers
    assert json.loads(request.content) == {"to": PHONE, "message": "hi"}
    assert world.observed == [("send_text", "200")] and world.permits == [PHONE]


def test_an_invalid_request_is_refused_before_sending(driver: str) -> None:
    world = World([])
    with pytest.raises(InvalidPhoneNumber) as info:
        portal(driver, world)("send_text", "+91 98765", "hi")
    assert info.value.status is None and world.requests == [] and world.permits == []


def test_reads_retry_429_and_5xx_honouring_retry_after_and_telling_the_limiter(
    driver: str,
) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow"})
    world = World([limited, httpx.Response(503), httpx.Response(200, json={"data": []})])
    assert portal(driver, world)("templates") == []
    assert world.sleeps == [2.0, 0.1] and world.held_off == [2.0]
    assert world.observed == [("templates", "429"), ("templates", "503"), ("templates", "200")]
    assert world.permits == []  # reads take no permit


def test_mark_read_retries_a_read_timeout(driver: str) -> None:
    world = World([httpx.ReadTimeout("slow"), ok()])
    portal(driver, world)("mark_read", "wamid.A", show_typing_indicator=True)
    assert len(world.requests) == 2 and world.observed[0] == ("mark_read", "error")
    assert json.loads(world.requests[1].content) == {
        "messageId": "wamid.A",
        "showTypingIndicator": True,
    }


def test_a_send_is_repeated_only_when_it_never_left(driver: str) -> None:
    world = World([httpx.ConnectError("refused"), httpx.PoolTimeout("full"), sent()])
    assert portal(driver, world)("send_text", PHONE, "hi").message_id == "wamid.X"
    assert len(world.requests) == 3 and world.sleeps == [0.05, 0.1]


@pytest.mark.parametrize(
    "failure",
    [
        lambda: httpx.ReadTimeout("slow"),
        lambda: httpx.RemoteProtocolError("dropped"),
        lambda: httpx.Response(502, json={"error": "Bad gateway"}),
        lambda: httpx.Response(200, text="<html>"),
    ],
    ids=["read-timeout", "disconnect", "5xx", "garbled-200"],
)
def test_a_send_that_may_have_left_is_outcome_unknown_and_not_repeated(
    driver: str, failure: Callable[[], Step]
) -> None:
    world = World([failure()])
    with pytest.raises(OutcomeUnknown) as info:
        portal(driver, world)("send_text", PHONE, "hi")
    assert len(world.requests) == 1 and not info.value.retryable
    assert "look for" in str(info.value) and world.sleeps == []


def test_a_send_refused_with_429_is_repeated(driver: str) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "3"})
    world = World([limited, sent()])
    portal(driver, world)("send_text", PHONE, "hi")
    assert world.sleeps == [3.0] and world.held_off == [3.0] and world.permits == [PHONE] * 2


def test_a_wait_beyond_the_budget_raises_rate_limited_at_once(driver: str) -> None:
    world = World([httpx.Response(429, headers={"Retry-After": "120"})])
    with pytest.raises(RateLimited) as info:
        portal(driver, world)("conversations")
    assert world.sleeps == [] and info.value.retry_after == 120 and info.value.retryable


def test_a_limiter_wait_beyond_the_budget_raises_rate_limited(driver: str) -> None:
    world = World([sent()], waits=[0.5, 60.0])
    with pytest.raises(RateLimited) as info:
        portal(driver, world, RetryPolicy(budget=5.0))("send_text", PHONE, "hi")
    assert info.value.status is None and info.value.retry_after == 60.0
    assert world.sleeps == [0.5] and world.requests == []
    assert world.observed == [("limiter", "0.5")]


def test_retries_are_bounded_in_attempts(driver: str) -> None:
    world = World([httpx.ReadError("reset")] * 4)
    with pytest.raises(TransportError) as info:
        portal(driver, world)("webhook")
    assert len(world.requests) == 4 and isinstance(info.value.__cause__, httpx.ReadError)


def test_an_unexpected_read_body_is_a_server_error(driver: str) -> None:
    world = World([httpx.Response(200, json={"data": "nope"})])
    with pytest.raises(ServerError) as info:
        portal(driver, world)("conversations")
    assert not info.value.retryable


def page(date: str | None) -> httpx.Response:
    body = {
        "data": [],
        "pagination": {"nextCursor": None, "hasMore": False},
    }
    return httpx.Response(200, json=body, headers={"Date": date} if date else {})


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 30 Nov 2026 10:53:24 GMT", datetime(2026, 11, 30, 10, 53, 24, tzinfo=UTC)),
        ("Mon, 30 Nov 2026 12:53:24 +0200", datetime(2026, 11, 30, 10, 53, 24, tzinfo=UTC)),
        ("yesterday-ish", None),
        (None, None),
    ],
)
def test_pages_carry_the_portals_date_as_server_time(
    driver: str, date: str | None, expected: datetime | None
) -> None:
    world = World([page(date), page(date)])
    call = portal(driver, world)
    messages = call("messages", PHONE)
    conversations = call("conversations")
    assert messages.server_time == expected and conversations.server_time == expected
    if expected is not None:
        assert messages.server_time.tzinfo is UTC
