"""The spans of ``service.tracing``, made with OpenTelemetry (the ``otel`` extra).

Names and attributes follow the OpenTelemetry semantic conventions: HTTP server and client
spans (``http.request.method``, ``url.path``, ``http.route``, ``http.response.status_code``,
``server.address``, ``error.type`` …; a 5xx marks a server span failed, a 4xx a client span),
messaging ``process`` spans (``messaging.system`` = ``rq``, ``messaging.operation.type`` =
``process``, ``messaging.destination.name`` = the queue, ``messaging.message.id`` = the job id).
Our own attributes are under ``wabahooks.``. Exceptions are recorded by type only
(``error.type``): their messages could quote a text or a number.

Nothing personal is set: no client address, no phone number or text, message ids only as the
logs' keyed hashes (``event_key``), and the portal's URLs by template with their parameters
replaced by ``REDACTED`` (``conversations/{phone_number}/messages``) and without query.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from functools import lru_cache
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.logs import IdHasher, id_key
from service.portal.rules import Call
from service.portal.transport import AsyncRequester

__all__ = ["Spans"]

_PROPAGATOR = TraceContextTextMapPropagator()
_PARAMETER = re.compile(r"\{[^}]*\}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Scope:
    """One span, current while its ``with`` block runs."""

    __slots__ = ("_hasher", "_span", "_token")

    def __init__(self, span: Span, hasher: IdHasher) -> None:
        self._span = span
        self._hasher = hasher
        self._token: object = None

    def __enter__(self) -> _Scope:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None:
            _failed(self._span, kind.__qualname__)
        otel_context.detach(self._token)  # type: ignore[arg-type]  # attach()'s token
        self._span.end()

    def respond(self, status: int, fields: Mapping[str, Any]) -> None:
        span = self._span
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            _failed(span, str(status))
        for field in ("outcome", "kind", "job_id"):
            value = fields.get(field)
            if isinstance(value, str):
                span.set_attribute(_OURS[field], value)
        event_key = fields.get("event_key")
        if isinstance(event_key, str):
            span.set_attribute("wabahooks.event_key", self._hasher.scrub(event_key))

    def outcome(self, outcome: str, failed: bool) -> None:
        self._span.set_attribute("wabahooks.outcome", outcome)
        if failed:
            self._span.set_status(Status(StatusCode.ERROR, outcome))

    def sent(self, job_id: str, *, duplicate: bool) -> None:
        self._span.set_attribute("messaging.message.id", job_id)
        self._span.set_attribute("wabahooks.outcome", "duplicate" if duplicate else "accepted")


_OURS = {"outcome": "wabahooks.outcome", "kind": "wabahooks.kind", "job_id": "wabahooks.job_id"}


def _failed(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    wanted = (b"host", b"user-agent", b"traceparent", b"tracestate")
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in wanted
    }


def _host_and_port(host: str | None, scheme: str, server: Any) -> tuple[str | None, int | None]:
    if host:
        parts = urlsplit("//" + host)
        try:
            return parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:  # a garbled Host header: say nothing rather than guess
            return None, None
    if isinstance(server, list | tuple) and len(server) == 2:
        return str(server[0]), int(server[1])
    return None, None


@lru_cache(maxsize=8)
def _portal_base(api_url: str) -> tuple[str, str, int | None]:
    """The portal's base URL (with a trailing /), host and port."""
    base = api_url.rstrip("/") + "/"
    parts = urlsplit(base)
    return base, parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme)


class _TracedRequester:
    """The portal client's requester, with a CLIENT span around each HTTP attempt."""

    def __init__(self, spans: Spans, http: AsyncRequester, call: Call[Any], api_url: str) -> None:
        self._spans = spans
        self._http = http
        self._call = call
        self._api_url = api_url
        self._attempts = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        base, host, port = _portal_base(self._api_url)
        route = self._call.route or path
        template = urlsplit(base).path + route
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "server.address": host,
            "url.full": base + _PARAMETER.sub("REDACTED", route),
            "url.template": template,
            "wabahooks.portal.call": self._call.name,
        }
        if port is not None:
            attributes["server.port"] = port
        if self._attempts:
            attributes["http.request.resend_count"] = self._attempts
        self._attempts += 1
        span = self._spans.tracer.start_span(
            f"{method} {template}", kind=SpanKind.CLIENT, attributes=attributes
        )
        with _Scope(span, self._spans.hasher):
            response = await self._http.request(method, path, json=json, params=params)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                _failed(span, str(response.status_code))
            return response


class Spans:
    """Makes the spans of ``service.tracing`` with ``provider``'s tracer."""

    def __init__(self, provider: TracerProvider, key: bytes | None = None) -> None:
        from importlib.metadata import version

        self.tracer = provider.get_tracer("wabahooks", version("wabahooks"))
        self.hasher = IdHasher(key or id_key() or secrets.token_bytes(32))

    def server(self, scope: Mapping[str, Any]) -> _Scope:
        headers = _headers(scope)
        parent = _PROPAGATOR.extract(headers) if "traceparent" in headers else None
        scheme = str(scope.get("scheme", "http"))
        route = str(scope.get("path", ""))
        method = str(scope.get("method", "POST"))
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "http.route": route,
            "url.path": route,
            "url.scheme": scheme,
            "network.protocol.version": str(scope.get("http_version", "1.1")),
        }
        address, port = _host_and_port(headers.get("host"), scheme, scope.get("server"))
        if address:
            attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
        if "user-agent" in headers:
            attributes["user_agent.original"] = headers["user-agent"]
        span = self.tracer.start_span(
            f"{method} {route}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return _Scope(span, self.hasher)

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    def producer(self, queue: str) -> _Scope:
        attributes: dict[str, str | int] = {
            "messaging.system": "rq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": queue,
        }
        span = self.tracer.start_span(
            f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        return _Scope(span, self.hasher)

    def consumer(
        self, kwargs: Mapping[str, Any], *, job_id: str, queue: str, attempt: int
    ) -> _Scope:
        carried = kwargs.get("traceparent")
        # A job without one (written before tracing, or by a receiver not tracing) starts a
        # trace of its own: an empty context, not whatever this task happens to carry.
        parent = (
            _PROPAGATOR.extract({"traceparent": carried})
            if isinstance(carried, str)
            else otel_context.Context()
        )
        attributes: dict[str, str | int] = {
            "messaging.system": "rq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job_id,
            "wabahooks.attempt": attempt,
        }
        kind = kwargs.get("kind")
        if isinstance(kind, str):
            attributes["wabahooks.kind"] = kind
        event_key = kwargs.get("event_key")
        if isinstance(event_key, str):
            attributes["wabahooks.event_key"] = self.hasher.scrub(event_key)
        span = self.tracer.start_span(
            f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        return _Scope(span, self.hasher)

    def handler(self, handler: str) -> _Scope:
        span = self.tracer.start_span(
            f"handler {handler}", attributes={"wabahooks.handler": handler}
        )
        return _Scope(span, self.hasher)

    def requester(self, http: AsyncRequester, call: Call[Any], api_url: str) -> AsyncRequester:
        return _TracedRequester(self, http, call, api_url)
