"""``wabahooks events tail`` and ``wabahooks events show``: the archive, read (``service.archive``).

``tail`` follows the archive's feed (``archive:feed``, a capped stream of job ids the workers
append to as events end) and prints one line per event; ``show`` prints one event's whole
journey, or a contact's recent events. Message ids are printed as the logs print them
(``wamid~`` tokens, ``service.logs``) so a line can be grepped for; contacts are masked.
Colour only on a terminal (click strips it otherwise).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from typing import Any

import click
import orjson
import redis

from service.archive import ArchiveKeys, contact_token, load_entries, select
from service.cli.admin import connect
from service.keys import Keys, rq_job
from service.logs import IdHasher, id_key
from workers.eventsview import journey, line, phone_argument, summary, wanted

__all__ = ["events"]

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _key_or_exit() -> bytes:
    key = id_key()
    if key is None:
        click.echo(
            "wabahooks: set WABAHOOKS_LOG_KEY (or WABA_WEBHOOK_SECRET) as the workers have it: "
            "contacts are indexed, and message ids printed, by a keyed hash",
            err=True,
        )
        sys.exit(2)
    return key


def _emit(entry: Mapping[str, Any], hasher: IdHasher, *, as_json: bool, text: bool) -> None:
    view = summary(entry, hasher, text=text)
    click.echo(orjson.dumps(view).decode() if as_json else line(view))


@click.group()
def events() -> None:
    """The event archive: live events, and one event's or contact's journey."""


@events.command()
@click.option("--kind", "kinds", multiple=True, help="Only this kind (message, status, …).")
@click.option("--contact", help="Only this contact's events (PHONE).")
@click.option("--handler", "handlers", multiple=True, help="Only events this handler ran on.")
@click.option("--text", is_flag=True, help="Show a preview of each message's text.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--last",
    default=10,
    show_default=True,
    help="Print the last N events first (0: only new ones), as tail does.",
)
@click.option("--count", type=int, help="Exit after printing N events.")
def tail(
    kinds: tuple[str, ...],
    contact: str | None,
    handlers: tuple[str, ...],
    text: bool,
    as_json: bool,
    last: int,
    count: int | None,
) -> None:
    """Print each event as the workers end it (needs WABAHOOKS_ARCHIVE=on in the workers)."""
    key = _key_or_exit()
    token = None
    if contact is not None:
        phone = phone_argument(contact)
        if phone is None:
            raise click.BadParameter(f"{contact!r} is not a phone number", param_hint="--contact")
        token = contact_token(phone, key)
    settings, connection = connect()
    keys = ArchiveKeys(settings.queue_prefix)
    hasher = IdHasher(key)
    printed = 0
    cursor = "$"
    if not connection.exists(keys.feed):
        click.echo(
            "Nothing archived yet: waiting. (Is WABAHOOKS_ARCHIVE=on in the workers' "
            "environment? `make dev` turns it on.)",
            err=True,
        )
    if last > 0:
        backlog: Any = connection.xrevrange(keys.feed, count=last)
        if backlog:
            cursor = backlog[0][0].decode()
        ids = [fields[b"id"].decode() for _sid, fields in reversed(backlog)]
        for entry in load_entries(connection, keys, ids):
            if wanted(entry, kinds, token, handlers) and (count is None or printed < count):
                _emit(entry, hasher, as_json=as_json, text=text)
                printed += 1
    while count is None or printed < count:
        try:
            reply: Any = connection.xread({keys.feed: cursor}, block=1000, count=100)
        except redis.RedisError as exc:
            click.echo(f"wabahooks: Redis: {exc}; retrying", err=True)
            time.sleep(1)
            continue
        for _stream, items in reply or []:
            cursor = items[-1][0].decode()
            ids = [fields[b"id"].decode() for _sid, fields in items]
            for entry in load_entries(connection, keys, ids):
                if not wanted(entry, kinds, token, handlers):
                    continue
                _emit(entry, hasher, as_json=as_json, text=text)
                printed += 1
                if count is not None and printed >= count:
                    return


def _find(connection: redis.Redis, keys: ArchiveKeys, prefix: str, ident: str) -> list[str]:
    """Job ids for a job id, a message id (``wamid.…``), an event key, or a log token."""
    if _JOB_ID.match(ident):
        return [ident]
    if ident.startswith("wamid."):
        candidates = [f"message:{ident}"] + [
            f"status:{ident}:{s}" for s in ("sent", "delivered", "read", "failed")
        ]
    elif "wamid~" not in ident:
        candidates = [ident]
    else:
        return []  # a log token: found by scanning (below)
    found = []
    for event_key in candidates:
        job_id: Any = connection.get(Keys(prefix).claim(event_key))
        if job_id is not None:
            found.append(job_id.decode())
    return found


def _scan_tokens(
    connection: redis.Redis, keys: ArchiveKeys, hasher: IdHasher, token: str
) -> list[dict[str, Any]]:
    ids = select(connection, keys, newest_first=True)
    return [e for e in load_entries(connection, keys, ids) if token in hasher.scrub(e["event_key"])]


@events.command()
@click.argument("ident", metavar="ID|PHONE")
@click.option("--json", "as_json", is_flag=True, help="The whole entries, as JSON lines.")
@click.option("--limit", default=20, show_default=True, help="A contact's latest N events.")
def show(ident: str, as_json: bool, limit: int) -> None:
    """One event's journey (job id, message id, event key or log token), or a contact's events.

    Message ids map to events through the deduplication claims (kept for
    WABAHOOKS_DEDUPE_TTL); a log token (wamid~…) is looked for in the whole archive.
    """
    key = _key_or_exit()
    settings, connection = connect()
    keys = ArchiveKeys(settings.queue_prefix)
    hasher = IdHasher(key)
    phone = phone_argument(ident)
    if phone is not None:
        ids = select(
            connection, keys, token=contact_token(phone, key), newest_first=True, limit=limit
        )
        entries = list(reversed(list(load_entries(connection, keys, ids))))
        if not entries:
            click.echo(f"No archived events of {ident}.")
            sys.exit(1)
        for entry in entries:
            if as_json:
                click.echo(orjson.dumps(entry).decode())
            else:
                click.echo(line(summary(entry, hasher, text=False)))
        return
    ident = ident.strip()
    job_ids = _find(connection, keys, settings.queue_prefix, ident)
    entries = list(load_entries(connection, keys, job_ids))
    if not entries and "wamid~" in ident:
        entries = _scan_tokens(connection, keys, hasher, ident.split("wamid~", 1)[1][:16])
    if not entries:
        # Not archived (yet): say where its job is, if RQ still has it.
        for job_id in job_ids:
            status: Any = connection.hget(rq_job(job_id), "status")
            if status is not None:
                click.echo(f"job {job_id} is {status.decode()}: archived when it ends")
        if job_ids and any(connection.exists(rq_job(i)) for i in job_ids):
            sys.exit(1)
        click.echo(
            f"No archived event for {ident!r}: give a job id, a message id (wamid.…), an event "
            "key, a log token (wamid~…) or a phone number; events still queued or running are "
            "archived when they end",
            err=True,
        )
        sys.exit(1)
    for number, entry in enumerate(entries):
        if as_json:
            click.echo(orjson.dumps(entry).decode())
            continue
        if number:
            click.echo("")
        journey(entry, hasher)
