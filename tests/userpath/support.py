"""Walking the path as a user does: the installed ``wabahooks`` console script, run in the
user's own project directory (a tmp directory), with a clean environment holding only what
the user would set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The console script `pip install` put next to the interpreter (.venv/bin/wabahooks).
WABAHOOKS = str(Path(sys.executable).parent / "wabahooks")

ORDERS = """\
from workers import Context, InboundMessage, Router

router = Router("orders")


@router.message(contains="order", ignore_case=True, replies=True)
def confirm(event: InboundMessage, ctx: Context) -> None:
    ctx.portal.send_text(event.sender, ctx.config.get("reply", "Order noted"))
"""


def user_env(**extra: str) -> dict[str, str]:
    """A fresh shell's environment: PATH, HOME, LANG, and what the user sets."""
    env = {
        "PATH": f"{Path(WABAHOOKS).parent}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "WABAHOOKS_LOG_KEY": "user-log-key",  # keeps the log-key warning out of the output
    }
    env.update(extra)
    return env


def wabahooks(
    cwd: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``wabahooks ARGS`` in ``cwd`` as the user would, to its end."""
    return subprocess.run(
        [WABAHOOKS, *args],
        cwd=cwd,
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_project(root: Path, **modules: str) -> Path:
    """A user's project: ``myapp/`` with the given modules (name -> source)."""
    package = root / "myapp"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(source)
    return root
