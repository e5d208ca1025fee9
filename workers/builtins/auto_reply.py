"""Auto-reply: answer inbound messages from configured rules, first match wins.

A rule matches on the text (``text`` exact, ``contains``, ``regex``; case-insensitive
unless ``ignore_case = false``; a button's or list reply's text counts as text), a
button's ``payload``, or the message ``type`` (every matcher given must hold); then
``default`` answers anything else. Outside business ``hours`` the ``out_of_hours``
reply is sent instead. Never to statuses, tests, reactions (unless a rule names
``type = "reaction"``) or the configured agent numbers (unless a rule says
``agents = true``), and the same reply goes to one contact at most once per
``cooldown`` seconds.

Replies may use ``{name}``, ``{first_name}``, ``{number}``, ``{text}``, ``{type}``,
``{payload}``, ``{caption}``; a field the message lacks renders empty. Nothing in a
message is ever evaluated: placeholders are plain names looked up in a dict.

The router declares a reply only for messages a rule (or the default) answers and
the cooldown does not hold back (decided from the contact's store before any handler
runs), so the mark-read built-in shows "typing…" exactly then.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime

from service.portal.validation import fit_text
from workers import AsyncContext, InboundMessage, Router
from workers.replyrules import PLACEHOLDER, AutoReplyConfig, Rule

__all__ = ["NAME", "build", "choose", "render"]

NAME = "auto_reply"


def _matches(rule: Rule, event: InboundMessage, agent: bool) -> bool:
    if agent and not rule.agents:
        return False
    if event.type == "reaction" and (rule.types is None or "reaction" not in rule.types):
        return False
    if rule.types is not None and event.type not in rule.types:
        return False
    if rule.payload and event.payload not in rule.payload:
        return False
    if not (rule.text or rule.contains or rule.regex):
        return True
    if event.text is None:
        return False
    folded = event.text.casefold() if rule.ignore_case else event.text
    if rule.text and folded.strip() not in rule.text:
        return False
    if rule.contains and not any(part in folded for part in rule.contains):
        return False
    return rule.regex is None or rule.regex.search(event.text) is not None


def choose(config: AutoReplyConfig, event: InboundMessage, now: datetime) -> tuple[str, str] | None:
    """Return (which reply, its template) for ``event`` at ``now``, or None: no reply."""
    agent = event.sender in config.agents
    ordinary = not agent and event.type != "reaction"
    if config.hours is not None and config.out_of_hours and not config.hours.is_open(now):
        return ("out_of_hours", config.out_of_hours) if ordinary else None
    for rule in config.rules:
        if _matches(rule, event, agent):
            return rule.key, rule.reply
    if config.default and ordinary:
        return "default", config.default
    return None


def render(template: str, event: InboundMessage) -> str:
    """Fill ``template``'s placeholders from ``event``; missing fields render empty."""
    name = (event.contact.name or "").strip()
    values = {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "number": event.sender,
        "text": event.text or "",
        "type": event.type,
        "payload": event.payload or "",
        "caption": (event.media.caption if event.media else None) or "",
    }

    def fill(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole in ("{{", "}}"):
            return whole[0]
        return values.get(match.group(1), "")

    return fit_text(PLACEHOLDER.sub(fill, template).strip())


def _cooldown_key(template: str) -> str:
    return "auto_reply:" + hashlib.sha256(template.encode()).hexdigest()[:16]


def build(config: AutoReplyConfig, *, clock: Callable[[], datetime] | None = None) -> Router:
    """Return the auto-reply router for ``config`` (``clock``: the current time, aware)."""
    now = clock or (lambda: datetime.now(UTC))
    router = Router(NAME)

    def answered(event: InboundMessage) -> bool:
        return choose(config, event, now()) is not None

    async def cooling_down(ctx: AsyncContext, template: str, moment: datetime) -> bool:
        if not config.cooldown:
            return False
        last = await ctx.store.get(_cooldown_key(template))
        return isinstance(last, int | float) and 0 <= moment.timestamp() - last < config.cooldown

    async def will_reply(event: InboundMessage, ctx: AsyncContext) -> bool:
        chosen = choose(config, event, now())
        return chosen is not None and not await cooling_down(ctx, chosen[1], now())

    @router.message(when=answered, replies=will_reply)
    async def auto_reply(event: InboundMessage, ctx: AsyncContext) -> None:
        moment = now()
        chosen = choose(config, event, moment)
        if chosen is None:  # the hours turned between matching and running
            return
        which, template = chosen
        key = _cooldown_key(template)
        if await cooling_down(ctx, template, moment):
            ctx.log.info("auto_reply.cooldown", reply=which)
            return
        await ctx.portal.send_text(event.sender, render(template, event))
        if config.cooldown:  # without one there is nothing to remember
            await ctx.store.set(key, moment.timestamp())
        ctx.log.info("auto_reply.sent", reply=which)

    return router
