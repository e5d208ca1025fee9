"""``wabahooks trigger``: send realistic, signed webhook events to a receiver (like stripe-cli's).

Two ways to send:

- **direct**: sign the envelope here (``js_stringify`` bytes, hex HMAC-SHA256) and POST it to
  ``--url`` (default ``http://127.0.0.1:8000/webhook``) with ``--secret`` (default
  ``WABA_WEBHOOK_SECRET``, else the dev secret in ``.wabahooks/dev-secret``);
- **via the simulator** (``--via-sim URL``, the default while ``wabahooks dev`` runs): ask the
  portal simulator's control API to produce the event, so that it knows the message and
  handlers' mark-read and replies work. The simulator signs and delivers it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO

import click

from service.cli.common import fail
from service.cli.triggersend import (
    Simulator,
    resolve_target,
    send_direct,
    sim_only_once,
    target_options,
)
from service.samples import (
    MESSAGE_TYPES,
    STATUSES,
    message_content,
    message_envelope,
    new_message_id,
    status_envelope,
    test_envelope,
)
from service.samples import out_of_order as shuffled

__all__ = ["trigger"]


@click.group()
def trigger() -> None:
    """Send realistic signed webhook events (message, status, test) to a receiver.

    While `wabahooks dev` runs in this directory, events go through its portal
    simulator, so that handlers can mark them read and reply; elsewhere (or with
    --direct, --url, --secret) they are signed here and POSTed to --url. The
    simulator does not know a message signed here: a handler's mark-read or
    reply to it fails at the simulator with 404.
    """


@trigger.command("message")
@click.option(
    "--type",
    "kind",
    type=click.Choice(MESSAGE_TYPES),
    default="text",
    show_default=True,
    help="The message type.",
)
@click.option(
    "--text",
    help="A text's body, a media caption (a document's file name), a button's or an "
    "interactive reply's title, a location's name, a reaction's emoji.",
)
@click.option(
    "--from",
    "sender",
    default="919876543210",
    show_default=True,
    help="The contact's number (digits with country code).",
)
@click.option("--name", default="John Doe", show_default=True, help="The contact's name.")
@click.option(
    "--payload", help="A button's payload, an interactive reply's id [default: from its text]."
)
@click.option(
    "--reply-to",
    metavar="WAMID",
    help="The message this one answers (context.id), or a reaction reacts to.",
)
@click.option(
    "--list", "list_reply", is_flag=True, help="--type interactive: a list reply, not a button."
)
@click.option(
    "--content-file",
    type=click.File("rb"),
    help="The type's object as JSON ('-': stdin), e.g. a captured document message's, "
    "instead of one made from --text and --payload.",
)
@target_options
def message(
    kind: str,
    text: str | None,
    sender: str,
    name: str,
    payload: str | None,
    reply_to: str | None,
    list_reply: bool,
    content_file: BinaryIO | None,
    **target: Any,
) -> None:
    """An inbound message from a contact, of any type the handlers' model reads."""
    content: Any = _content_file(content_file) if content_file is not None else None
    if content is None:
        content = message_content(kind, text, payload, reply_to=reply_to, list_reply=list_reply)
    where = resolve_target(target["url"], target["secret"], target["via_sim"], target["direct"])
    if where.sim_url is None:
        envelope = message_envelope(
            sender=sender, name=name, kind=kind, reply_to=reply_to, content=content
        )
        sys.exit(0 if send_direct(where, [envelope], target["duplicate"]) else 1)
    sim_only_once(target["duplicate"])
    body = {
        "from": sender,
        "name": name,
        "type": kind,
        "content": content["body"] if kind == "text" else content,
    }
    if reply_to and kind != "reaction":  # a reaction names its message in its object
        body["context"] = reply_to
    with Simulator(where) as sim:
        since = sim.deliveries_count()
        answer = sim.call("POST", "/sim/inbound", json=body)
        click.echo(f"simulator: {sender} wrote message {answer['messageId']} ({kind})")
        ok = sim.report(since)
    click.echo(f"  replies and mark-reads: GET {where.sim_url}/sim/history?phone={sender}")
    sys.exit(0 if ok else 1)


