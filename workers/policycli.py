"""``wabahooks optout list`` and ``wabahooks handover PHONE --on/--off``: the policy by hand.

They read and write the policy's records in Redis (``service.policystore``) directly;
a running worker sees the change at the contact's next event. ``handover`` needs the
``[policy]`` table (its ``idle`` time applies); ``optout list`` works without it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime

import click
import redis
import redis.asyncio as aioredis

from service.cli.admin import connect
from service.logs import mask_phone
from service.policystore import (
    CONTACT_TTL,
    PolicyKeys,
    hash_number,
    optout_entries,
    sync_hash_key,
)
from service.portal import PortalClient, PortalError, PortalSettings
from service.portal.ratelimit import RateLimiter
from service.portal.validation import check_phone
from service.settings import ConfigError, Settings
from workers.config import load_config
from workers.convredis import cancel_conversation
from workers.policy.config import PolicyConfig, policy_config

__all__ = ["handover", "optout"]


def _phone(value: str) -> str:
    phone = value.strip().removeprefix("+").replace(" ", "")
    if problem := check_phone(phone):
        raise click.BadParameter(f"{phone!r}: {problem.detail}", param_hint="PHONE")
    return phone


def _policy() -> PolicyConfig:
    try:
        config = policy_config(load_config().raw)
    except ConfigError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(2)
    if config is None:
        click.echo(
            "wabahooks: the conversation policy is off: add a [policy] table to the "
            "configuration file (WABAHOOKS_CONFIG, default wabahooks.toml)",
            err=True,
        )
        sys.exit(2)
    return config


@click.group()
def optout() -> None:
    """The opt-out list: contacts who sent STOP (or another stop word)."""


@optout.command("list")
@click.option("--full", is_flag=True, help="Show whole numbers (masked by default).")
def optout_list(full: bool) -> None:
    """List opted-out contacts, oldest first: number, since when, the word they sent.

    A contact removed by `wabahooks forget` shows as "(forgotten)" with the start of
    the keyed hash that still keeps them from being messaged.
    """
    settings, connection = connect()
    entries = optout_entries(connection, PolicyKeys(settings.queue_prefix))
    if not entries:
        click.echo("No contact has opted out.")
        return
    for entry in entries:
        if entry.phone is None:
            who = f"(forgotten) {entry.digest[:12]}…"
        else:
            who = "+" + (entry.phone if full else mask_phone(entry.phone) or "")
        since = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(f"{who}\t{since}\t{entry.word}")
    click.echo(f"{len(entries)} opted out", err=True)


def _notice(
    connection: redis.Redis, keys: PolicyKeys, phone: str, text: str, config: PolicyConfig
) -> str:
    """Send the configured notice if it may go now; return a sentence saying what happened.

    Not through the ledger (there is no job): run once, it is sent once."""
    if not text:
        return ""
    if not (os.environ.get("WABA_API_URL") and os.environ.get("WABA_API_KEY")):
        return " No notice sent: WABA_API_URL and WABA_API_KEY are not set."
    raw = connection.hget(keys.contact(phone), "inbound_at")
    if raw is None or float(raw) + 24 * 3600 - config.window.margin <= time.time():
        return " No notice sent: the contact's 24-hour window is closed."
    if connection.hexists(keys.optout, hash_number(sync_hash_key(connection, keys), phone)):
        return " No notice sent: the contact opted out."
    try:
        settings = PortalSettings.from_env()
        limiter = RateLimiter.from_settings(connection, settings, prefix=keys.prefix)
        with PortalClient(settings, limiter=limiter) as client:
            client.send_text(phone, text)
    except (ConfigError, PortalError) as exc:
        return f" The notice was not sent: {exc}"
    return " Notice sent."


@click.command()
@click.argument("phone")
@click.option("--on/--off", "on", required=True, help="Hand the conversation to a human, or back.")
@click.option(
    "--notice/--no-notice",
    default=True,
    help="Send [policy.handover] on_notice / off_notice, if configured (default: yes).",
)
def handover(phone: str, on: bool, notice: bool) -> None:
    """Hand PHONE's conversation to a human (automated replies pause) or back to the bot.

    --on lasts until `handover PHONE --off`, `#done` from an agent, or [policy.handover]
    idle seconds without activity. The configured notice goes to the contact (inside
    their 24-hour window, unless they opted out; needs WABA_API_URL and WABA_API_KEY)
    unless --no-notice.
    """
    phone = _phone(phone)
    config = _policy()
    settings, connection = connect()
    keys = PolicyKeys(settings.queue_prefix)
    now = time.time()
    if on:
        fields: dict[str, str | float] = {
            "handover": "1",
            "handover_by": "cli",
            "handover_since": now,
            "handover_until": now + config.handover.idle,
        }
        pipe = connection.pipeline(transaction=True)
        pipe.hset(keys.contact(phone), mapping=fields)  # type: ignore[arg-type]
        pipe.expire(keys.contact(phone), CONTACT_TTL)
        pipe.zadd(keys.open, {phone: now})
        pipe.execute()
        if (step := asyncio.run(_cancel_step(settings, phone))) is not None:
            click.echo(f"Its pending step {step!r} is cancelled (a person answers now).")
        sent = _notice(connection, keys, phone, config.handover.on_notice, config) if notice else ""
        click.echo(
            f"+{phone} handed over to a human for up to {config.handover.idle} s idle.{sent}"
        )
    else:
        pipe = connection.pipeline(transaction=True)
        pipe.hdel(
            keys.contact(phone), "handover", "handover_by", "handover_since", "handover_until"
        )
        pipe.hset(keys.contact(phone), "handover_ended", time.time())
        pipe.expire(keys.contact(phone), CONTACT_TTL)
        pipe.execute()
        sent = (
            _notice(connection, keys, phone, config.handover.off_notice, config) if notice else ""
        )
        click.echo(f"+{phone} is back with the bot.{sent}")


async def _cancel_step(settings: Settings, phone: str) -> str | None:
    """Cancel ``phone``'s pending wait-for-reply step, as a handover from a job does; return
    its name, if there was one."""
    client = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        cancelled = await cancel_conversation(client, phone, prefix=settings.queue_prefix)
    finally:
        await client.aclose()
    return None if cancelled is None else str(cancelled.get("step"))
