"""A/B benchmarks against another revision: its tree exported from git, and this script run
in a fresh process on that tree (``bench/tracing_off.py``, ``bench/timers.py``).

Only the parent process imports this module: the child runs on the exported tree, which may
predate it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def export(revision: str, into: Path) -> Path:
    """Extract ``revision`` of this repository (``git archive``) under ``into``; return it."""
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", revision], cwd=ROOT, stdout=out, check=True)
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def run_child(script: str, tree: Path, *args: str) -> Any:
    """Run ``script --child ARGS`` with ``tree`` as its code (no ``OTEL_*``/``WABA*``
    variables); return the JSON its last line of output holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WABA"))}
    env["PYTHONPATH"] = str(tree)
    argv = [sys.executable, str(Path(script).resolve()), "--child", *args]
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the load failed under {tree}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