def _content_file(file: BinaryIO) -> dict[str, Any]:
    try:
        content = json.loads(file.read())
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--content-file") from None
    if not isinstance(content, dict):
        raise click.BadParameter(
            "must hold a JSON object (the message type's, e.g. "
            '{"id": "…", "mime_type": "application/pdf", "filename": "bill.pdf"})',
            param_hint="--content-file",
        )
    return content


@trigger.command("status")
@click.option(
    "--message-id",
    metavar="WAMID",
    help="The outbound message [default: new; via the simulator: its latest send].",
)
@click.option(
    "--sequence",
    default="sent,delivered,read",
    show_default=True,
    help="Comma-separated statuses: sent, delivered, read, failed.",
)
@click.option(
    "--to", "recipient", default="919876543210", show_default=True, help="The recipient's number."
)
@click.option("--error-code", type=int, help="A failed status's error code [default: 131026].")
@click.option("--error-title", help="A failed status's error title.")
@click.option("--out-of-order", is_flag=True, help="Shuffle the sequence.")
@target_options
def status(
    message_id: str | None,
    sequence: str,
    recipient: str,
    error_code: int | None,
    error_title: str | None,
    out_of_order: bool,
    **target: Any,
) -> None:
    """Status updates (sent, delivered, read, failed) of an outbound message."""
    statuses = [s.strip() for s in sequence.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown or not statuses:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: use {', '.join(STATUSES)}, comma-separated",
            param_hint="--sequence",
        )
    if out_of_order:
        statuses = shuffled(statuses)
    errors = None
    if error_code is not None or error_title:
        title = error_title or "Message undeliverable"
        errors = [{"code": error_code or 131026, "title": title, "message": title}]
    where = resolve_target(target["url"], target["secret"], target["via_sim"], target["direct"])
    if where.sim_url is None:
        mid = message_id or new_message_id(recipient)
        envelopes = [status_envelope(mid, s, recipient=recipient, errors=errors) for s in statuses]
        sys.exit(0 if send_direct(where, envelopes, target["duplicate"]) else 1)
    sim_only_once(target["duplicate"])
    with Simulator(where) as sim:
        if message_id is None:
            sent = sim.call("GET", "/sim/history")["sent"]
            if not sent:
                fail(
                    "the simulator has sent nothing yet: trigger a message first (a handler's "
                    "reply is an outbound message), or pass --message-id",
                    1,
                )
            message_id = str(sent[-1]["messageId"])
            click.echo(
                f"simulator: the latest message sent, {message_id} (to {sent[-1]['to']}); "
                "--message-id picks another"
            )
        since = sim.deliveries_count()
        for value in statuses:
            body: dict[str, Any] = {"messageId": message_id, "status": value}
            if value == "failed" and errors is not None:
                body["errors"] = errors
            sim.call("POST", "/sim/status", json=body)
            click.echo(f"simulator: status {value} of {message_id}")
        ok = sim.report(since)
    sys.exit(0 if ok else 1)


@trigger.command("test")
@target_options
def test(**target: Any) -> None:
    """The portal's test event (what `wabahooks webhook test` makes the portal send)."""
    where = resolve_target(target["url"], target["secret"], target["via_sim"], target["direct"])
    if where.sim_url is None:
        sys.exit(0 if send_direct(where, [test_envelope()], target["duplicate"]) else 1)
    sim_only_once(target["duplicate"])
    with Simulator(where) as sim:
        headers = {"Authorization": f"Bearer {where.api_key}"}
        answer = sim.call("POST", "/api/v1/webhook/test", headers=headers)
        data = answer.get("data") or {}
        if answer.get("success"):
            click.echo(
                f"simulator: test event delivered to {data.get('webhookUrl')} → "
                f"{data.get('statusCode')} {data.get('responseBody', '')}"
            )
            return
        fail(f"the simulator's test delivery failed: {answer.get('error')}", 1)
