"""Where ``wabahooks trigger``'s events go, and how: signed here and POSTed to a receiver
(:func:`send_direct`), or produced by the portal simulator (:class:`Simulator`), which signs
and delivers them itself; the ``--url``/``--secret``/``--via-sim`` options that choose."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
import httpx

from service.cli.common import fail
from service.cli.devstate import dev_secret_file, read_dev_state
from service.settings import parse_secrets
from service.signature import js_stringify, sign

__all__ = [
    "DEFAULT_SIM_KEY",
    "DEFAULT_URL",
    "Simulator",
    "Target",
    "resolve_target",
    "send_direct",
    "sim_only_once",
    "target_options",
    "webhook_secret",
]

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


#: What the receiver's answer to a delivery means, for the simulator's report.
_MEANING = {
    "200": "received: the workers run the handlers; `wabahooks events tail` shows the outcome",
    "401": "the receiver refused the signature: is its WABA_WEBHOOK_SECRET the simulator's?",
    "503": "the receiver could not store it (Redis?): the portal retries",
}


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
            last = codes[-1] if codes else ""
            meaning = f" ({_MEANING[last]})" if last in _MEANING and not again else ""
            click.echo(
                f"  simulator delivered {_describe(delivery['payload'])} to {delivery['url']}"
                f" → {', '.join(codes) or 'nothing yet'}{meaning}{again}"
            )
            ok = ok and bool(delivery.get("delivered"))
        return ok


def sim_only_once(times: int) -> None:
    if times > 1:
        raise click.UsageError(
            "--duplicate needs events signed here: add --direct (or --url/--secret); the "
            "simulator delivers duplicates with its chaos setting (PUT /sim/chaos duplicate_rate)"
        )
