"""``wabahooks dev``'s child processes: started so that they die with it, recorded so that a
run it could not clean up (``kill -9``) is found and cleaned by the next start.

**Dying with the parent.** On Linux each child asks the kernel, between ``fork`` and
``exec``, for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, through ctypes:
no library wraps this one call), and exits at once if the parent is already gone. The
workers then stop warm as on Ctrl-C. Elsewhere the run file below is the only safety net.

**The run file** ``.wabahooks/dev.run``: the PIDs of ``dev`` and its children, each with
its kernel start time (``/proc/PID/stat`` field 22), so that a PID reused by an unrelated
process since is never taken for ours. A start that finds the file with processes still
matching it names them, stops them (SIGTERM, then SIGKILL) and goes on.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Children",
    "RunFile",
    "Stale",
    "die_with_parent",
    "process_started",
]

_PR_SET_PDEATHSIG = 1
#: Seconds a child gets to finish its current request or job after SIGTERM.
STOP_GRACE = 15


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Resolved here, in the parent: the child between fork and exec only calls it.
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


_PRCTL = _prctl()


def die_with_parent() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child get SIGTERM when this process dies."""
    if _PRCTL is None:
        return None
    parent = os.getpid()
    prctl = _PRCTL

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


def process_started(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":  # a zombie: exited
        return None
    return int(fields[19])  # field 22 of stat; fields[0] is field 3


@dataclass(frozen=True)
class Stale:
    """A process of an earlier run that still runs: its role, PID and start time."""

    name: str
    pid: int
    started: int


class RunFile:
    """``.wabahooks/dev.run``: which processes this run started (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[dict[str, Any]] = []

    def add(self, name: str, pid: int) -> None:
        started = process_started(pid)
        if started is not None:
            self._entries.append({"name": name, "pid": pid, "started": started})
            self._write()

    def _write(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._entries, indent=1) + "\n", encoding="utf-8")
        temporary.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def stale(self) -> list[Stale]:
        """The processes the file names that still run as the same process (PID and start)."""
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
            recorded = [Stale(str(e["name"]), int(e["pid"]), int(e["started"])) for e in entries]
        except (OSError, ValueError, TypeError, KeyError):
            return []
        return [s for s in recorded if s.pid != os.getpid() and process_started(s.pid) == s.started]

    def clean(self, stale: list[Stale], grace: float = 10.0) -> None:
        """Stop ``stale`` (SIGTERM; SIGKILL after ``grace`` s), checking identity before each
        signal, then forget the file."""
        self._signal(stale, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._still(stale):
            time.sleep(0.1)
        self._signal(self._still(stale), signal.SIGKILL)
        self.remove()

    @staticmethod
    def _still(stale: list[Stale]) -> list[Stale]:
        return [s for s in stale if process_started(s.pid) == s.started]

    @staticmethod
    def _signal(stale: list[Stale], signum: signal.Signals) -> None:
        for s in RunFile._still(stale):
            try:
                os.kill(s.pid, signum)
            except ProcessLookupError:
                pass


def _relay(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line prefixed with the child's name."""
    prefix = f"{name:<16}| ".encode()
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
        out.flush()
    stream.close()


class Children:
    """The child processes, started in order (dying with us, recorded) and stopped together."""

    def __init__(self, env: dict[str, str], run_file: RunFile) -> None:
        self.env = env
        self.run_file = run_file
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._relays: dict[str, threading.Thread] = {}

    def start(
        self, name: str, args: list[str], *, module: str = "service", first_line: bool = False
    ) -> str:
        """Start ``python -m MODULE ARGS`` (the ``wabahooks`` command by default: service
        never imports workers); return its first line of output if ``first_line``."""
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if not first_line else None,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - one prctl call, resolved before
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode("utf-8", "replace").strip() if first_line else ""
        relay = threading.Thread(target=_relay, args=(name, proc.stdout), daemon=True)
        relay.start()
        self.procs[name] = proc
        self._relays[name] = relay
        self.run_file.add(name, proc.pid)
        return line

    def exited(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, names: list[str] | None = None) -> None:
        """SIGTERM the children (``names``, else all), wait for them within one grace
        period, SIGKILL the rest."""
        chosen = {n: p for n, p in self.procs.items() if names is None or n in names}
        for proc in chosen.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in chosen.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in chosen:
            self._relays.pop(name).join(timeout=2)
            del self.procs[name]
