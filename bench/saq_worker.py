"""A saq worker for bench/workers.py: burst mode, one queue, the same two portal calls.

python bench/saq_worker.py REDIS_URL CONCURRENCY
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
from saq import Queue, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.handlers import saq_pair  # noqa: E402


async def main(url: str, concurrency: int) -> None:
    # redis.asyncio's pool raises when full: size it for every job in flight.
    queue = Queue.from_url(f"{url}?max_connections={concurrency * 2 + 20}", name="bench")

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["session"] = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {os.environ['WABA_API_KEY']}"},
            connector=aiohttp.TCPConnector(limit=concurrency + 10),
        )
        ctx["url"] = os.environ["WABA_API_URL"].rstrip("/")

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ctx["session"].close()

    worker = Worker(
        queue,
        functions=[("pair", saq_pair)],
        concurrency=concurrency,
        startup=startup,
        shutdown=shutdown,
        burst=True,
        dequeue_timeout=1.0,  # burst mode ends after an empty wait this long
    )
    await worker.start()
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
