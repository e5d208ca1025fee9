"""The ``wabahooks`` command line.

Each subcommand reads its settings from the environment (see the README's
"Configuration") and reports a configuration problem in one line, naming the
variable, with exit status 2.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from service.portal.simcli import portal_sim
from service.settings import ConfigError, Settings

__all__ = ["main"]


def load_settings() -> Settings:
    """Return the settings, or exit with the configuration error on one line."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wabahooks")
def main() -> None:
    """Receive WABA Portal webhooks, queue them durably, and act on them."""


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the webhook receiver (needs REDIS_URL and WABA_WEBHOOK_SECRET)."""
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging

    settings = load_settings()
    try:
        settings.require_redis_url()
    except ConfigError as exc:
        click.echo(f"wabahooks: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,  # the receiver logs one structured line per request itself
        log_config=None,  # keep our logging configuration
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--secret",
    envvar="WABA_WEBHOOK_SECRET",
    required=True,
    help="Secret to sign with (default: the first of WABA_WEBHOOK_SECRET).",
)
def sign(file: BinaryIO, secret: str) -> None:
    """Print the X-Webhook-Signature for FILE's exact bytes ('-' reads stdin)."""
    from service.signature import sign as hmac_sign

    click.echo(hmac_sign(file.read(), secret.split(",")[0].strip()))


@main.command()
@click.option("--port", default=8000, show_default=True, type=int, help="Receiver port.")
def dev(port: int) -> None:
    """Run everything locally: embedded Valkey (unless REDIS_URL is set) and the receiver."""
    from service.dev import run_dev

    sys.exit(run_dev(port=port))


main.add_command(portal_sim)
