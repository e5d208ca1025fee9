"""What a running ``wabahooks dev`` tells the other commands: ``.wabahooks/dev.json``.

``wabahooks dev`` writes the file once everything answers and removes it when it stops;
``wabahooks trigger`` reads it to find the receiver, the secret and the simulator without
being told. A file left behind by a killed ``dev`` is ignored (its process is gone).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "STATE_DIR",
    "DevState",
    "dev_secret_file",
    "read_dev_state",
    "remove_dev_state",
    "write_dev_state",
]

#: The project-local directory ``wabahooks dev`` keeps its state in.
STATE_DIR = Path(".wabahooks")
_STATE_FILE = "dev.json"


def dev_secret_file(base: Path = STATE_DIR) -> Path:
    """Return where ``wabahooks dev`` keeps its development webhook secret."""
    return base / "dev-secret"


@dataclass(frozen=True)
class DevState:
    """Where the pieces of a running ``wabahooks dev`` listen."""

    pid: int
    webhook_url: str
    secret: str
    redis_url: str
    sim_url: str | None = None
    api_key: str | None = None


def write_dev_state(state: DevState, base: Path = STATE_DIR) -> Path:
    """Write ``state`` (readable by its owner only: it holds the secret); return the path."""
    path = base / _STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours
        return False
    return True


def read_dev_state(base: Path = STATE_DIR) -> DevState | None:
    """Return the state of the ``wabahooks dev`` running from ``base``'s project, if any."""
    try:
        raw = json.loads((base / _STATE_FILE).read_text(encoding="utf-8"))
        state = DevState(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.pid) else None


def remove_dev_state(base: Path = STATE_DIR) -> None:
    """Forget the running ``wabahooks dev`` (at its exit)."""
    (base / _STATE_FILE).unlink(missing_ok=True)
