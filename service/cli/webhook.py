"""``wabahooks webhook get|set|test|delete``: the portal's webhook configuration (spec §4).

Through :class:`~service.portal.PortalClient` with ``WABA_API_URL`` and ``WABA_API_KEY``,
so it works against the real portal and against ``wabahooks portal-sim`` alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from service.cli.common import fail
from service.portal import PortalClient, PortalError, PortalSettings
from service.portal.models import WebhookConfig
from service.settings import ConfigError, parse_secrets

__all__ = ["webhook"]

EVENTS = ("messages", "statuses")


@contextmanager
def _portal() -> Iterator[PortalClient]:
    try:
        settings = PortalSettings.from_env()
    except ConfigError as exc:
        fail(str(exc))
    try:
        with PortalClient(settings) as portal:
            yield portal
    except PortalError as exc:
        fail(str(exc), 1)


def _mask(secret: str | None) -> str:
    if not secret:
        return "(none yet: the first `webhook set` makes one)"
    return secret[:4] + "…" + secret[-4:] if len(secret) > 12 else "****"


def _show(config: WebhookConfig, *, show_secret: bool) -> None:
    state = "enabled" if config.enabled else "disabled"
    click.echo(f"url      {config.webhook_url or '(none)'}")
    click.echo(f"state    {state}")
    click.echo(f"events   {', '.join(config.events) or '(none)'}")
    click.echo(f"number   {config.phone_number or '-'}")
    secret = config.webhook_secret if show_secret else _mask(config.webhook_secret)
    click.echo(f"secret   {secret or '(none yet)'}")


@click.group()
def webhook() -> None:
    """Show or change where the portal delivers webhooks (needs WABA_API_URL, WABA_API_KEY)."""


@webhook.command()
@click.option("--show-secret", is_flag=True, help="Print the whole secret (default: masked).")
def get(show_secret: bool) -> None:
    """Show the portal's webhook configuration."""
    with _portal() as portal:
        _show(portal.webhook(), show_secret=show_secret)


def _events(value: str) -> list[str]:
    events = [e.strip() for e in value.split(",") if e.strip()]
    if not events or any(e not in EVENTS for e in events):
        raise click.BadParameter(f"{value!r}: use messages, statuses or messages,statuses")
    return events


@webhook.command("set")
@click.argument("url")
@click.option(
    "--events",
    default="messages,statuses",
    show_default=True,
    help="Which events to deliver, comma-separated.",
)
@click.option("--disable", is_flag=True, help="Keep the URL but stop deliveries.")
def set_(url: str, events: str, disable: bool) -> None:
    """Point the portal's webhooks at URL (HTTPS) and print the secret it signs with."""
    chosen = _events(events)
    with _portal() as portal:
        config = portal.set_webhook(url, enabled=not disable, events=chosen)
    _show(config, show_secret=True)
    secret = config.webhook_secret
    if not secret:
        return
    current = parse_secrets(os.environ.get("WABA_WEBHOOK_SECRET", ""))
    click.echo("")
    if secret in current:
        click.echo("WABA_WEBHOOK_SECRET already accepts this secret.")
        return
    click.echo("Give the receiver this secret, where it reads its environment:")
    click.echo(f"  WABA_WEBHOOK_SECRET={secret}")
    if current:
        click.echo(
            "Rotating from another secret: accept both while deliveries switch over, then drop "
            f"the old one:\n  WABA_WEBHOOK_SECRET={secret},{current[0]}"
        )


@webhook.command()
def test() -> None:
    """Have the portal send a test event to the configured URL; show the answer."""
    with _portal() as portal:
        result = portal.test_webhook()
    code = result.status_code if result.status_code is not None else "-"
    click.echo(f"url       {result.webhook_url or '-'}")
    click.echo(f"answer    {code} {result.status_text or ''}".rstrip())
    click.echo(f"duration  {result.duration or '-'}")
    click.echo(f"body      {result.response_body or '-'}")
    if result.test_id:
        click.echo(f"test id   {result.test_id}")
    if not result.success:
        click.echo(f"wabahooks: the test delivery failed: {result.error or code}", err=True)
        if result.status_code == 401:
            click.echo(
                "  the receiver refused the signature: its WABA_WEBHOOK_SECRET must include "
                "the portal's secret (`wabahooks webhook get --show-secret`)",
                err=True,
            )
        sys.exit(1)


@webhook.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(yes: bool) -> None:
    """Disable webhooks and clear the portal's configuration."""
    if not yes:
        click.confirm("Stop all webhook deliveries and clear the configuration?", abort=True)
    with _portal() as portal:
        portal.delete_webhook()
    click.echo("Webhooks disabled; the configuration is cleared.")
