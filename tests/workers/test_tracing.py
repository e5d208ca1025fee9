"""Traces of an event's journey (``service.tracing``), with the SDK's in-memory exporter: the
simulator's webhook → receiver (SERVER) → intake (PRODUCER) → job (``traceparent``) → worker
(CONSUMER) → handler → portal calls (CLIENT), one trace id throughout, attributes by the
semantic conventions, and no phone number, text or raw message id in any of them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from rq import Queue
from rq.serializers import JSONSerializer

from service import tracing
from tests.support.loop import running_loop
from tests.test_log_schema import assert_no_number
from tests.workers.example_handlers import router

SENDER = "919876543210"
TEXT = "my order 4711 never came"
KEY = b"tracing-test-key-0123456789abcdef"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A tracer provider whose spans land in ``provider.exporter``; traces on for the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.exporter = exporter  # type: ignore[attr-defined]
    tracing.activate(provider, KEY)
    try:
        yield provider
    finally:
        tracing.deactivate()
        provider.shutdown()


def finished(provider: TracerProvider) -> Sequence[ReadableSpan]:
    exporter: InMemorySpanExporter = provider.exporter  # type: ignore[attr-defined]
    return exporter.get_finished_spans()


def every_text(span: ReadableSpan) -> str:
    """Everything a span carries that a backend shows: name, attributes, events, status."""
    parts: list[Any] = [span.name, span.status.description or ""]
    parts += [f"{k}={v!s}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        parts += [event.name, *[f"{k}={v!s}" for k, v in (event.attributes or {}).items()]]
    return "\n".join(map(str, parts))


def test_one_trace_follows_a_message_from_the_webhook_to_the_portal_calls(
    redis_url: str, provider: TracerProvider
) -> None:
    with running_loop(redis_url, router) as loop:
        message_id = loop.inbound(TEXT, sender=SENDER)
        loop.work(["wabahooks:messages"])
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        (job_id,) = queue.finished_job_registry.get_job_ids()
        job = queue.fetch_job(job_id)
        assert job is not None
        carried = job.kwargs["traceparent"]

    spans = finished(provider)
    servers = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER and (s.attributes or {}).get("wabahooks.kind") == "message"
    ]
    assert len(servers) == 1
    server = servers[0]
    trace_id = server.context.trace_id
    journey = [s for s in spans if s.context.trace_id == trace_id]
    by_kind = {kind: [s for s in journey if s.kind == kind] for kind in SpanKind}

    # The intake: a messaging send span, child of the request's; the job carries its context
    # (W3C traceparent).
    (producer,) = by_kind[SpanKind.PRODUCER]
    assert producer.name == "send wabahooks:messages"
    assert producer.parent is not None and producer.parent.span_id == server.context.span_id
    assert dict(producer.attributes or {}) == {
        "messaging.system": "rq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "wabahooks:messages",
        "messaging.message.id": job_id,
        "wabahooks.outcome": "accepted",
    }
    flags = int(producer.context.trace_flags)
    assert flags & 1  # sampled
    assert carried == f"00-{trace_id:032x}-{producer.context.span_id:016x}-{flags:02x}"

    # The receiver: HTTP server conventions.
    attributes = dict(server.attributes or {})
    assert server.name == "POST /webhook"
    assert server.parent is None
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.path"] == attributes["http.route"] == "/webhook"
    assert attributes["url.scheme"] == "http"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "127.0.0.1"
    assert isinstance(attributes["server.port"], int)
    assert attributes["wabahooks.outcome"] == "accepted"
    assert attributes["wabahooks.job_id"] == job_id
    assert re.fullmatch(r"message:wamid~[0-9a-f]{16}", str(attributes["wabahooks.event_key"]))
    assert server.status.status_code == StatusCode.UNSET

    # The worker: a messaging process span, child of the intake's.
    (consumer,) = by_kind[SpanKind.CONSUMER]
    assert consumer.name == "process wabahooks:messages"
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.system"] == "rq"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == "wabahooks:messages"
    assert attributes["messaging.message.id"] == job_id
    assert attributes["wabahooks.outcome"] == "done"
    assert attributes["wabahooks.attempt"] == 1
    assert attributes["wabahooks.event_key"] == server.attributes["wabahooks.event_key"]  # type: ignore[index]

    # The handler (a plain def, in a thread), child of the job's span.
    (handler,) = [s for s in by_kind[SpanKind.INTERNAL] if s.name.startswith("handler ")]
    assert handler.name == "handler example:echo"
    assert handler.parent is not None and handler.parent.span_id == consumer.context.span_id
    assert handler.attributes == {"wabahooks.handler": "example:echo"}

    # The portal calls it made (through the thread's bridge back to the loop): HTTP client.
    clients = sorted(by_kind[SpanKind.CLIENT], key=lambda s: s.start_time or 0)
    assert [s.name for s in clients] == [
        "POST /api/v1/messages/mark-read",
        "POST /api/v1/messages/text",
    ]
    for client, call in zip(clients, ("mark_read", "send_text"), strict=True):
        assert client.parent is not None and client.parent.span_id == handler.context.span_id
        attributes = dict(client.attributes or {})
        assert attributes["http.request.method"] == "POST"
        assert attributes["http.response.status_code"] == 200
        assert attributes["server.address"] == "127.0.0.1"
        assert isinstance(attributes["server.port"], int)
        assert str(attributes["url.full"]).endswith(str(attributes["url.template"]))
        assert attributes["wabahooks.portal.call"] == call
        assert "http.request.resend_count" not in attributes

    # Nothing personal, anywhere: not the number (nor inside a decoded id), the text, the id.
    for span in spans:
        text = every_text(span)
        assert_no_number(text, [SENDER])
        assert TEXT not in text and message_id not in text
    assert len(journey) == 6


def test_a_job_without_a_trace_context_starts_a_trace_of_its_own(
    redis_url: str, provider: TracerProvider
) -> None:
    with running_loop(redis_url, router) as loop:
        tracing.deactivate()  # a job written by a receiver that is not tracing (or older)
        loop.inbound(TEXT, sender=SENDER)
        tracing.activate(provider, KEY)
        loop.work(["wabahooks:messages"])

    spans = finished(provider)
    # (The status webhooks of the reply arrive while tracing is on: their own traces.)
    assert not [
        s
        for s in spans
        if (s.attributes or {}).get("wabahooks.kind") == "message" and s.kind == SpanKind.SERVER
    ]
    (consumer,) = [s for s in spans if s.kind == SpanKind.CONSUMER]
    assert consumer.parent is None
    below = [s for s in spans if s.context.trace_id == consumer.context.trace_id]
    assert len(below) == 4  # the job, its handler, two portal calls


def test_refusals_and_portal_errors_mark_their_spans_failed(
    redis_url: str, provider: TracerProvider
) -> None:
    with running_loop(redis_url, router) as loop:
        loop.chaos(server_error_next=1)  # the first portal call (mark-read) gets a 500
        loop.inbound(TEXT, sender=SENDER)
        loop.work(["wabahooks:messages"])

    spans = finished(provider)
    clients = sorted(
        (s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    first, retried = clients[0], clients[1]
    assert first.attributes["http.response.status_code"] == 500  # type: ignore[index]
    assert first.attributes["error.type"] == "500"  # type: ignore[index]
    assert first.status.status_code == StatusCode.ERROR
    # The client's own retry of the call: a new span, counted as a resend.
    assert retried.attributes["http.request.resend_count"] == 1  # type: ignore[index]
    assert retried.attributes["http.response.status_code"] == 200  # type: ignore[index]


def test_an_async_handlers_portal_calls_are_children_of_its_span(
    redis_url: str, provider: TracerProvider
) -> None:
    # The built-in mark-read: an `async def` handler, its call on the job's own task.
    with running_loop(redis_url, config='[handlers.mark_read]\nmode = "always"\n') as loop:
        loop.inbound(TEXT, sender=SENDER)
        loop.work(["wabahooks:messages"])

    spans = finished(provider)
    (consumer,) = [s for s in spans if s.kind == SpanKind.CONSUMER]
    (handler,) = [s for s in spans if s.name.startswith("handler ")]
    (client,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert handler.name.startswith("handler mark_read")
    assert handler.parent is not None and handler.parent.span_id == consumer.context.span_id
    assert client.name == "POST /api/v1/messages/mark-read"
    assert client.parent is not None and client.parent.span_id == handler.context.span_id
