"""POST /webhook end to end: real HTTP, real Valkey, payloads signed by the production signer."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.signature import js_stringify, sign
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import drain

MESSAGES = "rq:queue:wabahooks:messages"
STATUSES = "rq:queue:wabahooks:statuses"
OTHER = "rq:queue:wabahooks:other"


def post(receiver: Receiver, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(receiver.webhook_url, content=body, headers=headers)


def deliver(receiver: Receiver, envelope: object, secret: str = SECRET) -> httpx.Response:
    body, headers = payloads.signed(envelope, secret)
    return post(receiver, body, headers)


def stored_jobs(r: BytesRedis) -> list[bytes]:
    return [key for key in r.keys("rq:job:*") if key.count(b":") == 2]


def fetch_all(r: BytesRedis) -> list[Job]:
    ids = [key.decode().removeprefix("rq:job:") for key in stored_jobs(r)]
    return Job.fetch_many(ids, connection=r, serializer=JSONSerializer)  # type: ignore[return-value]


def claims(r: BytesRedis) -> list[bytes]:
    return r.keys("wabahooks:claim:*")


def test_valid_message_is_acknowledged_and_a_real_worker_runs_its_job(
    receiver: Receiver, r: BytesRedis
) -> None:
    envelope = payloads.message(text="Hello, I need help with my order")

    response = deliver(receiver, envelope)

    assert response.status_code == 200
    assert response.json() == {"received": True}
    (job_id,) = r.lrange(MESSAGES, 0, -1)
    job = Job.fetch(job_id.decode(), connection=r, serializer=JSONSerializer)
    assert job.func_name == "workers.entry.process_event"
    assert job.kwargs["envelope"] == envelope
    assert job.kwargs["event_key"] == f"message:{envelope['data']['messageId']}"
    assert job.kwargs["conversation"] == "919876543210"
    assert "919876543210" not in (job.description or "")
    assert drain(r, "wabahooks:messages")  # a real worker engine, in this process
    assert job.get_status(refresh=True) == JobStatus.FINISHED


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda body, sig: (body.replace(b"Hello", b"Hellp"), sig), id="tampered"),
        pytest.param(lambda body, sig: (body, sign(body, "wrong-secret")), id="wrong-secret"),
        pytest.param(lambda body, sig: (body, None), id="missing-header"),
        pytest.param(lambda body, sig: (body, "not-hex"), id="malformed-header"),
        pytest.param(lambda body, sig: (body, sig[:-2]), id="truncated-header"),
    ],
)
def test_bad_signature_is_refused_and_stores_nothing(
    receiver: Receiver, r: BytesRedis, mangle: Callable[[bytes, str], tuple[bytes, str | None]]
) -> None:
    body, headers = payloads.signed(payloads.message(), SECRET)
    body, signature = mangle(body, headers["X-Webhook-Signature"])
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Webhook-Signature"] = signature

    response = post(receiver, body, headers)

    assert response.status_code == 401
    assert response.json() == {"error": "Invalid signature"}
    assert r.dbsize() == 0


def test_old_secret_still_verifies_during_rotation(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(secrets=("new-secret", SECRET))

    assert deliver(receiver, payloads.message(), secret=SECRET).status_code == 200
    assert deliver(receiver, payloads.message(), secret="new-secret").status_code == 200
    assert len(stored_jobs(r)) == 2


def test_pretty_printed_body_whose_compact_form_was_signed_is_accepted(
    receiver: Receiver, r: BytesRedis
) -> None:
    envelope = payloads.message(text="Prix: 1.0 € — ça va? 👍")
    envelope["data"]["score"] = 1.0
    signature = sign(js_stringify(envelope), SECRET)
    pretty = json.dumps(envelope, indent=2, ensure_ascii=True).encode()

    response = post(
        receiver, pretty, {"Content-Type": "application/json", "X-Webhook-Signature": signature}
    )

    assert response.status_code == 200
    assert r.llen(MESSAGES) == 1


@pytest.mark.parametrize(
    "text",
    ["नमस्ते 🙏", "emoji 👨‍👩‍👧 and \u2028 line separator", "control \x01\x1f chars", "日本語"],
)
def test_unicode_bodies_are_accepted(receiver: Receiver, r: BytesRedis, text: str) -> None:
    envelope = payloads.message(text=text)

    assert deliver(receiver, envelope).status_code == 200
    (job_id,) = r.lrange(MESSAGES, 0, -1)
    job = Job.fetch(job_id.decode(), connection=r, serializer=JSONSerializer)
    assert job.kwargs["envelope"]["data"]["text"]["body"] == text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"event": "message", ', id="truncated"),
        pytest.param(b'{"event":"message","data":' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep"),
        pytest.param(b'{"text":"\xff\xfe"}', id="not-utf8"),
    ],
)
def test_a_signed_body_the_parser_refuses_is_kept_raw_and_acknowledged(
    receiver: Receiver, r: BytesRedis, body: bytes
) -> None:
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, SECRET)}

    first = post(receiver, body, headers)
    again = post(receiver, body, headers)  # kept again: nothing is deduplicated without an id

    assert first.status_code == again.status_code == 200
    assert first.json() == {"received": True, "unparsed": True}
    entries = r.xrange("wabahooks:unparsed")
    assert [fields[b"body"] for _, fields in entries] == [body, body]
    assert all(fields[b"reason"] and fields[b"received_at"] for _, fields in entries)
    assert 0 < r.ttl("wabahooks:unparsed") <= receiver.settings.retention.failure_ttl
    assert stored_jobs(r) == [] and claims(r) == []


def test_the_unparsed_stream_is_capped(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(unparsed_cap=10)
    for i in range(300):
        body = b"[" * (2000 + i)
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, SECRET)}
        assert post(receiver, body, headers).status_code == 200
    # XADD MAXLEN ~: trimmed by whole stream nodes (100 entries), never below the cap.
    assert 10 <= r.xlen("wabahooks:unparsed") <= 110
    newest = r.xrevrange("wabahooks:unparsed", count=1)[0][1][b"body"]
    assert newest == b"[" * 2299


def test_an_unsigned_body_the_parser_refuses_is_not_kept(receiver: Receiver, r: BytesRedis) -> None:
    body = b"[" * 5000
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, "guess")}

    assert post(receiver, body, headers).status_code == 401
    assert r.dbsize() == 0


def test_chunked_body_over_the_limit_is_refused_before_it_ends(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(max_body_bytes=1024)
    host, port = receiver.url.removeprefix("http://").split(":")
    head = (
        f"POST {receiver.settings.webhook_path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        f"X-Webhook-Signature: {'0' * 64}\r\n\r\n"
    ).encode()
    chunk = b"3e8\r\n" + b"x" * 1000 + b"\r\n"

    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # Two 1000-byte chunks and no terminating chunk: the body never ends, so
        # an answer proves the receiver stopped reading at the limit.
        sock.sendall(head + chunk + chunk)
        reply = sock.recv(65536)

    assert reply.startswith(b"HTTP/1.1 413")
    assert b"1024-byte limit" in reply
    assert r.dbsize() == 0


def test_content_length_over_the_limit_is_refused(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(max_body_bytes=100)
    body, headers = payloads.signed(payloads.message(), SECRET)

    response = post(receiver, body, headers)

    assert response.status_code == 413
    assert r.dbsize() == 0


def test_a_body_that_does_not_arrive_in_time_is_refused_with_408(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(body_timeout=0.5)
    host, port = receiver.url.removeprefix("http://").split(":")
    body, headers = payloads.signed(payloads.message(), SECRET)
    head = (
        f"POST {receiver.settings.webhook_path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Webhook-Signature: {headers['X-Webhook-Signature']}\r\n\r\n"
    ).encode()

    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body[:10])  # the rest never comes
        reply = sock.recv(65536)

    assert reply.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within 0.5 s (10 bytes came)" in reply
    assert r.dbsize() == 0


def test_the_stringify_fallback_is_capped_by_size(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(canonical_max_bytes=2048)

    def reformatted(text: str) -> tuple[bytes, dict[str, str]]:
        envelope = payloads.message(text=text)
        body = json.dumps(envelope, indent=2).encode()  # signed as JSON.stringify of it
        return body, {
            "Content-Type": "application/json",
            "X-Webhook-Signature": sign(js_stringify(envelope), SECRET),
        }

    small, large = reformatted("short"), reformatted("x" * 3000)

    assert post(receiver, *small).status_code == 200
    assert post(receiver, *large).status_code == 401  # not re-serialised: over the cap
    assert len(stored_jobs(r)) == 1


def test_non_json_content_type_and_other_methods_are_refused(
    receiver: Receiver, r: BytesRedis
) -> None:
    body, headers = payloads.signed(payloads.message(), SECRET)

    form = post(receiver, body, {**headers, "Content-Type": "application/x-www-form-urlencoded"})
    get = httpx.get(receiver.webhook_url)

    assert form.status_code == 415
    assert "application/json" in form.json()["error"]
    assert get.status_code == 405
    assert "GET" in get.json()["error"]
    assert r.dbsize() == 0


def test_same_event_delivered_twenty_times_concurrently_makes_one_job(
    receiver: Receiver, r: BytesRedis
) -> None:
    body, headers = payloads.signed(payloads.message(), SECRET)

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(
                *(
                    client.post(receiver.webhook_url, content=body, headers=headers)
                    for _ in range(20)
                )
            )

    responses = asyncio.run(storm())

    assert [resp.status_code for resp in responses] == [200] * 20
    assert sum(1 for resp in responses if resp.json().get("duplicate")) == 19
    assert r.llen(MESSAGES) == 1
    assert len(stored_jobs(r)) == 1
    assert len(claims(r)) == 1


def test_each_status_of_one_message_goes_through_once(receiver: Receiver, r: BytesRedis) -> None:
    for value in ("sent", "delivered", "read", "delivered"):
        assert deliver(receiver, payloads.status("wamid.OUT1", value)).status_code == 200

    assert sorted(job.kwargs["event_key"] for job in fetch_all(r)) == [
        "status:wamid.OUT1:delivered",
        "status:wamid.OUT1:read",
        "status:wamid.OUT1:sent",
    ]


def test_unknown_or_odd_events_are_kept_on_the_catch_all_queue(
    receiver: Receiver, r: BytesRedis
) -> None:
    odd = [
        {"event": "account_update", "data": {"x": 1}},
        {"timestamp": "2024-01-15T10:30:00Z"},
        {"event": "message", "data": "not an object"},
        [1, 2, 3],
    ]
    for envelope in odd:
        response = deliver(receiver, envelope)
        assert response.status_code == 200, response.text
    assert deliver(receiver, odd[0]).json() == {"received": True, "duplicate": True}

    assert r.llen(OTHER) == 4
    assert r.llen(MESSAGES) == 0


def test_test_event_is_deduplicated_by_test_id(receiver: Receiver, r: BytesRedis) -> None:
    envelope = {
        "event": "test",
        "timestamp": "2024-01-15T10:30:00Z",
        "projectId": "p",
        "data": {"message": "This is a test webhook from WABA Portal", "testId": "abc123"},
    }
    assert deliver(receiver, envelope).json() == {"received": True}
    assert deliver(receiver, envelope).json() == {"received": True, "duplicate": True}
    assert r.llen(OTHER) == 1
    assert claims(r) == [b"wabahooks:claim:test:abc123"]


def test_replay_tolerance_refuses_old_timestamps(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(replay_tolerance=300)
    old = payloads.message()  # timestamp 2024-01-15
    fresh = payloads.message()
    fresh["timestamp"] = datetime.now(UTC).isoformat()

    refused = deliver(receiver, old)
    accepted = deliver(receiver, fresh)

    assert refused.status_code == 401
    assert "outside the 300 s replay tolerance" in refused.json()["error"]
    assert accepted.status_code == 200
    assert r.llen(MESSAGES) == 1


def test_three_messages_of_one_contact_form_a_chain_in_order(
    receiver: Receiver, r: BytesRedis
) -> None:
    for text in ("one", "two", "three"):
        assert (
            deliver(receiver, payloads.message(sender="447700900123", text=text)).status_code == 200
        )
    other = deliver(receiver, payloads.message(sender="15551234567", text="elsewhere"))
    assert other.status_code == 200

    queued = [j.decode() for j in r.lrange(MESSAGES, 0, -1)]
    by_text = {job.kwargs["envelope"]["data"]["text"]["body"]: job for job in fetch_all(r)}
    first, second, third = by_text["one"], by_text["two"], by_text["three"]
    # The first of the contact and the other contact's message are runnable; the rest wait.
    assert set(queued) == {first.id, by_text["elsewhere"].id}
    assert second.get_status() == JobStatus.DEFERRED
    assert third.get_status() == JobStatus.DEFERRED
    assert second.dependency_ids == [first.id]
    assert third.dependency_ids == [second.id]
    assert second.allow_dependency_failures and third.allow_dependency_failures

    drain(r, "wabahooks:messages")
    for job in by_text.values():
        job.refresh()
    assert {text: job.get_status() for text, job in by_text.items()} == dict.fromkeys(
        by_text, JobStatus.FINISHED
    )
    assert first.ended_at and second.started_at and second.ended_at and third.started_at
    assert first.ended_at <= second.started_at
    assert second.ended_at <= third.started_at


def test_health_and_readiness(receiver: Receiver) -> None:
    assert httpx.get(receiver.url + "/healthz").json() == {"alive": True}
    ready = httpx.get(receiver.url + "/readyz").json()
    assert ready["ready"] is True
    assert ready["redis_memory"]["admitting"] is True


def test_strict_durability_waits_for_the_aof_fsync_and_accepts(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(wait_aof=True)

    responses = [deliver(receiver, payloads.message(sender=str(n))) for n in range(3)]

    assert [resp.json() for resp in responses] == [{"received": True}] * 3
    assert r.llen(MESSAGES) == 3
