"""PortalClient unit tests with httpx.MockTransport: the retry rules, error mapping, secrecy."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from service.portal.backoff import RetryPolicy
from service.portal.client import PortalClient
from service.portal.config import PortalSettings
from service.portal.errors import (
    OutcomeUnknown,
    PortalError,
    RateLimited,
    ServerError,
    TransportError,
)

KEY = "super-secret-key"
SETTINGS = PortalSettings(api_url="https://portal.test/api/v1", api_key=KEY)
Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    """A fake clock whose sleep advances it; records the waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(
    handler: Handler, clock: Clock, policy: RetryPolicy | None = None
) -> tuple[PortalClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = PortalClient(
        SETTINGS,
        transport=httpx.MockTransport(record),
        retry=policy or RetryPolicy(max_attempts=4, base=0.1, cap=1.0, budget=30.0),
        sleep=clock.sleep,
        clock=lambda: clock.now,
        rand=lambda: 0.5,
    )
    return client, seen


def sequence(*steps: httpx.Response | Exception) -> Handler:
    remaining = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        step = remaining.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return handler


SENT = httpx.Response(200, json={"success": True, "messageId": "wamid.X"})


def test_requests_carry_the_key_only_in_the_authorization_header() -> None:
    client, seen = make(sequence(SENT), Clock())
    assert client.send_text("919876543210", "hi").message_id == "wamid.X"
    [request] = seen
    assert request.url == "https://portal.test/api/v1/messages/text"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {"to": "919876543210", "message": "hi"}
    assert KEY not in repr(client) and KEY not in repr(SETTINGS)


def test_send_retries_a_connect_error() -> None:
    clock = Clock()
    client, seen = make(sequence(httpx.ConnectError("refused"), SENT), clock)
    assert client.send_text("919876543210", "hi").message_id == "wamid.X"
    assert len(seen) == 2 and clock.sleeps == [0.05]  # full jitter: 0.5 * base


def test_send_read_timeout_is_outcome_unknown_without_retry() -> None:
    client, seen = make(sequence(httpx.ReadTimeout("slow")), Clock())
    with pytest.raises(OutcomeUnknown) as info:
        client.send_text("919876543210", "hi")
    assert len(seen) == 1 and not info.value.retryable
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert "look for it" in str(info.value) and KEY not in str(info.value)


def test_send_5xx_is_outcome_unknown_without_retry() -> None:
    client, seen = make(sequence(httpx.Response(502, json={"error": "Bad gateway"})), Clock())
    with pytest.raises(OutcomeUnknown) as info:
        client.send_text("919876543210", "hi")
    assert len(seen) == 1 and info.value.status == 502
    assert isinstance(info.value.__cause__, ServerError)


def test_send_429_honours_retry_after() -> None:
    clock = Clock()
    limited = httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "slow down"})
    client, seen = make(sequence(limited, SENT), clock)
    client.send_text("919876543210", "hi")
    assert len(seen) == 2 and clock.sleeps == [3.0]


def test_a_wait_beyond_the_budget_raises_rate_limited_at_once() -> None:
    clock = Clock()
    limited = httpx.Response(429, headers={"Retry-After": "120"})
    client, seen = make(sequence(limited), clock)
    with pytest.raises(RateLimited) as info:
        client.conversations()
    assert clock.sleeps == [] and info.value.retry_after == 120 and info.value.retryable


def test_reads_retry_read_timeouts_and_5xx_then_give_up() -> None:
    clock = Clock()
    failing = httpx.Response(503, json={"error": "busy"})
    client, seen = make(sequence(httpx.ReadTimeout("slow"), failing, failing, failing), clock)
    with pytest.raises(ServerError) as info:
        client.templates()
    assert len(seen) == 4 and info.value.retryable and info.value.call == "templates"
    assert clock.sleeps == [0.05, 0.1, 0.2]  # exponential, jittered by 0.5


def test_read_transport_errors_exhausted_are_transport_errors() -> None:
    client, _ = make(sequence(*[httpx.ReadError("reset")] * 4), Clock())
    with pytest.raises(TransportError) as info:
        client.webhook()
    assert info.value.retryable and isinstance(info.value.__cause__, httpx.ReadError)


def test_total_time_is_bounded_by_the_budget() -> None:
    clock = Clock()
    policy = RetryPolicy(max_attempts=100, base=1.0, cap=8.0, budget=10.0)
    client, seen = make(lambda _r: httpx.Response(500), clock, policy)
    with pytest.raises(ServerError):
        client.conversations()
    assert sum(clock.sleeps) <= 10.0 and len(seen) < 100


