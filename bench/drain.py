"""A full Redis drains: fill a 64 MB ``noeviction`` Valkey through the receiver, then drain it.

    .venv/bin/python bench/drain.py [--maxmemory-mb 64] [--contacts 200] [--concurrency 200]

The receiver (in-process, default settings: the headroom of ``WABAHOOKS_MEMORY_HEADROOM_JOBS``)
takes signed message webhooks (60-character texts, round-robin over the contacts, whose
24-hour windows the portal simulator opened first) until it answers 503. Then one `wabahooks
worker --burst` replies to every event through the simulator. Prints used memory over time
(twice a second: MB, events left, the replies so far), the drain's events/s, and memory at
the refusal, at its peak during the drain and at the end; then whether the receiver admits
events again. A benchmark, not a test: it prints figures (README "A full Redis").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.keys import rq_deferred, rq_queue, rq_scheduled, rq_started  # noqa: E402
from service.redisguard import MemoryMarks, memory_state  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.support import payloads  # noqa: E402
from tests.support.failover import start_server  # noqa: E402
from tests.support.portal import API_KEY, drain  # noqa: E402
from tests.support.receiver import SECRET, Receiver  # noqa: E402
from tests.support.stack import MESSAGES, portal_env, simulator  # noqa: E402

TEXT = "Hello, I would like to know where my order 4471 is, thank you"  # 60 characters


def left(r: redis.Redis) -> int:
    """Events not yet answered: queued, deferred, started or scheduled."""
    pipe = r.pipeline(transaction=False)
    pipe.llen(rq_queue(MESSAGES))
    for key in (rq_deferred, rq_started, rq_scheduled):
        pipe.zcard(key(MESSAGES))
    return sum(pipe.execute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maxmemory-mb", type=int, default=64)
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    maxmemory = args.maxmemory_mb * 1024 * 1024
    server = start_server(Path(tempfile.mkdtemp(prefix="drain-bench-")))
    r = redis.Redis(port=server.port)
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", maxmemory)
    settings = Settings(secrets=(SECRET,), redis_url=server.connection_url, log_level="error")
    marks = MemoryMarks.of(settings)
    receiver = Receiver(settings)
    contacts = [f"4477012{n:05d}" for n in range(args.contacts)]
    try:
        with simulator(receiver) as sim, httpx.Client() as client:
            for phone in contacts:
                inbound = {"from": phone, "name": "Bench", "type": "text", "content": "hello"}
                sim.post("/sim/inbound", json=inbound).raise_for_status()
            drain(sim)
            # No status webhooks for the replies: no worker drains the statuses queue here.
            sim.delete("/api/v1/webhook", headers={"Authorization": f"Bearer {API_KEY}"})
            began = time.monotonic()
            acknowledged = len(contacts)
            while True:
                message = payloads.message(sender=contacts[acknowledged % len(contacts)], text=TEXT)
                body, headers = payloads.signed(message, SECRET)
                response = client.post(receiver.webhook_url, content=body, headers=headers)
                if response.status_code != 200:
                    break
                acknowledged += 1
            filled_in = time.monotonic() - began
            start = memory_state(r, marks)
            print(f"filled in {filled_in:.1f} s: {acknowledged} events acknowledged, then ", end="")
            print(f"{response.status_code} {response.json()['error']}")

            env = {
                **os.environ,
                **portal_env(sim, server.connection_url, "tests.workers.process_handlers:chat"),
                "PYTHONPATH": str(ROOT),
                "WABAHOOKS_LOG_LEVEL": "warning",
            }
            command = [sys.executable, "-m", "service", "worker", "--burst"]
            command += ["--concurrency", str(args.concurrency)]
            began = time.monotonic()
            worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            peak = start.used
            print("   s   used MB   events left   replies")
            while worker.poll() is None:
                used = int(r.info("memory")["used_memory"])
                peak = max(peak, used)
                replies = len(sim.get("/sim/history").json()["sent"])
                elapsed = time.monotonic() - began
                print(f"{elapsed:5.1f}  {used / 1e6:8.2f}  {left(r):12d}  {replies:8d}")
                time.sleep(0.5)
            drained_in = time.monotonic() - began
            end = memory_state(r, marks)
            replies = len(sim.get("/sim/history").json()["sent"])
            print(
                f"drained {acknowledged} events in {drained_in:.1f} s "
                f"({acknowledged / drained_in:.0f} events/s; worker exit {worker.returncode}); "
                f"{replies} replies, {left(r)} left"
            )
            print(
                f"used memory: {start.used / 1e6:.2f} MB at the refusal, peak {peak / 1e6:.2f} MB, "
            )
            print(f"  {end.describe()} at the end")
            message = payloads.message(sender=contacts[0], text=TEXT)
            body, headers = payloads.signed(message, SECRET)
            for _ in range(20):  # the receiver's next reading comes within 0.5 s
                status = client.post(receiver.webhook_url, content=body, headers=headers)
                if status.status_code == 200:
                    break
                time.sleep(0.1)
            print(f"the receiver answers {status.status_code} again")
    finally:
        receiver.stop()
        server.stop()


if __name__ == "__main__":
    main()
