"""Forwarding: inbound events to HTTP endpoints, and messages to WhatsApp numbers.

HTTP: each ``[[handlers.forward.http]]`` target gets the verified envelope, POSTed as
the exact bytes the portal signs (``JSON.stringify`` form), with
``X-Webhook-Signature`` (hex HMAC-SHA256 of those bytes with the target's own
``secret``) and ``X-Wabahooks-Event-Key`` (the event's identity, for deduplication).
Each target's 2xx is recorded in the ledger, so a retried job only repeats the
targets that have not accepted yet; a non-2xx is retried with the job's backoff and
finally fails it with the status in the reason. Targets must be https and public
(see ``workers.builtins.safehttp``). Filters: ``events`` (message, status, test,
other) and message ``types``.

WhatsApp: each ``[[handlers.forward.whatsapp]]`` number gets "From {name} (+{number}):
{text}" (a short description for media, locations, reactions …), the number masked
unless ``number = "full"``. Messages from an agent (``[agents]`` and every forwarding
number) are never forwarded. The portal allows free text only inside the agent's own
24-hour window; outside it the job fails once, saying how to reopen the window. With
the conversation policy (``[policy]``), a forward to an agent whose window is closed is
skipped and logged instead, each forward is linked to the customer (so the agent can
answer by replying to it) and the agent is nudged before their window closes.
"""

from __future__ import annotations

import httpx

from service.identity import Kind
from service.logs import mask_phone
from service.portal import OutsideMessagingWindow
from service.portal.validation import fit_text
from service.signature import js_stringify, sign
from workers import Context, Event, InboundMessage, Permanent, Router
from workers.builtins import safehttp
from workers.sections import FORWARD_EVENTS, ForwardConfig, HttpTarget, NumberTarget

__all__ = ["EVENT_KEY_HEADER", "NAME", "SIGNATURE_HEADER", "build", "describe"]

NAME = "forward"
SIGNATURE_HEADER = "X-Webhook-Signature"
EVENT_KEY_HEADER = "X-Wabahooks-Event-Key"


def _wants(target: HttpTarget | NumberTarget, event: Event) -> bool:
    events = target.events if isinstance(target, HttpTarget) else frozenset({Kind.MESSAGE})
    if events is not None and event.kind not in events:
        return False
    if target.types is not None and isinstance(event, InboundMessage):
        return event.type in target.types
    return True


def describe(event: InboundMessage) -> str:
    """A short, one-line description of what the contact sent."""
    if event.type == "text":
        return event.text or ""
    if event.media is not None:
        return f"[{event.type}] {event.media.caption or ''}".rstrip()
    if event.location is not None:
        where = event.location.name or event.location.address
        coords = f"{event.location.latitude}, {event.location.longitude}"
        return f"[location] {where} ({coords})" if where else f"[location] {coords}"
    if event.type == "reaction":
        return f"[reaction] {event.reaction or '(removed)'}"
    if event.text:
        return f"[{event.type}] {event.text}"
    return f"[{event.type or 'message'}]"


def _line(target: NumberTarget, event: InboundMessage) -> str:
    number = event.sender if target.number == "full" else mask_phone(event.sender)
    name = event.contact.name or "unknown"
    return fit_text(f"From {name} (+{number}): {describe(event)}")


def build(
    config: ForwardConfig,
    *,
    client: httpx.Client | None = None,
    resolver: safehttp.Resolver = safehttp.getaddrinfo,
) -> Router:
    """Return the forwarding router for ``config`` (``client``/``resolver``: for tests)."""
    router = Router(NAME)
    # No keep-alive: each forward resolves, checks and connects afresh, and a client that
    # lives as long as the worker process holds no sockets between jobs.
    http = client or httpx.Client(
        timeout=config.timeout,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )

    def post(target: HttpTarget, event: Event, body: bytes) -> dict[str, object]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "wabahooks-forward",
            SIGNATURE_HEADER: sign(body, target.secret),
            EVENT_KEY_HEADER: event.event_key,
        }
        response = safehttp.post(
            http,
            target.url,
            body,
            headers,
            allow_private=config.allow_private_targets,
            resolver=resolver,
        )
        return {"status": response.status_code}

    def forward_http(event: Event, ctx: Context) -> None:
        body = js_stringify(event.envelope)
        failures: list[str] = []
        for target in config.http:
            if not _wants(target, event):
                continue
            try:
                # Each target's acceptance is recorded: a retry skips the ones that took it.
                ctx.portal.once(f"http:{target.name}", lambda t=target: post(t, event, body))  # type: ignore[misc]
            except safehttp.ForwardError as exc:
                ctx.log.warning("forward.http.failed", target=target.name, error=str(exc))
                failures.append(f"{target.name}: {exc}")
            else:
                ctx.log.info("forward.http.done", target=target.name)
        if failures:
            raise safehttp.ForwardError("forwarding failed: " + "; ".join(failures))

    if config.http:
        kinds = {k for t in config.http for k in (t.events or FORWARD_EVENTS)}

        def wanted(event: Event) -> bool:
            return any(_wants(t, event) for t in config.http)

        # One function under each kind a target wants: it still runs once per event.
        if Kind.MESSAGE in kinds:
            router.message(when=wanted)(forward_http)
        if Kind.STATUS in kinds:
            router.status(when=wanted)(forward_http)
        if Kind.TEST in kinds:
            router.test(when=wanted)(forward_http)
        if Kind.OTHER in kinds:
            router.unknown(when=wanted)(forward_http)

    def to_numbers(event: InboundMessage) -> bool:
        return event.sender not in config.agents and any(_wants(t, event) for t in config.whatsapp)

    def forward_whatsapp(event: InboundMessage, ctx: Context) -> None:
        closed: list[str] = []
        policy = ctx.policy  # with [policy]: skip closed windows, link forwards, nudge agents
        for target in config.whatsapp:
            if not _wants(target, event):
                continue
            if policy is not None and not policy.may_forward(target.to):
                ctx.log.info("forward.whatsapp.skipped", to=mask_phone(target.to),
                             reason="window closed")  # fmt: skip
                continue
            try:
                sent = ctx.portal.send_text(
                    target.to, _line(target, event), step=f"whatsapp:{target.to}"
                )
            except OutsideMessagingWindow as exc:
                ctx.log.warning("forward.whatsapp.window_closed", to=mask_phone(target.to))
                if policy is None:
                    closed.append(f"+{mask_phone(target.to)} ({exc.reason})")
                continue
            if policy is not None:
                policy.forwarded(target.to, event.sender, sent.message_id)
        if closed:
            raise Permanent(
                f"forwarding to {', '.join(closed)} was refused: the number is outside its "
                "24-hour messaging window, and the portal allows free text only within 24 hours "
                "of the recipient's last message. Fix: have the agent send any message to the "
                "business number, then `wabahooks failed requeue` this job"
            )

    if config.whatsapp:
        router.message(when=to_numbers)(forward_whatsapp)
    return router
