"""Issue 14, item 7: `wabahooks dev` with the user's own handlers: the banner says what runs,
a change to the code or the TOML restarts the workers, `kill -9` leaves nothing behind, and
a stale run is found and cleaned by the next start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from service.cli.devprocs import process_started
from tests.support.workers import wait_for
from tests.userpath.support import ORDERS, WABAHOOKS, user_env, wabahooks, write_project

PHONE = "919800000042"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dev:
    """`wabahooks dev` started from the console script in the user's project."""

    def __init__(self, project: Path, log: IO[bytes], *args: str) -> None:
        self.project = project
        self.log = log
        ports = ["--port", str(free_port())]
        if "--sim-port" not in args:
            ports += ["--sim-port", str(free_port())]
        self.proc = subprocess.Popen(
            [WABAHOOKS, "dev", *ports, *args],
            cwd=project,
            env=user_env(WABAHOOKS_HANDLERS="myapp.orders", WABAHOOKS_LOG_FORMAT="json"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def state(self) -> dict[str, Any]:
        """What this dev wrote once ready (a killed run's file is not this one's)."""
        path = self.project / ".wabahooks" / "dev.json"
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return state if state.get("pid") == self.proc.pid else {}

    def run_file(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = json.loads(
            (self.project / ".wabahooks" / "dev.run").read_text()
        )
        return runs

    def ready(self) -> dict[str, Any]:
        wait_for(
            lambda: self.state() or self.proc.poll() is not None, "dev to be ready", timeout=120
        )
        assert self.proc.poll() is None, self.output()
        return self.state()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = write_project(tmp_path / "shop", orders=ORDERS)
    (root / "wabahooks.toml").write_text('[handlers.orders]\nreply = "Order noted"\n')
    yield root


@pytest.fixture
def start_dev(project: Path) -> Iterator[Callable[..., Dev]]:
    started: list[Dev] = []

    def start(*args: str) -> Dev:
        dev = Dev(project, tempfile.TemporaryFile(), *args)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        if dev.proc.poll() is None:
            os.killpg(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait()
        dev.log.close()


def sent_texts(sim_url: str) -> list[str]:
    history = httpx.get(f"{sim_url}/sim/history", timeout=10).json()
    return [s["message"] for s in history["sent"]]


def order(project: Path) -> None:
    result = wabahooks(project, "trigger", "message", "--text", "my order", "--from", PHONE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dev_runs_the_users_handlers_and_reloads_them(
    project: Path, start_dev: Callable[..., Dev]
) -> None:
    dev = start_dev()
    state = dev.ready()
    sim = state["sim_url"]
    banner = dev.output()
    assert "handlers   orders (1 handler) from myapp.orders" in banner
    assert "what your handlers sent" in banner and "the mark-read and the reply" not in banner
    assert f"portal     {sim}/api/v1" in banner  # the port actually used

    order(project)
    wait_for(lambda: sent_texts(sim) == ["Order noted"], "the handler's reply", timeout=120)
    statuses = wabahooks(project, "trigger", "status", "--sequence", "delivered")
    assert statuses.returncode == 0, statuses.stdout + statuses.stderr
    assert "simulator: the latest message sent, wamid." in statuses.stdout
    assert f"(to {PHONE}); --message-id picks another" in statuses.stdout

    (project / "myapp" / "orders.py").write_text(ORDERS.replace('"Order noted"', '"unused"'))
    (project / "wabahooks.toml").write_text('[handlers.orders]\nreply = "Order noted, twice"\n')
    wait_for(
        lambda: dev.output().count("workers restarted") >= 1, "the workers to restart", timeout=120
    )
    order(project)
    wait_for(
        lambda: sent_texts(sim)[-1:] == ["Order noted, twice"], "the new configuration", timeout=120
    )

    (project / "myapp" / "orders.py").write_text("import nothing_like_this\n")
    try:
        wait_for(
            lambda: "but: handler module 'myapp.orders'" in dev.output(),
            "the failed check",
            timeout=120,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; wabahooks dev said:\n{dev.output()}") from None
    assert dev.proc.poll() is None  # the old workers keep running
    assert "the workers keep the code they run" in dev.output()


def test_kill_9_leaves_nothing_running_and_a_stale_run_is_cleaned(
    project: Path, start_dev: Callable[..., Dev]
) -> None:
    dev = start_dev()
    dev.ready()
    recorded = dev.run_file()
    names = {entry["name"] for entry in recorded}
    assert {"dev", "valkey-server", "portal-sim", "receiver", "worker messages"} <= names

    dev.proc.kill()  # kill -9 of `wabahooks dev` alone, not its group
    dev.proc.wait()

    def survivors() -> list[str]:
        return [
            f"{e['name']} (pid {e['pid']})"
            for e in recorded
            if process_started(e["pid"]) == e["started"]
        ]

    try:
        wait_for(lambda: not survivors(), "every child to die with dev", timeout=60)
    except AssertionError:
        raise AssertionError(f"still running 60 s after dev was killed: {survivors()}") from None

    # A run that could not clean up: its run file names a process still running (here one
    # we start), a dead one, and a PID whose start time does not match (not ours: spared).
    survivor = subprocess.Popen(["sleep", "300"])
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        started = process_started(survivor.pid)
        run = [
            {"name": "dev", "pid": 999_999_999, "started": 1},
            {"name": "receiver", "pid": survivor.pid, "started": started},
            {"name": "worker other", "pid": stranger.pid, "started": 1},
        ]
        (project / ".wabahooks" / "dev.run").write_text(json.dumps(run))
        busy = socket.socket()  # and the simulator's port is taken: it moves, and says so
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]

        again = start_dev("--sim-port", str(taken))
        try:
            state = again.ready()
        finally:
            busy.close()

        assert f"stopping what it left running: receiver (pid {survivor.pid})" in again.output()
        moved = int(state["sim_url"].rsplit(":", 1)[1])
        assert moved != taken
        assert f"port {taken} is in use: the simulator uses {moved}" in again.output()
        assert f"portal     http://127.0.0.1:{moved}/api/v1" in again.output()
        assert survivor.wait(timeout=30) == -signal.SIGTERM
        assert stranger.poll() is None  # its start time did not match
    finally:
        for proc in (survivor, stranger):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
