"""The command line: clear one-line configuration errors, and `sign`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.signature import sign


def run(
    *args: str, env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**clean, **env},
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
