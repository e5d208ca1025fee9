"""``wabahooks replay``: run archived events through the handlers again (``workers.replay``).

Without ``--dry-run`` the events are written as new jobs, each a new ledger scope, so the
handlers' effects are real: the command shows the count and asks first (``--yes`` for
scripts). ``--scope NAME`` names the scope (default: one per run, printed); running again
with the same scope enqueues nothing already replayed in it. ``--to URL`` re-forwards the
envelopes to an HTTP endpoint instead, signed as the forwarding built-in signs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import httpx
import redis.asyncio as aioredis
import structlog

from service.archive import ArchiveKeys, contact_token, load_entries, select
from service.cli.admin import connect
from service.cli.common import fail
from service.logs import IdHasher, id_key, mask_phone
from service.settings import ConfigError, Settings
from workers.eventsview import phone_argument
from workers.replay import dry_run, enqueue, forward

__all__ = ["parse_when", "replay"]

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(value: str, now: datetime | None = None) -> float:
    """Epoch seconds of ``value``: ``30m``/``2h``/``1d`` ago, or an ISO 8601 date or time
    (UTC unless it says otherwise). Raise ValueError saying what is accepted."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(value.strip())
    if relative:
        delta = timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
        return (now - delta).timestamp()
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: give a duration ago (30m, 2h, 1d) or an ISO 8601 "
            "date or time (2026-11-30, 2026-11-30T02:00, UTC unless it has an offset)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _when(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


@click.command()
@click.option("--since", required=True, callback=_when, help="From (30m, 2h, 1d, or ISO 8601).")
@click.option("--until", callback=_when, help="Until (same forms; default now).")
@click.option("--kind", "kinds", multiple=True, help="Only events of this kind (repeatable).")
@click.option("--contact", help="Only this contact's events (PHONE).")
@click.option("--handler", "handlers", multiple=True, help="Run only this handler (repeatable).")
@click.option("--dry-run", is_flag=True, help="Run the handlers, send nothing: show what would be.")
@click.option("--scope", help="The replay's ledger scope (default: a new one for this run).")
@click.option("--to", "url", help="POST the events to URL instead, signed (see --secret).")
@click.option("--secret", envvar="WABAHOOKS_REPLAY_SECRET", help="--to's signing secret.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def replay(
    since: float,
    until: float | None,
    kinds: tuple[str, ...],
    contact: str | None,
    handlers: tuple[str, ...],
    dry_run: bool,
    scope: str | None,
    url: str | None,
    secret: str | None,
    yes: bool,
) -> None:
    """Run archived events through the handlers again (or re-forward them with --to).

    Replays of replays and events still being retried are left out. Real runs write new
    jobs that the workers run, each with a fresh exactly-once ledger (the sends happen
    again, once); a second run with the same --scope enqueues nothing already replayed.
    """
    if url is not None and not secret:
        fail("--to needs --secret (or WABAHOOKS_REPLAY_SECRET): the target verifies it")
    if url is not None and not url.startswith(("http://", "https://")):
        fail(f"--to {url!r} is not an http(s) URL")
    token = None
    if contact is not None:
        phone = phone_argument(contact)
        if phone is None:
            raise click.BadParameter(f"{contact!r} is not a phone number", param_hint="--contact")
        key = id_key()
        if key is None:
            fail(
                "--contact needs WABAHOOKS_LOG_KEY (or WABA_WEBHOOK_SECRET) as the workers have it"
            )
            return
        token = contact_token(phone, key)
    settings, connection = connect()
    keys = ArchiveKeys(settings.queue_prefix)
    ids = select(connection, keys, since=since, until=until, token=token)
    entries, left_out = [], 0
    for entry in load_entries(connection, keys, ids):
        if kinds and entry.get("kind") not in kinds:
            continue
        if (
            entry.get("replay")
            or entry.get("outcome") == "retrying"
            or not isinstance(entry.get("envelope"), dict)  # a conversation's flush, timeout
        ):
            left_out += 1
            continue
        entries.append(entry)
    note = (
        f" ({left_out} replays, events being retried, or flushes and timeouts left out)"
        if left_out
        else ""
    )
    if not entries:
        click.echo(f"No archived events match{note}.")
        return
    if url is not None:
        _forward(entries, url, str(secret), dry_run=dry_run, yes=yes, note=note)
    elif dry_run:
        _dry_run(entries, settings, handlers, note)
    else:
        scope = scope or "replay-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        through = ", ".join(handlers) if handlers else "every matching handler"
        click.echo(f"{len(entries)} events{note}, through {through}, in ledger scope {scope}.")
        if not yes:
            click.confirm("Run them again, with real effects (sends)?", abort=True)
        done = asyncio.run(_enqueue(settings, entries, scope, handlers))
        click.echo(
            f"scope {scope}: {len(done.jobs)} jobs enqueued, {done.already} already replayed "
            f"in this scope. The workers run them; follow with `wabahooks events tail`."
        )


