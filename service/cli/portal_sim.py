"""``wabahooks portal-sim``: run the WABA Portal simulator (see ``service.sim.app``)."""

from __future__ import annotations

import os

import click
import structlog

from service.cli.common import fail
from service.sim.config import Chaos, Refusal, SimConfig
from service.sim.state import SimState

__all__ = ["portal_sim"]


@click.command("portal-sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option("--api-key", default="sim-key", show_default=True, help="The accepted API key.")
@click.option("--readonly-key", multiple=True, help="A key that may only read (403 otherwise).")
@click.option("--phone-number", default="919000000001", show_default=True)
@click.option("--project-id", default="sim-project", show_default=True)
@click.option(
    "--unverified", is_flag=True, help="The number is not verified: webhook set-up fails."
)
@click.option(
    "--allow-insecure-webhooks",
    is_flag=True,
    help="Development only: accept http://127.0.0.1 and http://localhost webhook URLs.",
)
@click.option("--webhook-url", default="", help="Configure and enable webhooks at start-up.")
@click.option("--webhook-secret", default=None, help="The secret to sign with (else generated).")
@click.option("--no-auto-read", is_flag=True, help="Stop at 'delivered' after each send.")
@click.option("--status-delay", default=1.0, show_default=True, help="Seconds between statuses.")
@click.option("--delivery-attempts", default=5, show_default=True, type=int)
@click.option("--delivery-backoff", default=0.5, show_default=True, help="First retry wait, s.")
@click.option("--duplicate-rate", default=0.0, help="Chaos: share of webhooks delivered twice.")
@click.option("--out-of-order", is_flag=True, help="Chaos: deliver read, delivered, sent.")
@click.option("--rate-limit-rate", default=0.0, help="Chaos: share of API calls answered 429.")
@click.option("--retry-after", default=1.0, show_default=True, help="Chaos: Retry-After of 429s.")
@click.option("--server-error-rate", default=0.0, help="Chaos: share of API calls answered 500.")
@click.option(
    "--error-after-send-rate", default=0.0, help="Chaos: share of sends carried out, answered 500."
)
@click.option("--latency", default=0.0, help="Chaos: seconds added to every API call.")
@click.option(
    "--record-delay",
    default=0.0,
    help="Chaos: seconds a send takes to appear in its conversation's history.",
)
@click.option("--seed", default=None, type=int, help="Seed the chaos for repeatable runs.")
@click.option(
    "--clock-skew",
    default=0.0,
    show_default=True,
    help="Seconds the portal's clock is ahead of ours (negative: behind): timestamps and Date.",
)
def portal_sim(
    host: str,
    port: int,
    api_key: str,
    readonly_key: tuple[str, ...],
    phone_number: str,
    project_id: str,
    unverified: bool,
    allow_insecure_webhooks: bool,
    webhook_url: str,
    webhook_secret: str | None,
    no_auto_read: bool,
    status_delay: float,
    delivery_attempts: int,
    delivery_backoff: float,
    duplicate_rate: float,
    out_of_order: bool,
    rate_limit_rate: float,
    retry_after: float,
    server_error_rate: float,
    error_after_send_rate: float,
    latency: float,
    record_delay: float,
    seed: int | None,
    clock_skew: float,
) -> None:
    """Run a WABA Portal simulator: the documented API, webhooks, chaos, a control API at /sim."""
    import uvicorn

    from service.logs import configure_logging
    from service.sim.app import create_sim_app

    config = SimConfig(
        api_key=api_key,
        readonly_keys=readonly_key,
        phone_number=phone_number,
        project_id=project_id,
        verified=not unverified,
        allow_insecure_webhooks=allow_insecure_webhooks,
        auto_read=not no_auto_read,
        status_delay=status_delay,
        delivery_attempts=delivery_attempts,
        delivery_backoff=delivery_backoff,
        seed=seed,
        clock_skew=clock_skew,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        chaos=Chaos(
            duplicate_rate=duplicate_rate,
            out_of_order=out_of_order,
            rate_limit_rate=rate_limit_rate,
            retry_after=retry_after,
            server_error_rate=server_error_rate,
            error_after_send_rate=error_after_send_rate,
            latency=latency,
            record_delay=record_delay,
        ),
    )
    try:
        SimState(config)  # refuses a bad --webhook-url before the server starts
    except Refusal as exc:
        fail(f"--webhook-url: {exc.error}")
    app = create_sim_app(config)
    base = f"http://{host}:{port}"
    click.echo(f"portal-sim: WABA_API_URL={base}/api/v1 WABA_API_KEY={api_key}", err=True)
    if webhook_url:
        click.echo(f"portal-sim: delivering to {webhook_url}", err=True)
        click.echo(f"portal-sim: WABA_WEBHOOK_SECRET={app.state.sim.webhook_secret}", err=True)
    click.echo(f"portal-sim: control API at {base}/sim (see `pydoc service.sim.app`)", err=True)
    # Its request lines in the same structlog format as the receiver's and the workers'.
    configure_logging(*_log_settings())
    structlog.get_logger("wabahooks.sim").info(
        "sim.started", api_url=f"{base}/api/v1", control_url=f"{base}/sim", webhook_url=webhook_url
    )
    # The simulator sends its own Date header, on its (possibly skewed) clock.
    uvicorn.run(
        app, host=host, port=port, ws="none", date_header=False, log_config=None, access_log=True
    )


def _log_settings() -> tuple[str, str]:
    """WABAHOOKS_LOG_FORMAT and WABAHOOKS_LOG_LEVEL as the other commands read them (a
    value they would refuse is refused here too, in one line)."""
    log_format = os.environ.get("WABAHOOKS_LOG_FORMAT", "auto").strip().lower() or "auto"
    log_level = os.environ.get("WABAHOOKS_LOG_LEVEL", "info").strip().lower() or "info"
    if log_format not in ("auto", "json", "console"):
        fail("WABAHOOKS_LOG_FORMAT must be auto, json or console")
    if log_level not in ("debug", "info", "warning", "error"):
        fail("WABAHOOKS_LOG_LEVEL must be debug, info, warning or error")
    return log_format, log_level
