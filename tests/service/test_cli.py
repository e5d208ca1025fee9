"""The command line: clear one-line configuration errors, and `sign`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.signature import sign


def run(
    *args: str, env: dict[str, str], stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env},
        cwd=cwd,
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_without_a_secret_names_the_variable() -> None:
    result = run("serve", env={"REDIS_URL": "redis://127.0.0.1:1"})

    assert result.returncode == 2
    assert result.stderr.startswith("wabahooks: WABA_WEBHOOK_SECRET is not set")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_without_redis_url_says_it_is_required() -> None:
    result = run("serve", env={"WABA_WEBHOOK_SECRET": "s"})

    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr
    assert "make dev" in result.stderr


def test_sign_prints_the_signature_of_a_file(tmp_path: Path) -> None:
    body = b'{"event":"test","data":{"testId":"t1"}}'
    (tmp_path / "event.json").write_bytes(body)

    result = run("sign", str(tmp_path / "event.json"), env={"WABA_WEBHOOK_SECRET": "k1,k0"})

    assert result.returncode == 0
    assert result.stdout.strip() == sign(body, "k1")


def test_sign_falls_back_to_the_dev_secret_like_trigger(tmp_path: Path) -> None:
    body = b'{"event":"test","data":{"testId":"t2"}}'
    (tmp_path / "event.json").write_bytes(body)
    (tmp_path / ".wabahooks").mkdir()
    (tmp_path / ".wabahooks" / "dev-secret").write_text("dev-secret-1\n")

    result = run("sign", "event.json", env={}, cwd=tmp_path)
    nothing = run("sign", str(tmp_path / "event.json"), env={}, cwd=tmp_path.parent)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sign(body, "dev-secret-1")
    assert nothing.returncode == 2 and "no webhook secret" in nothing.stderr


def test_a_malformed_redis_url_is_one_line_from_every_command() -> None:
    env = {"REDIS_URL": "localhost:6379", "WABA_WEBHOOK_SECRET": "s"}
    for command in (
        ["serve"],
        ["worker"],
        ["status"],
        ["failed", "list"],
        ["forget", "919876543210", "--yes"],
    ):
        result = run(*command, env=env)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (command, lines)
        [line] = lines
        assert line.startswith("wabahooks: REDIS_URL must be redis://"), line
        assert "rediss://" in line and "unix://" in line and "'localhost:6379'" in line
    check = run("check", env=env)
    assert "fail  redis     REDIS_URL must be redis://" in check.stdout
