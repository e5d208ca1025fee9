"""OpenTelemetry traces of each event's journey; free when off (the default).

One trace per event: a SERVER span for the webhook request (``service.app``), a PRODUCER
``send`` span for its job's intake, whose W3C ``traceparent`` the job carries (``service.jobs``:
the optional ``traceparent`` argument), a CONSUMER ``process`` span per job attempt in the
worker (``workers.running``), a span per handler (``workers.dispatch``) and a CLIENT span per
HTTP attempt at a portal call (``service.portal.aclient``). See the README's "Traces".

This module is the only one the hot paths import, and it imports no OpenTelemetry package:
until :func:`activate` is called (by ``service.tracingsetup`` when the ``OTEL_*`` variables ask
for traces, or by a test with its own tracer provider) every helper returns a shared no-op
object (one global read and a comparison). The spans themselves are made by
``service.tracingspans``, imported on activation only, so the ``otel`` extra is needed only
where traces are on. No attribute carries personal data: no phone number, no text, message
ids only as the logs' keyed hashes (``service.logs.IdHasher``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from service.portal.rules import Call
    from service.portal.transport import AsyncRequester
    from service.tracingspans import Spans

__all__ = [
    "NO_SPAN",
    "SpanScope",
    "activate",
    "active",
    "consumer_span",
    "deactivate",
    "handler_span",
    "portal_requester",
    "producer_span",
    "server_span",
    "traceparent",
]


class SpanScope(Protocol):
    """A span while its block runs (``with``); it ends, marked failed if the block raised."""

    def __enter__(self) -> SpanScope: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def respond(self, status: int, fields: Mapping[str, Any]) -> None:
        """Server span: the status answered and the request's log fields (kind, outcome…)."""

    def outcome(self, outcome: str, failed: bool) -> None:
        """Consumer span: how the job attempt ended (``wabahooks_events_total``'s outcome)."""

    def sent(self, job_id: str, *, duplicate: bool) -> None:
        """Producer span: the job written (or, for a duplicate, the one found)."""


class _NoSpan:
    """Tracing is off: does nothing, shared by every caller."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def respond(self, status: int, fields: Mapping[str, Any]) -> None:
        pass

    def outcome(self, outcome: str, failed: bool) -> None:
        pass

    def sent(self, job_id: str, *, duplicate: bool) -> None:
        pass


NO_SPAN = _NoSpan()

_spans: Spans | None = None


def activate(provider: TracerProvider, key: bytes | None = None) -> None:
    """Trace from now on with ``provider``'s tracer; ids hashed with ``key`` (as in the logs;
    None: ``service.logs.id_key()``, else a random key of this process)."""
    global _spans
    from service.tracingspans import Spans  # the otel extra: imported only when tracing

    _spans = Spans(provider, key)


def deactivate() -> None:
    """Stop tracing: every helper is a no-op again (spans already started still end)."""
    global _spans
    _spans = None


def active() -> bool:
    """Return whether traces are being made."""
    return _spans is not None


def server_span(scope: Mapping[str, Any]) -> SpanScope:
    """Return the SERVER span of one webhook request (an ASGI ``scope``), current in its block."""
    spans = _spans
    return NO_SPAN if spans is None else spans.server(scope)


def traceparent() -> str | None:
    """Return the current span's W3C ``traceparent`` (None when off or outside a span)."""
    spans = _spans
    return None if spans is None else spans.traceparent()


def producer_span(queue: str) -> SpanScope:
    """Return the PRODUCER span of one event's job written onto ``queue`` (the intake), child
    of the request's: the job carries its context, so the job's CONSUMER span is its child."""
    spans = _spans
    return NO_SPAN if spans is None else spans.producer(queue)


def consumer_span(kwargs: Mapping[str, Any], *, job_id: str, queue: str, attempt: int) -> SpanScope:
    """Return the CONSUMER span of one job attempt, child of the job's ``traceparent`` (a new
    trace for a job without one)."""
    spans = _spans
    if spans is None:
        return NO_SPAN
    return spans.consumer(kwargs, job_id=job_id, queue=queue, attempt=attempt)


def handler_span(handler: str) -> SpanScope:
    """Return the span of one handler run."""
    spans = _spans
    return NO_SPAN if spans is None else spans.handler(handler)


def portal_requester(http: AsyncRequester, call: Call[Any], api_url: str) -> AsyncRequester:
    """Return ``http`` as is when off; else one that makes a CLIENT span per HTTP attempt."""
    spans = _spans
    return http if spans is None else spans.requester(http, call, api_url)