def test_mark_read_is_retried_on_5xx() -> None:
    ok = httpx.Response(200, json={"success": True})
    client, seen = make(sequence(httpx.Response(500), ok), Clock())
    client.mark_read("wamid.A", show_typing_indicator=True)
    assert len(seen) == 2
    assert json.loads(seen[1].content) == {"messageId": "wamid.A", "showTypingIndicator": True}


def test_unexpected_success_body_on_send_is_outcome_unknown() -> None:
    client, _ = make(sequence(httpx.Response(200, text="<html>")), Clock())
    with pytest.raises(OutcomeUnknown):
        client.send_text("919876543210", "hi")


def test_unexpected_success_body_on_read_is_a_server_error() -> None:
    client, _ = make(sequence(httpx.Response(200, json={"data": "nope"})), Clock())
    with pytest.raises(ServerError) as info:
        client.conversations()
    assert not info.value.retryable


class RecordingLimiter:
    """A ``Limiter``: answers the given waits to permits (sends) and hold-off checks (others)."""

    def __init__(self, waits: list[float], holds: list[float] | None = None) -> None:
        self.waits = waits
        self.holds = holds or []
        self.contacts: list[str | None] = []
        self.held_off: list[float] = []

    def acquire(self, contact: str | None = None) -> float:
        self.contacts.append(contact)
        return self.waits.pop(0) if self.waits else 0.0

    def held(self) -> float:
        return self.holds.pop(0) if self.holds else 0.0

    def hold_off(self, seconds: float) -> None:
        self.held_off.append(seconds)


def test_the_limiter_paces_sends_and_hears_of_429s() -> None:
    clock = Clock()
    limited = httpx.Response(429, headers={"Retry-After": "2"})
    limiter = RecordingLimiter([0.25])
    client = PortalClient(
        SETTINGS,
        limiter=limiter,
        transport=httpx.MockTransport(sequence(limited, SENT)),
        sleep=clock.sleep,
        clock=lambda: clock.now,
        rand=lambda: 0.0,
    )
    assert client.send_text("919876543210", "hi").message_id == "wamid.X"
    assert clock.sleeps == [0.25, 2.0] and limiter.held_off == [2.0]
    assert limiter.contacts == ["919876543210"] * 3  # one permit per attempt, per contact


def test_reads_and_mark_reads_take_no_permit_but_wait_out_a_hold_off() -> None:
    clock = Clock()
    limiter = RecordingLimiter([5.0], holds=[1.5])
    ok = httpx.Response(200, json={"success": True})
    client = PortalClient(
        SETTINGS,
        limiter=limiter,
        transport=httpx.MockTransport(sequence(httpx.Response(200, json={"data": []}), ok)),
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert client.templates() == []
    client.mark_read("wamid.A")
    assert clock.sleeps == [1.5] and limiter.contacts == [] and limiter.waits == [5.0]


def test_a_limiter_wait_beyond_the_budget_raises_rate_limited() -> None:
    client = PortalClient(
        SETTINGS,
        limiter=RecordingLimiter([60.0]),
        retry=RetryPolicy(budget=5.0),
        transport=httpx.MockTransport(sequence()),
    )
    with pytest.raises(RateLimited) as info:
        client.send_text("919876543210", "hi")
    assert info.value.status is None and info.value.retry_after == 60.0


@pytest.mark.parametrize(
    ("status", "error", "name"),
    [
        (400, "Invalid phone number format", "InvalidPhoneNumber"),
        (400, "Outside 24-hour messaging window", "OutsideMessagingWindow"),
        (400, "Template not found", "TemplateNotFound"),
        (404, "Template not found", "TemplateNotFound"),
        (400, "Invalid parameter", "InvalidParameter"),
        (400, "Template category doesn't match", "CategoryMismatch"),
        (400, "Component parameter count mismatch", "ParameterCountMismatch"),
        (400, "Invalid template parameters", "InvalidTemplateParameters"),
        (400, "Media URL not accessible", "MediaUrlNotAccessible"),
        (400, "Something new", "InvalidRequest"),
        (401, "Invalid API key", "AuthenticationFailed"),
        (403, "Forbidden", "PermissionDenied"),
        (404, "Message not found", "NotFound"),
        (409, "Conflict", "InvalidRequest"),
    ],
)
def test_error_responses_map_to_the_tree(status: int, error: str, name: str) -> None:
    client, seen = make(sequence(httpx.Response(status, json={"error": error})), Clock())
    with pytest.raises(PortalError) as info:
        client.mark_read("wamid.A")
    assert type(info.value).__name__ == name
    assert info.value.status == status and not info.value.retryable and len(seen) == 1
    assert str(info.value).startswith("mark_read failed: ") and "retrying will not help" in str(
        info.value
    )
