"""What ``wabahooks dev`` prints once everything answers, and ``.wabahooks/dev.env``."""

from __future__ import annotations

import shlex
from pathlib import Path

from service.cli.devstate import STATE_DIR
from service.jobs import QUEUE_NAMES

__all__ = ["WORKER_QUEUES", "banner", "write_env_file"]

#: One worker process per queue (a worker serves exactly one queue).
WORKER_QUEUES = tuple(dict.fromkeys(QUEUE_NAMES.values()))


def write_env_file(env: dict[str, str]) -> Path:
    """Write ``.wabahooks/dev.env``: ``. .wabahooks/dev.env`` gives a shell the same settings."""
    path = STATE_DIR / "dev.env"
    names = ("REDIS_URL", "WABA_WEBHOOK_SECRET", "WABA_API_URL", "WABA_API_KEY")
    lines = [f"export {name}={shlex.quote(env[name])}" for name in names if env.get(name)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def banner(
    env: dict[str, str],
    webhook: str,
    sim_url: str | None,
    handlers: str,
    dev_config: bool,
    embedded: bool,
) -> str:
    """The ready banner: where everything listens (the ports actually used), what the
    workers run (as their check reported it), and what to try."""
    if dev_config:
        handlers += "  (the development configuration, .wabahooks/dev.toml)"
    lines = [
        "",
        "wabahooks dev is ready",
        f"  receiver   {webhook}",
        f"  workers    {', '.join(WORKER_QUEUES)}  (one process per queue; restarted when "
        "your handler code or TOML changes)",
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
    lines += ["", "Try it (in another terminal, in this directory):"]
    tries = [
        ('.venv/bin/wabahooks trigger message --text "hi"', "a contact writes; watch the logs")
    ]
    if sim_url:
        sent = "the mark-read and the reply" if dev_config else "what your handlers sent"
        tries += [
            (f"curl -s {sim_url}/sim/history", sent),
            (".venv/bin/wabahooks trigger status", "statuses of the latest message sent"),
        ]
    tries.append((". .wabahooks/dev.env && .venv/bin/wabahooks status", "queues and workers"))
    tries.append(
        (". .wabahooks/dev.env && .venv/bin/wabahooks events tail", "each event, live (archive)")
    )
    width = max(len(command) for command, _ in tries)
    lines += [f"  {command.ljust(width)}  # {what}" for command, what in tries]
    lines += ["", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)
