"""Issue 14, item 8: `wabahooks new handler|project` write files that run as they are."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.deploy.support import compose_validator
from tests.userpath.support import user_env, wabahooks


def pytest_in(project: Path) -> subprocess.CompletedProcess[str]:
    """The user's `python -m pytest`, in their project (its own configuration)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_new_handler_is_ready_to_test_check_and_run(tmp_path: Path, redis_url: str) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "wabahooks.toml").write_text("[handlers.mark_read]\n")  # the user's own file

    first = wabahooks(project, "new", "handler", "orders")
    second = wabahooks(project, "new", "handler", "refunds", "--package", "myapp")
    again = wabahooks(project, "new", "handler", "orders")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert again.returncode != 0 and "exists" in again.stderr  # nothing overwritten
    config = tomllib.loads((project / "wabahooks.toml").read_text())
    assert config["handlers"]["modules"] == ["myapp.orders", "myapp.refunds"]
    assert "mark_read" in config["handlers"] and "reply" in config["handlers"]["orders"]
    tested = pytest_in(project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "4 passed" in tested.stdout
    checked = wabahooks(project, "check", "--handlers-only")
    assert checked.returncode == 0, checked.stdout
    assert "orders (1 handler), refunds (1 handler)" in checked.stdout
    worker = wabahooks(project, "worker", "--burst", REDIS_URL=redis_url)
    assert worker.returncode == 0, worker.stderr
    assert '"handlers":["mark_read:mark_read","orders:answer","refunds:answer"]' in worker.stdout


def test_new_handler_refuses_names_that_cannot_work(tmp_path: Path) -> None:
    for name in ("mark_read", "Orders", "2fa", "modules"):
        result = wabahooks(tmp_path, "new", "handler", name)
        assert result.returncode == 2, (name, result.stderr)
    assert not list(tmp_path.iterdir())


def test_new_project_is_a_repository_that_tests_checks_and_ships(tmp_path: Path) -> None:
    result = wabahooks(tmp_path, "new", "project", "acme")
    project = tmp_path / "acme"

    assert result.returncode == 0, result.stderr
    for name in ("Dockerfile", "compose.yaml", ".env.example", "pyproject.toml", "README.md"):
        assert (project / name).is_file(), name
    tested = pytest_in(project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    checked = wabahooks(project, "check", "--handlers-only")
    assert checked.returncode == 0, checked.stdout
    dockerfile = (project / "Dockerfile").read_text()
    assert "FROM wabahooks:0.1.0" in dockerfile
    assert "COPY myapp /app/myapp" in dockerfile and "WABAHOOKS_APP_DIR=/app" in dockerfile
    assert "RUN wabahooks check --handlers-only" in dockerfile
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    errors = sorted(compose_validator().iter_errors(compose), key=str)
    assert not errors, errors
    workers = [s for s in compose["services"].values() if s.get("command", [""])[0] == "worker"]
    assert {w["command"][-1] for w in workers} == {"messages", "statuses", "other"}
    assert all(s.get("build") == "." for n, s in compose["services"].items() if n != "valkey")

    refused = wabahooks(tmp_path, "new", "project", "acme")
    assert refused.returncode != 0 and "not empty" in refused.stderr
