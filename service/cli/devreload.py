"""``wabahooks dev``'s workers: checked before they start, restarted when the handler code or
the TOML changes (``service.cli.devwatch``), and only when the new code loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import click

from service.cli.devbanner import WORKER_QUEUES
from service.cli.devprocs import Children
from service.cli.devwatch import Watcher

__all__ = ["Workers", "handler_info"]

#: Seconds the handler check may take (it imports the user's modules).
CHECK_TIMEOUT = 60


def handler_info(env: dict[str, str]) -> dict[str, Any]:
    """Check the workers' handlers in a fresh process, as the workers will load them; return
    the check's level and line, and the paths to watch (``workers.handlercheck``)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "workers.handlercheck"],
            env=env,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        hung = f"importing the handlers took over {CHECK_TIMEOUT} s (a module that blocks?)"
        return {"level": "fail", "detail": hung, "packages": [], "files": []}
    try:
        info: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        problem = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        return {"level": "fail", "detail": problem[-1], "packages": [], "files": []}
    return info


class Workers:
    """One worker per queue, restarted when the handler code or the TOML changes."""

    def __init__(self, children: Children, env: dict[str, str], info: dict[str, Any]) -> None:
        self.children = children
        self.env = env
        self.info = info
        self.watcher = Watcher(info["packages"], info["files"])

    def start(self) -> None:
        for queue in WORKER_QUEUES:
            self.children.start(f"worker {queue}", ["worker", "--queue", queue])

    def reload_if_changed(self) -> None:
        changed = self.watcher.take()
        if not changed:
            return
        names = ", ".join(sorted(os.path.relpath(p) for p in changed))
        info = handler_info(self.env)
        if info["level"] == "fail":
            click.echo(f"wabahooks dev: {names} changed, but: {info['detail']}", err=True)
            click.echo(
                "wabahooks dev: the workers keep the code they run; fix it and save", err=True
            )
            return
        click.echo(f"wabahooks dev: {names} changed: restarting the workers", err=True)
        self.children.stop([f"worker {queue}" for queue in WORKER_QUEUES])
        self.start()
        if info["packages"] != self.info["packages"] or info["files"] != self.info["files"]:
            self.watcher.close()
            self.watcher = Watcher(info["packages"], info["files"])
        self.info = info
        click.echo(f"wabahooks dev: workers restarted; handlers: {info['detail']}", err=True)
