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
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import click
import orjson
import redis

from service.archive import ArchiveKeys, contact_token, load_entries, select
from service.cli.admin import connect
from service.keys import Keys
from service.logs import IdHasher, id_key
from service.portal.validation import check_phone
from service.typedevents import InboundMessage, parse_event

__all__ = ["events", "phone_argument", "summary"]

_COLOURS = {"done": "green", "failed": "red", "retrying": "yellow", "stop": "cyan"}
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_HANDLER_MARKS = {"done": "✓", "stop": "■", "skipped": "↷", "failed": "✗"}


def phone_argument(value: str) -> str | None:
    """``value`` as a contact's number (digits with country code), or None if it is not one."""
    phone = value.strip().removeprefix("+").replace(" ", "")
    return phone if phone.isdigit() and check_phone(phone) is None else None


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


def _text(entry: Mapping[str, Any]) -> str:
    from workers.builtins.forward import describe  # the forwarding built-in's one-liner

    try:
        event = parse_event(entry["envelope"], kind=str(entry["kind"]), event_key="")
    except Exception:
        return ""
    return describe(event) if isinstance(event, InboundMessage) else ""


def summary(entry: Mapping[str, Any], hasher: IdHasher, *, text: bool) -> dict[str, Any]:
    """The one-line view of an entry, as ``--json`` prints it (no envelope, ids hashed)."""
    latency = float(entry["ended_at"]) - float(entry["received_at"])
    out: dict[str, Any] = {
        "id": entry["id"],
        "event_key": hasher.scrub(entry.get("event_key")),
        "kind": entry.get("kind"),
        "contact": entry.get("contact"),
        "received_at": entry["received_at"],
        "outcome": entry.get("outcome"),
        "reason": hasher.scrub(entry.get("reason")),
        "attempt": entry.get("attempt"),
        "latency_ms": round(latency * 1000, 1),
        "handlers": [{k: hasher.scrub(v) for k, v in h.items()} for h in entry["handlers"]],
        "replay": entry.get("replay"),
    }
    if text:
        out["text"] = _text(entry)
    return out


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _line(view: Mapping[str, Any]) -> str:
    outcome = str(view["outcome"])
    handlers = " ".join(
        click.style(
            f"{h['name']}{_HANDLER_MARKS.get(h['outcome'], '?')}",
            fg=_COLOURS.get(h["outcome"]),
        )
        for h in view["handlers"]
    )
    latency = view["latency_ms"]
    took = f"{latency / 1000:.1f}s" if latency >= 1000 else f"{latency:.0f}ms"
    parts = [
        _clock(view["received_at"]),
        f"{view['kind']:<7}",
        f"{view['contact'] or '-':<13}",
        click.style(f"{outcome:<8}", fg=_COLOURS.get(outcome), bold=outcome == "failed"),
        f"{took:>7}",
        handlers or click.style("(no handler)", dim=True),
        click.style(str(view["event_key"]), dim=True),
    ]
    if view.get("replay"):
        parts.append(click.style(f"replay:{view['replay'].get('scope')}", fg="magenta"))
    if view.get("text"):
        parts.append(repr(view["text"][:60]))
    return "  ".join(parts)


def _wanted(
    entry: Mapping[str, Any], kinds: Iterable[str], token: str | None, handlers: Iterable[str]
) -> bool:
    kinds, handlers = list(kinds), list(handlers)
    if kinds and entry.get("kind") not in kinds:
        return False
    if token and entry.get("contact_token") != token:
        return False
    if handlers:
        names = [str(h.get("name")) for h in entry.get("handlers", [])]
        if not any(n == h or n.startswith(h + ":") for n in names for h in handlers):
            return False
    return True


def _emit(entry: Mapping[str, Any], hasher: IdHasher, *, as_json: bool, text: bool) -> None:
    view = summary(entry, hasher, text=text)
    click.echo(orjson.dumps(view).decode() if as_json else _line(view))


@click.group()
def events() -> None:
    """The event archive: live events, and one event's or contact's journey."""


@events.command()
@click.option("--kind", "kinds", multiple=True, help="Only this kind (message, status, …).")
@click.option("--contact", help="Only this contact's events (PHONE).")
@click.option("--handler", "handlers", multiple=True, help="Only events this handler ran on.")
@click.option("--text", is_flag=True, help="Show a preview of each message's text.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--last", default=0, show_default=True, help="Print the last N events first.")
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
            if _wanted(entry, kinds, token, handlers):
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
                if not _wanted(entry, kinds, token, handlers):
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


def _journey(entry: Mapping[str, Any], hasher: IdHasher) -> None:
    view = summary(entry, hasher, text=True)
    arrived = datetime.fromtimestamp(entry["received_at"], UTC).isoformat(timespec="milliseconds")
    click.echo(f"event     {view['event_key']}  (job {entry['id']}, queue {entry['queue']})")
    click.echo(
        f"kind      {entry['kind']}" + (f" from {entry['contact']}" if entry["contact"] else "")
    )
    if view.get("text"):
        click.echo(f"text      {view['text']!r}")
    click.echo(f"arrived   {arrived}")
    outcome = click.style(str(entry["outcome"]), fg=_COLOURS.get(str(entry["outcome"])), bold=True)
    click.echo(
        f"outcome   {outcome} at attempt {entry['attempt']}, "
        f"{view['latency_ms']:.0f} ms after arrival"
        + (f": {view['reason']}" if view["reason"] else "")
    )
    if entry.get("replay"):
        click.echo(
            f"replay    of job {entry['replay'].get('of')} (scope {entry['replay'].get('scope')})"
        )
    click.echo("handlers" + ("" if entry["handlers"] else "  none matched"))
    for h in view["handlers"]:
        state = click.style(f"{h['outcome']:<8}", fg=_COLOURS.get(h["outcome"]))
        extra = f"{h['ms']} ms" if "ms" in h else ""
        if h.get("reason"):
            extra += f"  {h['reason']}"
        click.echo(f"  {h['name']:<32} {state} {extra}")
    click.echo("calls" + ("" if entry["calls"] else "     none recorded"))
    for call in entry["calls"]:
        result = (
            orjson.dumps(hasher.scrub(call.get("result"))).decode() if call.get("result") else ""
        )
        click.echo(f"  {call['handler']:<32} {call['step']:<20} {call['state']:<7} {result}")


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
                click.echo(_line(summary(entry, hasher, text=False)))
        return
    ident = ident.strip()
    entries = list(
        load_entries(connection, keys, _find(connection, keys, settings.queue_prefix, ident))
    )
    if not entries and "wamid~" in ident:
        entries = _scan_tokens(connection, keys, hasher, ident.split("wamid~", 1)[1][:16])
    if not entries:
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
        _journey(entry, hasher)
