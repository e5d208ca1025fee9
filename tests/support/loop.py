"""The whole loop in one test process: simulator → receiver → queue → worker → simulator.

The simulator and the receiver run under uvicorn on 127.0.0.1 in threads; jobs are
drained by the worker engine in burst mode in the test's own process, with the worker
runtime pointed at the simulator.
"""

from __future__ import annotations

import asyncio
import functools
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import redis
import redis.asyncio
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from service.portal import AsyncPortalClient, PortalSettings
from service.settings import Settings
from service.sim.app import create_sim_app
from service.sim.config import SimConfig
from tests.support.bredis import BytesRedis
from tests.support.portal import API_KEY, FAST_RETRY, drain, serve
from tests.support.receiver import Receiver
from workers import builtins
from workers.config import Config, parse_config
from workers.engine import Engine
from workers.loading import registrations
from workers.router import Registration, Router
from workers.rqstate import RQState
from workers.running import JobRunner
from workers.runtime import Runtime

SECRET = "loop-secret"
QUEUES = ("wabahooks:messages", "wabahooks:statuses", "wabahooks:other")


@dataclass
class Loop:
    """A running loop: ``sim`` (control API client), ``receiver``, ``r`` (Redis)."""

    sim: httpx.Client
    receiver: Receiver
    r: BytesRedis
    #: Builds the worker runtime, on the running event loop (one per ``work``).
    runtime: Callable[[], Runtime]

    def inbound(
        self,
        text: str,
        sender: str = "919876543210",
        name: str = "John Doe",
        *,
        type: str = "text",  # noqa: A002 - the simulator's own field name
        content: Any = None,
    ) -> str:
        """A contact writes (``content``: the object of a non-text ``type``); return the
        message id once the receiver has it."""
        body = {"from": sender, "name": name, "type": type, "content": content or text}
        response = self.sim.post("/sim/inbound", json=body)
        response.raise_for_status()
        self.settle()
        return str(response.json()["messageId"])

    def settle(self) -> None:
        """Wait until the simulator has delivered every webhook it owes."""
        drain(self.sim)

    def work(self, queues: Sequence[str] = QUEUES) -> None:
        """Drain ``queues`` with the worker engine in burst mode, in this process."""

        async def drain() -> None:
            runtime = self.runtime()
            try:
                for name in queues:
                    state = RQState(
                        runtime.redis,
                        name,
                        worker_name=f"loop-{name}",
                        lease=30,
                        max_attempts=runtime.retry.max_attempts,
                    )
                    runner = JobRunner(runtime.threads, runtime)
                    await Engine(state, runner, threads=runtime.threads, burst=True).run()
            finally:
                await runtime.aclose()

        asyncio.run(drain())

    def run_scheduled(self, queues: Sequence[str] = QUEUES) -> int:
        """Enqueue every scheduled retry now (the scheduler would after its delay)."""
        moved = 0
        for name in queues:
            queue = Queue(name, connection=self.r, serializer=JSONSerializer)
            registry = ScheduledJobRegistry(queue=queue)
            for job_id in registry.get_jobs_to_schedule(int(time.time()) + 3600):
                job = queue.fetch_job(job_id)
                registry.remove(job_id)
                if job is not None:
                    queue.enqueue_job(job)
                    moved += 1
        return moved

    def history(self, phone: str = "919876543210") -> dict[str, Any]:
        return dict(self.sim.get("/sim/history", params={"phone": phone}).json())

    def chaos(self, **settings: Any) -> None:
        self.sim.put("/sim/chaos", json=settings).raise_for_status()

    def status(self, message_id: str, status: str, errors: list[Any] | None = None) -> None:
        """The portal reports a status of an outbound message (delivered once settled)."""
        body: dict[str, Any] = {"messageId": message_id, "status": status}
        if errors is not None:
            body["errors"] = errors
        self.sim.post("/sim/status", json=body).raise_for_status()
        self.settle()


def sim_delivering_to(webhook_url: str, secret: str) -> SimConfig:
    """The simulator as tests run it: delivering signed webhooks to ``webhook_url`` (plain
    HTTP on loopback allowed), statuses at once, retries fast."""
    return SimConfig(
        api_key=API_KEY,
        allow_insecure_webhooks=True,
        webhook_url=webhook_url,
        webhook_secret=secret,
        status_delay=0.0,
        delivery_backoff=0.01,
    )


@contextmanager
def running_loop(
    redis_url: str, *routers: Router, config: Config | str | None = None, **receiver_settings: Any
) -> Iterator[Loop]:
    """Start simulator + receiver wired together, and a worker runtime with ``routers``
    (and the built-ins ``config`` enables: a :class:`Config` or TOML text)."""
    if isinstance(config, str):
        config = parse_config(tomllib.loads(config), env={})
    config = config or Config()
    with ExitStack() as stack:
        settings = replace(Settings(secrets=(SECRET,), redis_url=redis_url), **receiver_settings)
        receiver = Receiver(settings)
        stack.callback(receiver.stop)
        sim_url = stack.enter_context(
            serve(create_sim_app(sim_delivering_to(receiver.webhook_url, SECRET)))
        )
        sim = stack.enter_context(httpx.Client(base_url=sim_url, timeout=10))
        r = stack.enter_context(redis.Redis.from_url(redis_url))
        build = functools.partial(
            _runtime,
            redis_url,
            PortalSettings(api_url=f"{sim_url}/api/v1", api_key=API_KEY),
            registrations(builtins.routers(config, routers)),
            config,
        )
        yield Loop(sim=sim, receiver=receiver, r=r, runtime=build)


def _runtime(
    redis_url: str,
    portal: PortalSettings,
    handlers: list[Registration],
    config: Config,
) -> Runtime:
    """The worker runtime the loop's workers use: the simulator as the portal."""
    return Runtime(
        redis=redis.asyncio.Redis.from_url(redis_url),
        portal=AsyncPortalClient(portal, retry=FAST_RETRY),
        registrations=handlers,
        config=config.raw,
        store_ttls=builtins.store_ttls(config),
    )
