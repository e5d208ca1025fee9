"""Issue 14, item 9: an idle worker whose Redis is gone still stops promptly on SIGTERM.

No time limit is asserted (the machine may be busy): the worker must exit by itself, with
status 0 and its stop line, within a generous wait, while its Redis is down.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.failover import start_server
from tests.userpath.support import WABAHOOKS, user_env


def test_an_idle_worker_without_its_redis_stops_on_sigterm(tmp_path: Path) -> None:
    server = start_server(tmp_path / "valkey", appendonly="no")
    log = tempfile.TemporaryFile()
    env = user_env(
        REDIS_URL=server.connection_url,
        WABAHOOKS_ALLOW_NO_HANDLERS="1",
        WABAHOOKS_LOG_FORMAT="json",
    )
    worker = subprocess.Popen([WABAHOOKS, "worker"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120

        def output() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        while '"worker.started"' not in output() and time.monotonic() < deadline:
            assert worker.poll() is None, output()
            time.sleep(0.1)
        server.stop()
        while '"redis.unavailable"' not in output() and time.monotonic() < deadline:
            time.sleep(0.1)

        worker.send_signal(signal.SIGTERM)

        assert worker.wait(timeout=60) == 0, output()
        assert '"in_flight":0,"event":"worker.stopping"' in output()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
        server.terminate()  # if a failure left it running (a no-op once stopped)
