"""The built-ins at start-up: the runtime's dispatch order, and a bad file stops the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import redis.asyncio

from tests.support.workers import WorkerProcess
from workers.runtime import Runtime

ROOT = Path(__file__).resolve().parents[3]


def test_the_runtime_puts_tracking_and_mark_read_first_and_replies_after_yours(
    redis_url: str,
) -> None:
    runtime = Runtime.from_env(
        {
            "REDIS_URL": redis_url,
            "WABAHOOKS_CONFIG": str(ROOT / "wabahooks.example.toml"),
            "CRM_FORWARD_SECRET": "s",
            "WABAHOOKS_HANDLERS": "tests.workers.example_handlers",
            "WABAHOOKS_STATUS_RETENTION": "3600",
        },
        redis=redis.asyncio.Redis.from_url(redis_url),
        sync_threads=2,
    )
    asyncio.run(runtime.aclose())
    routers = list(dict.fromkeys(r.router for r in runtime.registrations))
    assert routers == ["status_tracking", "mark_read", "policy", "example", "auto_reply", "forward"]
    assert runtime.store_ttls == {"status_tracking": 3600}
    assert runtime.section("auto_reply")["cooldown"] == 3600


def test_a_bad_configuration_stops_the_worker_naming_the_key(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    path = tmp_path / "wabahooks.toml"
    path.write_text(
        '[handlers.auto_reply]\n[[handlers.auto_reply.rules]]\nregex = "(oops"\nreply = "x"\n'
    )
    worker = start_worker("--queue", "messages", "--burst", WABAHOOKS_CONFIG=str(path))
    output = worker.output()
    assert worker.proc.returncode == 2
    assert "handlers.auto_reply.rules[0].regex: not a valid regular expression" in output
