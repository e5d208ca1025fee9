"""The ``wabahooks`` command line.

Each subcommand reads its settings from the environment (see the README's
"Configuration") and reports a configuration problem in one line, naming the
variable, with exit status 2.

Installed packages add subcommands through the entry-point group
``wabahooks.cli`` (each entry point names a click command; its name is the
subcommand's). The queue side (``workers``) adds ``worker`` and ``failed`` that
way, so this module never imports it. Plugins load when their command is used
(or help is shown); a built-in command keeps its name.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points
from typing import BinaryIO

import click

from service.cli.admin import status
from service.cli.check import check
from service.cli.common import fail, safe_url, settings_or_exit
from service.cli.forget import forget
from service.cli.portal_sim import portal_sim
from service.cli.trigger import trigger
from service.cli.webhook import webhook
from service.settings import ConfigError, Settings

__all__ = ["PLUGIN_GROUP", "main"]

#: The entry-point group other packages add ``wabahooks`` subcommands through.
PLUGIN_GROUP = "wabahooks.cli"


def load_settings() -> Settings:
    """Return the settings, or exit with the configuration error on one line."""
    return settings_or_exit(redis_url=False)


class _PluginGroup(click.Group):
    """A group that also offers the commands of the ``wabahooks.cli`` entry points."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {
            ep.name: ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in self.commands
        }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in (plugins := self._plugins()):
            loaded = plugins[cmd_name].load()
            if not isinstance(loaded, click.Command):
                raise click.ClickException(
                    f"entry point {cmd_name!r} in {PLUGIN_GROUP} is not a click command: "
                    f"{plugins[cmd_name].value}"
                )
            command = loaded
        return command


@click.group(cls=_PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from service.tracingsetup import configure_tracing

    settings = load_settings()
    try:
        settings.require_secrets()
        url = settings.require_redis_url()
    except ConfigError as exc:
        fail(str(exc))
    refuse_eviction(url, settings.allow_eviction)
    configure_logging(settings.log_format, settings.log_level)
    try:
        configure_tracing("wabahooks-receiver")  # off unless OTEL_* ask (README "Traces")
    except ConfigError as exc:
        fail(str(exc))
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,  # the receiver logs one structured line per request itself
        log_config=None,  # keep our logging configuration
        timeout_graceful_shutdown=10,
        # Bounds memory with the body limit and timeout (README "Limits"); more get 503.
        limit_concurrency=settings.max_connections,
    )


def refuse_eviction(url: str, allow_eviction: bool) -> None:
    """Exit with one line if Redis at ``url`` can evict our keys (``service.redisguard``).

    An unreachable Redis is not a reason not to start (it may start after us: the receiver
    answers 503 meanwhile), but the policy then goes unchecked, which is said."""
    import redis

    from service.redisguard import eviction_problem

    connection = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        problem = eviction_problem(connection, allow_eviction=allow_eviction)
    except redis.RedisError as exc:
        click.echo(
            f"wabahooks: warning: cannot reach Redis at {safe_url(url)} ({exc}): starting "
            "without checking its maxmemory-policy; run `wabahooks check` once it is up",
            err=True,
        )
        return
    finally:
        connection.close()
    if problem is not None:
        fail(problem)


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--secret",
    help="Secret to sign with [default: the first of WABA_WEBHOOK_SECRET, else the "
    "development secret in .wabahooks/dev-secret, as `trigger`].",
)
def sign(file: BinaryIO, secret: str | None) -> None:
    """Print the X-Webhook-Signature for FILE's exact bytes ('-' reads stdin)."""
    from service.cli.triggersend import webhook_secret
    from service.signature import sign as hmac_sign

    click.echo(hmac_sign(file.read(), webhook_secret(secret)))


@main.command("log-id")
@click.argument("message_id")
def log_id(message_id: str) -> None:
    """Print how MESSAGE_ID (wamid.…) appears in the logs, to grep for it.

    Uses the key the logs use: WABAHOOKS_LOG_KEY, else the first WABA_WEBHOOK_SECRET.
    """
    from service.logs import IdHasher, id_key

    key = id_key()
    if key is None:
        fail(
            "set WABAHOOKS_LOG_KEY (or WABA_WEBHOOK_SECRET) as the processes "
            "that wrote the logs had it"
        )
    click.echo(IdHasher(key).scrub(message_id))


@main.command()
@click.option("--port", default=8000, show_default=True, type=int, help="Receiver port.")
@click.option(
    "--sim-port",
    default=8090,
    show_default=True,
    type=int,
    help="Portal simulator port (another free one if taken).",
)
@click.option(
    "--no-sim", is_flag=True, help="No simulator: workers use WABA_API_URL/WABA_API_KEY as set."
)
@click.option(
    "--app-dir",
    default=None,
    metavar="DIR",
    help="Import handler modules from DIR too (WABAHOOKS_APP_DIR), as `wabahooks worker`.",
)
def dev(port: int, sim_port: int, no_sim: bool, app_dir: str | None) -> None:
    """Run everything locally: Valkey, portal simulator, receiver, workers; Ctrl-C stops all.

    Valkey is embedded (data in .wabahooks/) unless REDIS_URL is set. The workers restart
    when your handler code or TOML changes.
    """
    from service.cli.dev import run_dev

    sys.exit(run_dev(port=port, sim_port=sim_port, simulator=not no_sim, app_dir=app_dir))


main.add_command(portal_sim)
main.add_command(trigger)
main.add_command(status)
main.add_command(check)
main.add_command(webhook)
main.add_command(forget)
