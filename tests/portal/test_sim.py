"""The simulator's webhooks: signed as the portal signs, shaped as spec §5, retried, chaos."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from rq.job import Job
from rq.serializers import JSONSerializer

from service.app import create_app
from service.portal.client import PortalClient
from service.settings import Settings
from service.signature import js_stringify, verify
from tests.support.bredis import BytesRedis
from tests.support.portal import Collector, drain, inbound, serve

PHONE = "919876543210"


def _events(collector: Collector, secret: str) -> list[dict[str, Any]]:
    events = []
    for headers, body in collector.received:
        assert headers["content-type"] == "application/json"
        assert verify(body, headers["x-webhook-signature"], [secret])
        payload = json.loads(body)
        assert js_stringify(payload) == body  # exactly JSON.stringify's bytes
        events.append(payload)
    return events


def _enable(client: PortalClient, url: str, events: list[str] | None = None) -> str:
    secret = client.set_webhook(url, enabled=True, events=events).webhook_secret
    assert secret
    return secret


def test_inbound_message_is_delivered_signed_in_the_documented_shape(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    secret = _enable(client, collector.url)
    message_id = inbound(control, text="Hello, I need help with my order")
    drain(control)
    [event] = _events(collector, secret)
    assert event["event"] == "message" and event["projectId"] == "sim-project"
    data = event["data"]
    assert data["from"] == PHONE and data["messageId"] == message_id
    assert data["timestamp"].isdigit()
    assert data["type"] == "text" and data["text"] == {"body": "Hello, I need help with my order"}
    assert data["contact"] == {"name": "John Doe", "wa_id": PHONE}


def test_other_types_and_context(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    secret = _enable(client, collector.url)
    control.post(
        "/sim/inbound",
        json={"from": PHONE, "name": "Jo", "type": "button",
              "content": {"text": "Yes", "payload": "YES"}, "context": "wamid.abc"},
    ).raise_for_status()  # fmt: skip
    drain(control)
    [event] = _events(collector, secret)
    assert event["data"]["button"] == {"text": "Yes", "payload": "YES"}
    assert event["data"]["context"] == {"id": "wamid.abc"}


def test_a_send_yields_sent_delivered_read(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    secret = _enable(client, collector.url, ["statuses"])
    inbound(control)  # not delivered: only statuses are wanted
    sent = client.send_text(PHONE, "hi")
    drain(control)
    events = _events(collector, secret)
    assert [(e["event"], e["data"]["status"]) for e in events] == [
        ("status", "sent"), ("status", "delivered"), ("status", "read"),
    ]  # fmt: skip
    assert {e["data"]["messageId"] for e in events} == {sent.message_id}
    assert {e["data"]["recipient"] for e in events} == {PHONE}
    assert client.messages(PHONE).items[0].status == "read"


def test_failed_status_via_control(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    inbound(control)
    sent = client.send_text(PHONE, "hi")
    drain(control)
    secret = _enable(client, collector.url)
    errors = [{"code": 131047, "title": "Re-engagement message"}]
    control.post(
        "/sim/status", json={"messageId": sent.message_id, "status": "failed", "errors": errors}
    ).raise_for_status()
    drain(control)
    [event] = _events(collector, secret)
    assert event["data"]["status"] == "failed" and event["data"]["errors"] == errors


def test_non_2xx_is_retried_and_recorded(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    secret = _enable(client, collector.url)
    collector.statuses.extend([500, 503])
    inbound(control)
    drain(control)
    assert len(_events(collector, secret)) == 3
    [delivery] = control.get("/sim/history").json()["deliveries"]
    assert [a.get("statusCode") for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["delivered"] and delivery["done"]


def test_unreachable_endpoint_gives_up_after_the_attempts(
    client: PortalClient, control: httpx.Client
) -> None:
    _enable(client, "http://127.0.0.1:9/webhook")  # port 9 (discard): refused
    control.put("/sim/settings", json={"delivery_attempts": 2})
    inbound(control)
    drain(control)
    [delivery] = control.get("/sim/history").json()["deliveries"]
    assert len(delivery["attempts"]) == 2 and not delivery["delivered"]
    assert "error" in delivery["attempts"][0]


def test_chaos_duplicates_and_out_of_order(
    client: PortalClient, control: httpx.Client, collector: Collector
) -> None:
    secret = _enable(client, collector.url)
    control.put("/sim/chaos", json={"duplicate_rate": 1.0, "out_of_order": True})
    inbound(control)
    client.send_text(PHONE, "hi")
    drain(control)
    events = _events(collector, secret)
    kinds = [e["data"].get("status", e["event"]) for e in events]
    assert sorted(kinds) == sorted(["message"] * 2 + ["read", "read", "delivered",
                                                       "delivered", "sent", "sent"])  # fmt: skip
    statuses = [k for k in kinds if k != "message"]
    assert statuses == ["read", "read", "delivered", "delivered", "sent", "sent"]
    assert client.messages(PHONE).items[0].status == "read"  # the store never goes backwards


def test_a_send_recorded_late_appears_in_the_history_after_the_record_delay(
    client: PortalClient, control: httpx.Client
) -> None:
    control.put("/sim/chaos", json={"record_delay": 30.0}).raise_for_status()
    inbound(control)
    sent = client.send_text(PHONE, "hi")
    assert [m.direction for m in client.messages(PHONE).items] == ["inbound"]  # not yet
    assert [s["messageId"] for s in control.get("/sim/history").json()["sent"]] == [
        sent.message_id
    ]  # the control API's list has it at once
    control.post("/sim/clock", json={"advance": 31}).raise_for_status()
    assert [m.direction for m in client.messages(PHONE).items] == ["outbound", "inbound"]


def test_reset_and_clock(control: httpx.Client) -> None:
    before = control.get("/sim/clock").json()["now"]
    after = control.post("/sim/clock", json={"advance": 86400}).json()["now"]
    assert after[:10] > before[:10]
    control.put("/sim/chaos", json={"latency": 0.01})
    control.post("/sim/reset")
    assert control.get("/sim/chaos").json()["latency"] == 0.0
    assert control.get("/sim/clock").json()["now"][:10] == before[:10]


def test_control_api_refuses_unknown_settings(control: httpx.Client) -> None:
    response = control.put("/sim/chaos", json={"nonsense": 1})
    assert response.status_code == 400 and "nonsense" in response.json()["error"]
    response = control.put("/sim/settings", json={"verified": "yes"})
    assert response.status_code == 400


def test_full_loop_simulator_to_receiver_to_queue(
    client: PortalClient, control: httpx.Client, redis_url: str, r: BytesRedis
) -> None:
    secret = client.set_webhook("http://127.0.0.1:1/webhook", enabled=True).webhook_secret
    assert secret
    receiver = create_app(Settings(secrets=(secret,), redis_url=redis_url))
    with serve(receiver) as url:
        client.set_webhook(f"{url}/webhook", enabled=True, events=["messages"])
        message_id = inbound(control)
        drain(control)
        [delivery] = control.get("/sim/history").json()["deliveries"]
        assert [a.get("statusCode") for a in delivery["attempts"]] == [200]
    assert r.llen("rq:queue:wabahooks:messages") == 1
    [job_id] = r.lrange("rq:queue:wabahooks:messages", 0, -1)
    job = Job.fetch(job_id.decode(), connection=r, serializer=JSONSerializer)
    assert job.kwargs["envelope"]["data"]["messageId"] == message_id


def test_every_response_carries_one_date_header_on_the_simulators_clock(
    control: httpx.Client,
) -> None:
    def dates(response: httpx.Response) -> list[datetime]:
        return [parsedate_to_datetime(v) for v in response.headers.get_list("date")]

    api = {"Authorization": "Bearer sim-key"}
    [now] = dates(control.get("/api/v1/templates", headers=api))
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    [refused] = dates(control.get("/api/v1/templates"))  # errors carry it too (401 here)
    assert abs(refused - datetime.now(UTC)) < timedelta(seconds=5)
    control.put("/sim/settings", json={"clock_skew": 900}).raise_for_status()
    [ahead] = dates(control.get("/api/v1/templates", headers=api))
    assert abs(ahead - (datetime.now(UTC) + timedelta(minutes=15))) < timedelta(seconds=5)