async def _enqueue(
    settings: Settings,
    entries: Sequence[Mapping[str, Any]],
    scope: str,
    handlers: Sequence[str],
) -> Any:
    client = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        return await enqueue(
            client,
            entries,
            scope=scope,
            handlers=handlers,
            prefix=settings.queue_prefix,
            timeout=settings.job_timeout,
            dedupe_ttl=settings.dedupe_ttl,
            retention=settings.retention,
        )
    finally:
        await client.aclose()


def _dry_run(
    entries: Sequence[Mapping[str, Any]], settings: Settings, handlers: Sequence[str], note: str
) -> None:
    from workers.runtime import Runtime

    async def run() -> list[Any]:
        client = aioredis.Redis.from_url(settings.require_redis_url())
        try:
            runtime = Runtime.from_settings(settings, redis=client)
        except ConfigError as exc:
            await client.aclose()
            fail(str(exc))
        try:
            known = {r.name for r in runtime.registrations} | {
                r.router for r in runtime.registrations
            }
            if unknown := sorted(set(handlers) - known):
                fail(
                    f"no handler named {', '.join(unknown)}: the handlers here are "
                    f"{', '.join(sorted(known)) or 'none'} (configured as the workers are: "
                    "WABAHOOKS_HANDLERS, WABAHOOKS_CONFIG)"
                )
            sections = {r.router: runtime.section(r.router) for r in runtime.registrations}
            return await dry_run(
                client,
                entries,
                runtime.registrations,
                sections=sections,
                prefix=settings.queue_prefix,
                handlers=handlers,
            )
        finally:
            await runtime.aclose()

    # The dispatch's and the handlers' info lines would bury the report: warnings only
    # (the configuration before is put back: the command may run inside another program).
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        results = asyncio.run(run())
    finally:
        structlog.configure(**before)
    key = id_key()
    hasher = IdHasher(key) if key else None
    sends = 0
    for entry, result in zip(entries, results, strict=True):
        event_key = hasher.scrub(entry["event_key"]) if hasher else entry["event_key"]
        click.echo(
            f"{entry['kind']} {mask_phone(_contact(entry)) or '-'} {event_key} (job {entry['id']})"
        )
        for action in result.actions:
            click.echo(f"  {hasher.scrub(action) if hasher else action}")
            sends += action.startswith("would send")
        if result.error:
            click.echo(click.style(f"  would fail: {result.error}", fg="red"))
        if not result.actions and not result.error:
            click.echo("  nothing")
    click.echo(
        f"Dry run: {len(entries)} events{note}, {sends} messages would be sent; nothing was."
    )


def _contact(entry: Mapping[str, Any]) -> str | None:
    from workers.archive import contact_of

    return contact_of({"envelope": entry.get("envelope")})


def _forward(
    entries: Sequence[Mapping[str, Any]],
    url: str,
    secret: str,
    *,
    dry_run: bool,
    yes: bool,
    note: str,
) -> None:
    if dry_run:
        click.echo(f"Would POST {len(entries)} events{note} to {url}; nothing was sent.")
        return
    click.echo(f"{len(entries)} events{note} to POST to {url}.")
    if not yes:
        click.confirm("Send them?", abort=True)
    with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as http:
        outcomes = forward(http, entries, url, secret)
    failed = [(i, s) for i, s in outcomes if not (isinstance(s, int) and 200 <= s < 300)]
    for job_id, status in failed:
        click.echo(f"  job {job_id}: {status}", err=True)
    click.echo(
        f"POSTed {len(outcomes)} events to {url}: {len(outcomes) - len(failed)} accepted (2xx)."
    )
    if failed:
        sys.exit(1)
