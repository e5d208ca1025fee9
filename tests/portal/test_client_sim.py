"""PortalClient against the simulator over real HTTP: every endpoint, pagination, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.portal.client import PortalClient
from service.portal.config import PortalSettings
from service.portal.errors import (
    AuthenticationFailed,
    CategoryMismatch,
    InvalidParameter,
    InvalidPhoneNumber,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    OutsideMessagingWindow,
    PermissionDenied,
    RateLimited,
    ServerError,
    TemplateNotFound,
)
from tests.support.portal import FAST_RETRY, READONLY_KEY, Collector, inbound

PHONE = "919876543210"
BODY = {
    "type": "BODY",
    "text": "Hi {{1}}, order {{2}} is confirmed",
    "example": {"body_text": [["John", "ORD-12345"]]},
}


def test_send_text_reaches_the_contact_once(client: PortalClient, control: httpx.Client) -> None:
    inbound(control)
    sent = client.send_text(PHONE, "Your order is on its way")
    assert sent.message_id.startswith("wamid.")
    history = control.get("/sim/history", params={"phone": PHONE}).json()
    assert [(s["to"], s["message"]) for s in history["sent"]] == [
        (PHONE, "Your order is on its way")
    ]


def test_send_outside_the_window_is_refused(client: PortalClient, control: httpx.Client) -> None:
    with pytest.raises(OutsideMessagingWindow) as never_wrote:
        client.send_text(PHONE, "hello?")
    assert never_wrote.value.status == 400 and not never_wrote.value.retryable
    inbound(control)
    control.post("/sim/clock", json={"advance": 24 * 3600 + 1}).raise_for_status()
    with pytest.raises(OutsideMessagingWindow):
        client.send_text(PHONE, "too late")
    assert control.get("/sim/history").json()["sent"] == []


def test_mark_read_with_typing_indicator(client: PortalClient, control: httpx.Client) -> None:
    message_id = inbound(control)
    client.mark_read(message_id, show_typing_indicator=True)
    marks = control.get("/sim/history").json()["markReads"]
    assert marks == [
        {"messageId": message_id, "from": PHONE, "showTypingIndicator": True, "at": marks[0]["at"]}
    ]
    [conversation] = client.conversations().items
    assert conversation.unread_count == 0


def test_mark_read_of_an_unknown_message_is_not_found(client: PortalClient) -> None:
    with pytest.raises(NotFound) as info:
        client.mark_read("wamid.nope")
    assert info.value.status == 404 and info.value.call == "mark_read"


def test_conversations_paginate_newest_first(client: PortalClient, control: httpx.Client) -> None:
    phones = [f"9198765432{i:02d}" for i in range(7)]
    for phone in phones:
        inbound(control, phone)
    first = client.conversations(limit=3)
    assert [c.phone_number for c in first.items] == phones[::-1][:3]
    assert first.has_more and first.next_cursor
    second = client.conversations(cursor=first.next_cursor, limit=3)
    assert [c.phone_number for c in second.items] == phones[::-1][3:6]
    assert [c.phone_number for c in client.iter_conversations(limit=2)] == phones[::-1]
    assert first.items[0].contact_name == "John Doe"
    assert first.items[0].last_message is not None
    assert first.items[0].last_message.content == "Hello"


def test_messages_include_ours_and_paginate(client: PortalClient, control: httpx.Client) -> None:
    for i in range(4):
        inbound(control, text=f"in {i}")
        client.send_text(PHONE, f"out {i}")
    page = client.messages(PHONE, limit=3)
    assert [m.text for m in page.items] == ["out 3", "in 3", "out 2"]
    assert page.items[0].direction == "outbound" and page.items[0].contact_name is None
    assert page.items[1].contact_name == "John Doe"
    everything = list(client.iter_messages(PHONE, limit=3))
    assert len(everything) == 8 and everything[-1].text == "in 0"
    assert len({m.id for m in everything}) == 8


def test_limit_maxima_are_enforced_before_sending(client: PortalClient) -> None:
    with pytest.raises(InvalidParameter) as info:
        client.conversations(limit=51)
    assert info.value.status is None  # refused locally
    with pytest.raises(InvalidParameter):
        client.messages(PHONE, limit=101)
    assert client.messages(PHONE, limit=100).items == ()


def test_simulator_refuses_limits_over_the_maximum(control: httpx.Client) -> None:
    headers = {"Authorization": "Bearer sim-key"}
    response = control.get("/api/v1/conversations", params={"limit": 51}, headers=headers)
    assert response.status_code == 400 and response.json() == {"error": "Invalid parameter"}


def test_invalid_phone_is_refused_locally_and_by_the_simulator(
    client: PortalClient, control: httpx.Client
) -> None:
    with pytest.raises(InvalidPhoneNumber, match="Invalid phone number format"):
        client.send_text("+91 98765 43210", "hi")
    response = control.post(
        "/api/v1/messages/text",
        json={"to": "+919876543210", "message": "hi"},
        headers={"Authorization": "Bearer sim-key"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid phone number format"}


def test_text_length_counts_utf16_code_units(client: PortalClient, control: httpx.Client) -> None:
    inbound(control)
    client.send_text(PHONE, "😀" * 2048)  # 4096 code units: the limit exactly
    with pytest.raises(InvalidParameter, match="4098"):
        client.send_text(PHONE, "😀" * 2049)


def test_wrong_key_is_an_authentication_error(sim_server: str, control: httpx.Client) -> None:
    settings = PortalSettings(api_url=f"{sim_server}/api/v1", api_key="wrong-key")
    with PortalClient(settings, retry=FAST_RETRY) as portal:
        with pytest.raises(AuthenticationFailed) as info:
            portal.conversations()
    assert info.value.status == 401 and not info.value.retryable
    assert "wrong-key" not in str(info.value)


def test_readonly_key_may_read_but_not_send(sim_server: str, control: httpx.Client) -> None:
    settings = PortalSettings(api_url=f"{sim_server}/api/v1", api_key=READONLY_KEY)
    with PortalClient(settings, retry=FAST_RETRY) as portal:
        assert portal.conversations().items == ()
        with pytest.raises(PermissionDenied):
            portal.send_text(PHONE, "hi")


def test_429_with_retry_after_then_success(client: PortalClient, control: httpx.Client) -> None:
    control.put("/sim/chaos", json={"rate_limit_next": 2, "retry_after": 0.01})
    assert client.conversations().items == ()
    inbound(control)
    control.put("/sim/chaos", json={"rate_limit_next": 2})
    client.send_text(PHONE, "after a 429, a send is retried: it never reached the portal")
    assert len(control.get("/sim/history").json()["sent"]) == 1


def test_429_longer_than_the_budget_raises_rate_limited(
    client: PortalClient, control: httpx.Client
) -> None:
    control.put("/sim/chaos", json={"rate_limit_next": 1, "retry_after": 3600})
    with pytest.raises(RateLimited) as info:
        client.templates()
    assert info.value.retryable and info.value.retry_after == 3600


def test_5xx_is_retried_for_reads_until_exhausted(
    client: PortalClient, control: httpx.Client
) -> None:
    control.put("/sim/chaos", json={"server_error_next": 2})
    assert client.webhook().enabled is False
    control.put("/sim/chaos", json={"server_error_next": 10})
    with pytest.raises(ServerError) as info:
        client.conversations()
    assert info.value.status == 500 and info.value.retryable
    assert control.get("/sim/chaos").json()["server_error_next"] == 10 - FAST_RETRY.max_attempts


def test_5xx_after_accepting_a_send_is_outcome_unknown(
    client: PortalClient, control: httpx.Client
) -> None:
    inbound(control)
    control.put("/sim/chaos", json={"error_after_send_next": 1})
    started = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(OutcomeUnknown) as info:
        client.send_text(PHONE, "did this arrive?")
    assert not info.value.retryable and info.value.call == "send_text"
    sent = control.get("/sim/history").json()["sent"]
    assert [(s["message"], s["answered"]) for s in sent] == [("did this arrive?", 500)]
    found = client.find_sent(PHONE, "did this arrive?", since=started)
    assert found is not None and found.wa_message_id == sent[0]["messageId"]
    assert client.find_sent(PHONE, "something else", since=started) is None


def test_a_plain_5xx_on_send_is_outcome_unknown_and_not_retried(
    client: PortalClient, control: httpx.Client
) -> None:
    inbound(control)
    control.put("/sim/chaos", json={"server_error_next": 1})
    with pytest.raises(OutcomeUnknown):
        client.send_text(PHONE, "hi")
    assert control.get("/sim/chaos").json()["server_error_next"] == 0
    assert control.get("/sim/history").json()["sent"] == []


def test_templates_lifecycle(client: PortalClient, control: httpx.Client) -> None:
    created = client.create_template("order_confirmation", "UTILITY", "en", [BODY])
    assert created.id.isdigit() and created.status == "PENDING"
    assert [t.name for t in client.templates()] == ["order_confirmation"]
    with pytest.raises(InvalidRequest, match="REJECTED"):
        client.edit_template(created.id, "UTILITY", [BODY])
    control.post(f"/sim/templates/{created.id}/status", json={"status": "REJECTED"})
    with pytest.raises(CategoryMismatch):
        client.edit_template(created.id, "MARKETING", [BODY])
    footer = {"type": "FOOTER", "text": "Thanks"}
    edited = client.edit_template(created.id, "UTILITY", [BODY, footer])
    assert edited.status == "PENDING" and len(edited.components) == 2
    with pytest.raises(InvalidParameter):  # same name, another category
        client.create_template("order_confirmation", "MARKETING", "es", [BODY])
    client.delete_template("order_confirmation")
    assert client.templates() == []
    with pytest.raises(TemplateNotFound) as info:
        client.delete_template("order_confirmation")
    assert isinstance(info.value, NotFound) and isinstance(info.value, InvalidRequest)
    with pytest.raises(TemplateNotFound):
        client.edit_template("999", "UTILITY", [BODY])


def test_template_rules_are_checked_before_sending(client: PortalClient) -> None:
    no_example = {"type": "BODY", "text": "Hi {{1}}"}
    with pytest.raises(InvalidParameter, match="one sample per variable"):
        client.create_template("t1", "UTILITY", "en", [no_example])
    image = {"type": "HEADER", "format": "IMAGE"}
    with pytest.raises(InvalidParameter, match="only TEXT headers"):
        client.create_template("t1", "UTILITY", "en", [image, BODY])
    with pytest.raises(InvalidParameter, match="numeric id"):
        client.edit_template("order_confirmation", "UTILITY", [BODY])


def test_simulator_refuses_a_body_without_examples(control: httpx.Client) -> None:
    response = control.post(
        "/api/v1/templates",
        json={"name": "t", "category": "UTILITY", "language": "en",
              "components": [{"type": "BODY", "text": "Hi {{1}}"}]},
        headers={"Authorization": "Bearer sim-key"},
    )  # fmt: skip
    assert response.status_code == 400 and response.json() == {"error": "Invalid parameter"}


def test_webhook_configuration(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    config = client.webhook()
    assert not config.enabled and config.webhook_secret is None
    config = client.set_webhook(collector.url, enabled=True, events=["messages"])
    assert config.enabled and config.events == ("messages",)
    assert config.webhook_secret and config.webhook_secret not in repr(config)
    again = client.set_webhook(collector.url, enabled=True)
    assert again.webhook_secret == config.webhook_secret  # generated once
    result = client.test_webhook()
    assert result.success and result.status_code == 200 and result.test_id
    assert result.test_payload is not None and result.test_payload["event"] == "test"
    client.delete_webhook()
    assert not client.webhook().enabled and client.webhook().webhook_url == ""


def test_webhook_test_reports_a_failing_endpoint(
    client: PortalClient, collector: Collector
) -> None:
    client.set_webhook(collector.url, enabled=True)
    collector.statuses.append(404)
    result = client.test_webhook()
    assert not result.success and result.status_code == 404
    assert result.error == "Webhook endpoint returned status 404"


def test_webhook_url_must_be_https(client: PortalClient, control: httpx.Client) -> None:
    with pytest.raises(InvalidRequest, match="HTTPS"):
        client.set_webhook("http://example.com/webhook", enabled=True)
    control.put("/sim/settings", json={"allow_insecure_webhooks": False})
    with pytest.raises(InvalidRequest, match="HTTPS"):
        client.set_webhook("http://127.0.0.1:9/webhook", enabled=True)
    assert client.set_webhook("https://example.com/webhook", enabled=False).webhook_url


def test_unverified_number_cannot_configure_webhooks(
    client: PortalClient, control: httpx.Client
) -> None:
    control.put("/sim/settings", json={"verified": False})
    with pytest.raises(InvalidRequest, match="verified"):
        client.set_webhook("https://example.com/webhook", enabled=True)


def test_pages_carry_the_simulators_clock_skewed_or_not(
    client: PortalClient, control: httpx.Client
) -> None:
    inbound(control, PHONE, "hello")
    page = client.messages(PHONE)
    assert page.server_time is not None
    assert abs(page.server_time - datetime.now(UTC)) < timedelta(seconds=5)
    control.put("/sim/settings", json={"clock_skew": -900}).raise_for_status()
    behind = datetime.now(UTC) - timedelta(minutes=15)
    conversations = client.conversations()
    assert conversations.server_time is not None
    assert abs(conversations.server_time - behind) < timedelta(seconds=5)
    clock = datetime.fromisoformat(control.get("/sim/clock").json()["now"].replace("Z", "+00:00"))
    assert abs(clock - behind) < timedelta(seconds=5)
