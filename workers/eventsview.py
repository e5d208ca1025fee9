"""How the archive's entries are shown: one line (``events tail``), a journey (``events show``).

Message ids are printed as the logs print them (``wamid~`` tokens, ``service.logs``), so a
line can be grepped for in the logs; contacts are masked; colour is click's, which strips it
when the output is not a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from service.logs import IdHasher
from service.portal.validation import check_phone
from service.typedevents import InboundMessage, parse_event
from workers.handlerdata import handler_label

__all__ = ["journey", "line", "phone_argument", "summary", "wanted"]

COLOURS = {"done": "green", "failed": "red", "retrying": "yellow", "stop": "cyan"}
_HANDLER_MARKS = {"done": "✓", "stop": "■", "skipped": "↷", "failed": "✗"}


def phone_argument(value: str) -> str | None:
    """``value`` as a contact's number (digits with country code), or None if it is not one."""
    phone = value.strip().removeprefix("+").replace(" ", "")
    return phone if phone.isdigit() and check_phone(phone) is None else None


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
        "handlers": [
            {k: hasher.scrub(handler_label(v) if k == "name" else v) for k, v in h.items()}
            for h in entry["handlers"]
        ],
        "replay": entry.get("replay"),
    }
    if text:
        out["text"] = _text(entry)
    return out


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def line(view: Mapping[str, Any]) -> str:
    outcome = str(view["outcome"])
    handlers = " ".join(
        click.style(
            f"{h['name']}{_HANDLER_MARKS.get(h['outcome'], '?')}",
            fg=COLOURS.get(h["outcome"]),
        )
        for h in view["handlers"]
    )
    latency = view["latency_ms"]
    took = f"{latency / 1000:.1f}s" if latency >= 1000 else f"{latency:.0f}ms"
    parts = [
        _clock(view["received_at"]),
        f"{view['kind']:<7}",
        f"{view['contact'] or '-':<13}",
        click.style(f"{outcome:<8}", fg=COLOURS.get(outcome), bold=outcome == "failed"),
        f"{took:>7}",
        handlers or click.style("(no handler)", dim=True),
        click.style(str(view["event_key"]), dim=True),
    ]
    if view.get("replay"):
        parts.append(click.style(f"replay:{view['replay'].get('scope')}", fg="magenta"))
    if view.get("text"):
        parts.append(repr(view["text"][:60]))
    return "  ".join(parts)


def wanted(
    entry: Mapping[str, Any], kinds: Iterable[str], token: str | None, handlers: Iterable[str]
) -> bool:
    kinds, handlers = list(kinds), list(handlers)
    if kinds and entry.get("kind") not in kinds:
        return False
    if token and entry.get("contact_token") != token:
        return False
    if handlers:
        names = [str(h.get("name")) for h in entry.get("handlers", [])]
        names += [handler_label(n) for n in names]  # as logs show them, or as recorded
        if not any(n == h or n.startswith(h + ":") for n in names for h in handlers):
            return False
    return True


def journey(entry: Mapping[str, Any], hasher: IdHasher) -> None:
    view = summary(entry, hasher, text=True)
    arrived = datetime.fromtimestamp(entry["received_at"], UTC).isoformat(timespec="milliseconds")
    click.echo(f"event     {view['event_key']}  (job {entry['id']}, queue {entry['queue']})")
    click.echo(
        f"kind      {entry['kind']}" + (f" from {entry['contact']}" if entry["contact"] else "")
    )
    if view.get("text"):
        click.echo(f"text      {view['text']!r}")
    click.echo(f"arrived   {arrived}")
    outcome = click.style(str(entry["outcome"]), fg=COLOURS.get(str(entry["outcome"])), bold=True)
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
        state = click.style(f"{h['outcome']:<8}", fg=COLOURS.get(h["outcome"]))
        extra = f"{h['ms']} ms" if "ms" in h else ""
        if h.get("reason"):
            extra += f"  {h['reason']}"
        click.echo(f"  {h['name']:<32} {state} {extra}")
    click.echo("calls" + ("" if entry["calls"] else "     none recorded"))
    for call in entry["calls"]:
        result = (
            orjson.dumps(hasher.scrub(call.get("result"))).decode() if call.get("result") else ""
        )
        handler = handler_label(call["handler"])
        click.echo(f"  {handler:<32} {call['step']:<20} {call['state']:<7} {result}")
