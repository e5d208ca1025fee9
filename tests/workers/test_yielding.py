"""Workers yield the CPU to a receiver beside them (``workers.yielding``): a lower priority by
default, and fewer jobs in flight while their loop lags. The lags are fed by the test."""

from __future__ import annotations

import os
from collections.abc import Callable

from tests.support.workers import WorkerProcess, wait_for
from workers.yielding import DEFAULT_NICE, LAG_HIGH, LAG_LOW, MIN_LIMIT, Throttle


def test_a_lagging_loop_takes_fewer_jobs_then_climbs_back() -> None:
    throttle = Throttle(200)
    throttle.observe(LAG_HIGH * 2)
    assert throttle.limit == 150
    for _ in range(30):
        throttle.observe(LAG_HIGH * 2)
    assert throttle.limit == MIN_LIMIT  # never under the floor
    throttle.observe((LAG_HIGH + LAG_LOW) / 2)  # in between: holds
    assert throttle.limit == MIN_LIMIT
    climbs = 0
    while throttle.limit < 200:
        throttle.observe(0.0)
        climbs += 1
    assert throttle.limit == 200 and climbs == 20  # a twentieth of the concurrency per probe


def test_a_small_concurrency_keeps_its_floor() -> None:
    throttle = Throttle(2)
    throttle.observe(1.0)
    assert throttle.limit == 2


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def test_a_worker_lowers_its_priority_by_default(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    mine = _nice(os.getpid())
    default = start_worker()
    default.wait_started()
    kept = start_worker(WABAHOOKS_NICE="0")
    kept.wait_started()
    wait_for(lambda: _nice(default.pid) == mine + DEFAULT_NICE, "the worker's niceness")
    assert _nice(kept.pid) == mine
