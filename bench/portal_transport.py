"""Async HTTP transports for the portal client, under the concurrency an async worker keeps.

    .venv/bin/python bench/portal_transport.py [--requests 3000] [--in-flight 200] [--rounds 2]

A tiny server (uvicorn + httptools, in its own process on core 1) answers every POST after
``--latency`` seconds (default 0.15, a hosted API's ordinary round trip) with a small JSON body.
In this process (core 0), alternating, each variant sends ``--requests`` POSTs with
``--in-flight`` of them outstanding at any time:

- ``httpx``: ``httpx.AsyncClient`` with its default transport (httpcore), pool sized for
  the in-flight count;
- ``httpx-aiohttp``: ``httpx.AsyncClient`` over our portal transport
  (``service.portal.aiotransport``: the ``httpx-aiohttp`` package's transport, with our
  exception mapping and no cookie jar), the same API;
- ``httpx-aiohttp-plain``: the package's transport as it comes (its exception mapping, which
  would let a send be repeated, and a cookie jar), to show what our changes cost;
- ``aiohttp``: a bare ``aiohttp.ClientSession``, the reference.

Prints requests/s, CPU ms per request (this process only) and the ratio of each to the
first variant, per round and the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.portal.aiotransport import portal_transport  # noqa: E402

CLIENT_CORE, SERVER_CORE = 0, 1
BODY = {"messageId": "wamid.HBgLOTE5ODc2NTQzMjEwFQIAERgSM0VCMDA", "showTypingIndicator": True}

SERVER = """
import asyncio, sys
import uvicorn

LATENCY = float(sys.argv[2])

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(LATENCY)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"success":true}'})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            http="httptools", lifespan="off", ws="none", backlog=4096)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(pid: int, core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(pid, {core})


async def flood(post: Callable[[], Awaitable[None]], requests: int, in_flight: int) -> None:
    remaining = requests

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await post()

    await asyncio.gather(*(lane() for _ in range(in_flight)))


async def run_httpx(url: str, requests: int, in_flight: int, transport: str) -> None:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    custom: httpx.AsyncBaseTransport | None = None
    if transport == "aiohttp":
        custom = portal_transport(limits)
    elif transport == "plain":
        custom = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(limits=limits, transport=custom, timeout=60) as client:

        async def post() -> None:
            response = await client.post(url, json=BODY)
            response.raise_for_status()
            response.json()

        await flood(post, requests, in_flight)


async def run_aiohttp(url: str, requests: int, in_flight: int) -> None:
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> None:
            async with session.post(url, json=BODY) as response:
                response.raise_for_status()
                await response.json()

        await flood(post, requests, in_flight)


VARIANTS: dict[str, Callable[[str, int, int], Awaitable[None]]] = {
    "httpx": lambda u, n, f: run_httpx(u, n, f, "default"),
    "httpx-aiohttp": lambda u, n, f: run_httpx(u, n, f, "aiohttp"),
    "httpx-aiohttp-plain": lambda u, n, f: run_httpx(u, n, f, "plain"),
    "aiohttp": run_aiohttp,
}


def measure(name: str, url: str, requests: int, in_flight: int) -> tuple[float, float]:
    """Return (requests/s, CPU ms per request) for one variant."""
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(VARIANTS[name](url, requests, in_flight))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return requests / wall, cpu * 1000 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.latency)])
    try:
        pin(server.pid, SERVER_CORE)
        pin(0, CLIENT_CORE)
        url = f"http://127.0.0.1:{port}/api/v1/messages/mark-read"
        for _ in range(200):
            try:
                httpx.post(url, json=BODY, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        print(
            f"{args.requests} POSTs, {args.in_flight} in flight, server latency "
            f"{args.latency * 1000:.0f} ms; client on core {CLIENT_CORE}, server on core "
            f"{SERVER_CORE}"
        )
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in args.only}
        for round_ in range(1, args.rounds + 1):
            for name in args.only:
                rate, cpu_ms = measure(name, url, args.requests, args.in_flight)
                results[name].append((rate, cpu_ms))
                print(f"round {round_}  {name:<20} {rate:8.1f} req/s  {cpu_ms:6.2f} CPU ms/req")
        first = args.only[0]
        base_rate = statistics.median(r for r, _ in results[first])
        base_cpu = statistics.median(c for _, c in results[first])
        print(f"\nmedian of {args.rounds} round(s); ratios against {first}")
        print(f"{'variant':<20} {'req/s':>8} {'CPU ms/req':>11} {'x req/s':>8} {'x CPU':>7}")
        for name in args.only:
            rate = statistics.median(r for r, _ in results[name])
            cpu_ms = statistics.median(c for _, c in results[name])
            print(
                f"{name:<20} {rate:8.1f} {cpu_ms:11.2f} {rate / base_rate:8.2f} "
                f"{cpu_ms / base_cpu:7.2f}"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
