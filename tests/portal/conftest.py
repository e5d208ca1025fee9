"""Portal fixtures: the simulator and a webhook collector, each served by uvicorn on 127.0.0.1.

The servers live for the session; every test starts from ``POST /sim/reset`` and an empty
collector, so tests stay independent and fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.portal.client import PortalClient
from service.portal.config import PortalSettings
from service.sim.app import create_sim_app
from service.sim.config import SimConfig
from tests.portal.support import API_KEY, FAST_RETRY, READONLY_KEY, Collector, serve


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
