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
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn, TypeVar

import click
import httpx

from service.cli.common import fail
from service.cli.devstate import dev_secret_file, read_dev_state
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
from service.settings import parse_secrets
from service.signature import js_stringify, sign

__all__ = ["DEFAULT_URL", "trigger"]

DEFAULT_URL = "http://127.0.0.1:8000/webhook"
DEFAULT_SIM_KEY = "sim-key"
_TIMEOUT = 10.0
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Target:
    """Where events go: signed here and POSTed to ``url``, or produced by the simulator."""

    url: str | None = None
    secret: str | None = None
    sim_url: str | None = None
    api_key: str = DEFAULT_SIM_KEY


def webhook_secret(given: str | None) -> str:
    """The secret to sign with: ``given``, else WABA_WEBHOOK_SECRET's first, else the
    development secret ``wabahooks dev`` keeps (``.wabahooks/dev-secret``)."""
    return _secret(given)


def _secret(given: str | None) -> str:
    for value in (given or "", os.environ.get("WABA_WEBHOOK_SECRET", "")):
        if secrets := parse_secrets(value):
            return secrets[0]
    path = dev_secret_file()
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    raise click.UsageError(
        "no webhook secret: pass --secret, set WABA_WEBHOOK_SECRET, "
        "or run from a checkout where `wabahooks dev` has run"
    )


def resolve_target(
    url: str | None, secret: str | None, via_sim: str | None, direct: bool
) -> Target:
    """Return where to send: explicit options first, then a running ``wabahooks dev``."""
    if via_sim and (url or secret or direct):
        raise click.UsageError(
            "--via-sim sends through the simulator: drop --url, --secret and --direct"
        )
    dev = read_dev_state()
    api_key = os.environ.get("WABA_API_KEY", "").strip() or DEFAULT_SIM_KEY
    if via_sim:
        if dev is not None and dev.sim_url == via_sim.rstrip("/") and dev.api_key:
            api_key = dev.api_key
        return Target(sim_url=via_sim.rstrip("/"), api_key=api_key)
    if not (url or secret or direct) and dev is not None and dev.sim_url:
        return Target(sim_url=dev.sim_url, api_key=dev.api_key or api_key)
    if dev is not None and not url:
        return Target(url=dev.webhook_url, secret=secret or dev.secret)
    return Target(url=url or DEFAULT_URL, secret=_secret(secret))


def target_options(func: F) -> F:
    """The options every ``trigger`` subcommand takes."""
    options = [
        click.option("--url", help=f"The receiver's webhook URL [default: {DEFAULT_URL}]."),
        click.option(
            "--secret",
            help="Sign with this secret [default: WABA_WEBHOOK_SECRET or .wabahooks/dev-secret].",
        ),
        click.option(
            "--via-sim",
            metavar="URL",
            help="Have the portal simulator at URL produce and deliver the event "
            "[default while `wabahooks dev` runs].",
        ),
        click.option(
            "--direct", is_flag=True, help="Sign and send here even while `wabahooks dev` runs."
        ),
        click.option(
            "--duplicate",
            default=1,
            show_default=True,
            type=click.IntRange(min=1),
            help="Send each event N times (signed here only).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _describe(envelope: dict[str, Any]) -> str:
    data = envelope.get("data", {})
    if envelope["event"] == "message":
        return f"message {data['messageId']} ({data['type']})"
    if envelope["event"] == "status":
        return f"status {data['status']} of {data['messageId']}"
    return f"test {data['testId']}"


def _fail(message: str) -> NoReturn:
    fail(message, 1)


def _duplicate(response: httpx.Response) -> bool:
    try:
        return bool(response.json().get("duplicate"))
    except (ValueError, AttributeError):
        return False


def send_direct(target: Target, envelopes: list[dict[str, Any]], times: int) -> bool:
    """Sign and POST each envelope ``times`` times; print each answer; return all 2xx."""
    assert target.url is not None and target.secret is not None
    ok = True
    with httpx.Client(timeout=_TIMEOUT) as http:
        for envelope in envelopes:
            body = js_stringify(envelope)
            headers = {
                "Content-Type": "application/json",
                "X-Webhook-Signature": sign(body, target.secret),
            }
            for _ in range(times):
                try:
                    response = http.post(target.url, content=body, headers=headers)
                except httpx.TransportError as exc:
                    _fail(
                        f"nothing answers at {target.url} ({exc}): is `wabahooks dev` "
                        "(or `wabahooks serve`) running? Pass --url otherwise"
                    )
                    return False
                click.echo(
                    f"{_describe(envelope)} → {response.status_code} {response.text.strip()}"
                )
                if _duplicate(response):
                    click.echo(
                        "  a duplicate: the receiver had this event already and queued "
                        "nothing (the handlers run once)"
                    )
                ok = ok and response.is_success
                if response.status_code == 401:
                    click.echo(
                        "  the receiver refused the signature: --secret must be one of its "
                        "WABA_WEBHOOK_SECRET values",
                        err=True,
                    )
    return ok


class Simulator:
    """The simulator's control API (and its portal API, for the test event)."""

    def __init__(self, target: Target) -> None:
        assert target.sim_url is not None
        self.url = target.sim_url
        self.http = httpx.Client(base_url=self.url, timeout=_TIMEOUT + 5)
        self.api_key = target.api_key

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            _fail(f"the simulator at {self.url} does not answer ({exc}): is it running?")
            raise  # unreachable: _fail exits
        if response.status_code >= 400 and not path.startswith("/api/"):
            try:
                error = response.json().get("error", response.text)
            except ValueError:
                error = response.text
            _fail(f"the simulator refused {method} {path}: {response.status_code} {error}")
        return response.json()

    def deliveries_count(self) -> int:
        return len(self.call("GET", "/sim/history")["deliveries"])

    def report(self, since: int) -> bool:
        """Wait for pending deliveries; print those after the first ``since``; return all ok."""
        self.call("POST", "/sim/deliveries/wait", json={"timeout": _TIMEOUT})
        ok = True
        for delivery in self.call("GET", "/sim/history")["deliveries"][since:]:
            codes = [str(a.get("statusCode", a.get("error"))) for a in delivery["attempts"]]
            again = (
                " (a duplicate delivery, the portal's retry: the receiver answers it as a "
                "duplicate and the handlers run once)"
                if delivery.get("duplicate")
                else ""
            )
            click.echo(
                f"  simulator delivered {_describe(delivery['payload'])} to {delivery['url']}"
                f" → {', '.join(codes) or 'nothing yet'}{again}"
            )
            ok = ok and bool(delivery.get("delivered"))
        return ok


def _sim_only_once(times: int) -> None:
    if times > 1:
        raise click.UsageError(
            "--duplicate needs events signed here: add --direct (or --url/--secret); the "
            "simulator delivers duplicates with its chaos setting (PUT /sim/chaos duplicate_rate)"
        )


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
    _sim_only_once(target["duplicate"])
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
    _sim_only_once(target["duplicate"])
    with Simulator(where) as sim:
        if message_id is None:
            sent = sim.call("GET", "/sim/history")["sent"]
            if not sent:
                _fail(
                    "the simulator has sent nothing yet: trigger a message first (a handler's "
                    "reply is an outbound message), or pass --message-id"
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
    _sim_only_once(target["duplicate"])
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
        _fail(f"the simulator's test delivery failed: {answer.get('error')}")
