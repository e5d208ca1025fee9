"""The receiver: a Starlette app that verifies, deduplicates and enqueues webhooks.

``POST <webhook path>`` answers, in this order of checks:

=====  =====================================================================
413    body over the limit (Content-Length, or counted while streaming)
415    content type is not JSON
408    the whole body did not arrive within the body timeout
401    signature missing, malformed or wrong; or timestamp outside the replay tolerance
503    the raw bytes do not verify and the JSON.stringify fallback is over its CPU
       budget (``REFORMAT_CPU_SHARE``)
503    Redis reached its high-water mark and is not yet below the low one
       (``service.redisguard``), or did not
       confirm the intake within the deadline (the portal retries)
200    ``{"received": true}``, or ``{"received": true, "duplicate": true}``; a
       signed body the parser refuses is kept raw (``service.unparsed``) and
       answered ``{"received": true, "unparsed": true}``
=====  =====================================================================

``GET /metrics`` serves the receiver's Prometheus metrics (``service.metrics``).

Collaborators are passed in: ``create_app(settings, redis=..., metrics=...)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service import tracing
from service.budget import REFORMAT_CPU_BURST, REFORMAT_CPU_SHARE, CpuBudget
from service.identity import Classified, classify
from service.intake import Intake, IntakeUnavailable, connect
from service.jobs import build_job, queue_name
from service.logs import mask_phone
from service.metrics import CONTENT_TYPE, ReceiverMetrics
from service.redisguard import MemoryMarks, MemoryWatch
from service.request import (
    Incoming,
    Refusal,
    check_length,
    check_replay,
    is_json,
    json_response,
    read_body,
    send_json,
)
from service.settings import Settings
from service.signature import InvalidJSON, parse_json, verify_raw, verify_reformatted
from service.unparsed import keep as keep_unparsed

__all__ = ["create_app"]

log = structlog.get_logger("wabahooks.receiver")

_ACCEPTED = b'{"received":true}'
_DUPLICATE = b'{"received":true,"duplicate":true}'
_UNPARSED = b'{"received":true,"unparsed":true}'


def create_app(
    settings: Settings,
    redis: aioredis.Redis | None = None,
    metrics: ReceiverMetrics | None = None,
) -> ASGIApp:
    """Return the receiver app (ASGI). Without ``redis``, it connects to ``settings.redis_url``;
    without ``metrics``, it counts in a registry of its own. Raise :class:`ConfigError` if no
    webhook secret is set: the receiver verifies every delivery with them."""
    settings.require_secrets()
    state: dict[str, Any] = {}
    meter = metrics if metrics is not None else ReceiverMetrics()
    reformat_budget = CpuBudget(REFORMAT_CPU_SHARE, REFORMAT_CPU_BURST)
    count = meter.request

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        client = redis or connect(settings.require_redis_url(), settings.intake_deadline)
        state["intake"] = Intake(
            client,
            prefix=settings.queue_prefix,
            dedupe_ttl=settings.dedupe_ttl,
            deadline=settings.intake_deadline,
            wait_aof=settings.wait_aof,
            metrics=meter,
        )
        state["redis"] = client
        watch = state["memory"] = MemoryWatch(
            client, MemoryMarks.of(settings), on_reading=meter.memory
        )
        await watch.refresh()
        try:
            yield
        finally:
            if redis is None:
                await client.aclose()

    async def receive(
        incoming: Incoming, read: Receive, fields: dict[str, Any]
    ) -> tuple[int, bytes]:
        check_length(incoming.content_length, settings.max_body_bytes)
        if not is_json(incoming.content_type):
            raise Refusal(415, "bad_content_type", "Content-Type must be application/json")
        body = await read_body(read, settings.max_body_bytes, settings.body_timeout)
        raw_signature = incoming.signature
        signature = raw_signature.decode("latin-1") if raw_signature is not None else None
        if not verify_raw(body, signature, settings.secrets):
            check_reformatted(body, signature)
        watch = state["memory"]
        memory = watch.current()
        if memory is not None and not memory.admitting:
            fields["reason"] = memory.describe()
            raise Refusal(
                503,
                "redis_full",
                f"Redis reached its high-water mark ({memory.describe()}): events are "
                "refused until the workers drain it below the low mark; retry later",
            )
        watch.admitted(len(body))  # counted until the next reading (service.redisguard)
        try:
            envelope = parse_json(body)
        except InvalidJSON as exc:
            return await unparsed(body, str(exc), fields)
        if settings.replay_tolerance is not None:
            check_replay(envelope, settings.replay_tolerance)
        classified: Classified = classify(envelope)
        fields.update(event_key=classified.event_key, kind=classified.kind.value)
        if classified.conversation and classified.kind.value == "message":
            fields["contact"] = mask_phone(classified.conversation)
        queue = queue_name(settings.queue_prefix, classified.kind)
        with tracing.producer_span(queue) as sending:  # the job carries this span's context
            job = build_job(
                envelope,
                classified,
                queue_prefix=settings.queue_prefix,
                timeout=settings.job_timeout,
                result_ttl=settings.retention.result_ttl,
                failure_ttl=settings.retention.failure_ttl,
                traceparent=tracing.traceparent(),
            )
            try:
                result = await state["intake"].submit(classified, job)
            except IntakeUnavailable as exc:
                fields["reason"] = str(exc)
                raise Refusal(503, "unavailable", "Storage is unavailable; retry later") from None
            sending.sent(result.job_id, duplicate=result.duplicate)
        fields["job_id"] = result.job_id
        if result.duplicate:
            fields["outcome"] = "duplicate"
            return 200, _DUPLICATE
        fields["outcome"] = "accepted"
        if result.depends_on:
            fields["after_job"] = result.depends_on
        return 200, _ACCEPTED

    def check_reformatted(body: bytes, signature: str | None) -> None:
        """Accept a body whose JSON.stringify form is signed, within the size cap and the
        CPU budget; raise :class:`Refusal` otherwise."""
        if len(body) > settings.canonical_max_bytes:
            raise Refusal(401, "bad_signature", "Invalid signature")
        if not reformat_budget.available():
            raise Refusal(
                503,
                "verify_busy",
                "The signature does not match the body's exact bytes, and re-serialising "
                "bodies to check them is over its CPU budget right now; retry later",
            )
        started = time.perf_counter()  # the time the loop was blocked, whatever the CPU
        try:
            ok = verify_reformatted(body, signature, settings.secrets)
        finally:
            reformat_budget.spend(time.perf_counter() - started)
        if not ok:
            raise Refusal(401, "bad_signature", "Invalid signature")

    async def unparsed(body: bytes, reason: str, fields: dict[str, Any]) -> tuple[int, bytes]:
        """Keep a signed body the parser refuses (``service.unparsed``); 200 once it is kept."""
        fields.update(reason=reason, size=len(body))
        try:
            async with asyncio.timeout(settings.intake_deadline):
                fields["entry_id"] = await keep_unparsed(
                    state["redis"],
                    settings.queue_prefix,
                    body,
                    reason,
                    cap=settings.unparsed_cap,
                    ttl=settings.retention.failure_ttl,
                )
        except (TimeoutError, RedisError) as exc:
            fields["error"] = str(exc) or type(exc).__name__
            raise Refusal(503, "unavailable", "Storage is unavailable; retry later") from None
        fields["outcome"] = "unparsed"
        meter.unparsed.inc()
        return 200, _UNPARSED

    async def webhook(scope: Scope, read: Receive, send: Send) -> None:
        # Plain ASGI, not a Starlette route: the portal's one hot path skips the router, the
        # middleware stack and the Request/Response objects (issue 10 item 9).
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        with tracing.server_span(scope) as span:  # a shared no-op unless traces are on
            try:
                status, body = await receive(Incoming(scope), read, fields)
            except Refusal as refusal:
                fields["outcome"] = refusal.outcome
                status, body = refusal.status, orjson.dumps({"error": refusal.message})
            await send_json(send, status, body)
            span.respond(status, fields)
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        count(fields["outcome"])
        emit = log.warning if status >= 500 or fields["outcome"] == "unparsed" else log.info
        emit("webhook", status=status, latency_ms=latency_ms, **fields)

    async def webhook_other_methods(_request: Request) -> Response:
        raise AssertionError("unreachable: POSTs to the webhook path are answered by webhook()")

    async def metrics_endpoint(_request: Request) -> Response:
        # A few microseconds for this small registry: rendered on the event loop.
        return Response(meter.render(), media_type=CONTENT_TYPE)

    async def healthz(_request: Request) -> Response:
        return json_response(200, b'{"alive":true}')

    async def readyz(_request: Request) -> Response:
        try:
            async with asyncio.timeout(settings.intake_deadline):
                ready = await state["intake"].ping()
                memory = await state["memory"].refresh() if ready else None
        except TimeoutError:
            ready = False
        if not ready:
            return JSONResponse({"ready": False, "error": "Redis does not answer"}, 503)
        # Ready even above the high-water mark: Redis memory is shared by every receiver, and
        # taking them all out of the load balancer would answer the portal with a proxy's
        # error instead of our 503 that says why.
        answer: dict[str, Any] = {"ready": True}
        if memory is not None:
            answer["redis_memory"] = memory.as_dict()
        return JSONResponse(answer)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            message = f"Method {request.method} is not allowed here; the portal POSTs JSON webhooks"
        elif exc.status_code == 404:
            message = f"No such endpoint: {request.url.path}"
        else:
            message = exc.detail
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    rest = Starlette(
        routes=[
            # POSTs never get here (below); the route makes Starlette answer 405 to others.
            Route(settings.webhook_path, webhook_other_methods, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    path = settings.webhook_path

    async def app(scope: Scope, read: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == path:
            await webhook(scope, read, send)
        else:
            await rest(scope, read, send)

    return app
