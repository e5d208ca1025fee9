"""`wabahooks dev` end to end: Valkey, simulator, receiver, workers; Ctrl-C ends them all."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from service.cli.dev import DEV_REPLY
from service.cli.devstate import read_dev_state
from service.logs import mask_phone
from tests.support.workers import wait_for

PHONE = "919812345678"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_members(pgid: int) -> set[int]:
    """Every process in the process group ``pgid`` (from /proc)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.add(int(entry.name))
    return members


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes], Path]]:
    """`python -m service dev` in its own process group, no REDIS_URL, in a fresh directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    env["WABAHOOKS_LOG_FORMAT"] = "json"
    log = tempfile.TemporaryFile()
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root)  # the children import service and workers from this tree
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "dev",
            "--port",
            str(free_port()),
            "--sim-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, log, tmp_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pid in group_members(proc.pid):  # a child left behind by a failed test
            os.kill(pid, signal.SIGKILL)
        log.close()


def output(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")


def test_dev_runs_the_whole_loop_and_ctrl_c_ends_every_process(
    dev: tuple[subprocess.Popen[bytes], IO[bytes], Path],
) -> None:
    proc, log, workdir = dev
    wait_for(lambda: read_dev_state(workdir / ".wabahooks") or proc.poll() is not None, "dev ready")
    assert proc.poll() is None, output(log)
    state = read_dev_state(workdir / ".wabahooks")
    assert state is not None
    assert state.sim_url is not None
    assert (workdir / ".wabahooks" / "valkey").is_dir()  # embedded Valkey, project-local
    assert "wabahooks dev is ready" in output(log)

    # No options: in a directory where `wabahooks dev` runs, trigger goes through its simulator.
    trigger = subprocess.run(
        [sys.executable, "-m", "service", "trigger", "message", "--text", "hi", "--from", PHONE],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert trigger.returncode == 0, trigger.stderr
    assert f"simulator: {PHONE} wrote message" in trigger.stdout

    def replied() -> dict[str, Any] | None:
        history: dict[str, Any] = httpx.get(f"{state.sim_url}/sim/history").json()
        return history if history["sent"] else None

    history = wait_for(replied, "the reply at the simulator")
    assert [(s["to"], s["message"]) for s in history["sent"]] == [
        (PHONE, DEV_REPLY.format(first_name="John"))
    ]
    assert [m["showTypingIndicator"] for m in history["markReads"]] == [True]
    # The event archive is on in dev: `events show` finds the contact's message once it ended.
    dev_env = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    for line in (workdir / ".wabahooks" / "dev.env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        dev_env[name] = shlex.split(value)[0]

    def archived() -> str | None:
        show = subprocess.run(
            [sys.executable, "-m", "service", "events", "show", PHONE],
            cwd=workdir,
            env=dev_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return show.stdout if show.returncode == 0 else None

    assert " message " in wait_for(archived, "the message in the event archive")
    # dev.env carries the handler settings: a dry run replays as dev's workers would.
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "replay",
            "--since",
            "1h",
            "--kind",
            "message",
            "--dry-run",
        ],
        cwd=workdir,
        env=dev_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    assert (
        f"would send to {mask_phone(PHONE)}: " + DEV_REPLY.format(first_name="John") in dry.stdout
    )
    text = output(log)
    assert '"outcome":"accepted"' in text and "receiver" in text  # the receiver's line
    assert "POST /api/v1/messages/text" in text  # the reply arriving at the simulator

    children = group_members(proc.pid) - {proc.pid}
    assert len(children) >= 6  # Valkey, simulator, receiver, three workers (and schedulers)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group

    assert proc.wait(timeout=60) == 0, output(log)
    wait_for(lambda: not [pid for pid in children if alive(pid)], "every child to exit", 10)
    assert not (workdir / ".wabahooks" / "dev.json").exists()
    assert "wabahooks dev: stopped" in output(log)


def _dev_with(redis_url: str, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.Popen(
        [sys.executable, "-m", "service", "dev", "--port", str(free_port())]
        + ["--sim-port", str(free_port())],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_dev_with_a_redis_url_that_does_not_answer_stops_before_anything_starts(
    tmp_path: Path,
) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    proc = _dev_with(url, tmp_path)
    out, _ = proc.communicate(timeout=60)
    text = out.decode()

    assert proc.returncode == 2, text
    assert "REDIS_URL=redis://***@127.0.0.1:" in text and "does not answer" in text
    assert "`unset REDIS_URL` for the embedded Valkey" in text
    assert "secret" not in text and "is ready" not in text
    assert not (tmp_path / ".wabahooks" / "valkey").exists()  # nothing was started


def test_dev_says_which_redis_it_uses_when_it_is_not_the_embedded_one(
    tmp_path: Path, redis_url: str
) -> None:
    proc = _dev_with(redis_url, tmp_path)
    try:
        wait_for(
            lambda: read_dev_state(tmp_path / ".wabahooks") or proc.poll() is not None, "ready"
        )
        assert proc.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert f"using REDIS_URL from the environment ({redis_url}), not the embedded" in text
    assert f"redis      {redis_url}\n" in text  # the banner: no "(embedded Valkey…)"
    assert not (tmp_path / ".wabahooks" / "valkey").exists()
