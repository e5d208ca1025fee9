"""The shared limiter on a real Valkey: processes together stay under the rate; 429 pauses all."""

from __future__ import annotations

import multiprocessing
import time

import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.portal.client import PortalClient
from service.portal.config import PortalSettings
from service.portal.ratelimit import BATCH_WINDOW, MAX_BATCH, RateLimiter
from tests.portal.support import API_KEY, FAST_RETRY

RATE = 40.0
BURST = 2.0
PER_PROCESS = 10


def take(url: str, count: int, start: float) -> list[float]:
    """In a child process: take ``count`` permits, sleeping as told; return when each came."""
    client = redis.Redis.from_url(url)
    limiter = RateLimiter(client, rate=RATE, burst=BURST)
    while time.time() < start:
        time.sleep(0.001)
    stamps = []
    for _ in range(count):
        while (wait := limiter.acquire()) > 0:
            time.sleep(wait)
        stamps.append(time.time())
    client.close()
    return stamps


def test_two_processes_together_stay_under_the_rate(redis_url: str) -> None:
    start = time.time() + 0.5  # both children begin together, after spawning
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(take, [(redis_url, PER_PROCESS, start)] * 2)
    stamps = sorted(s for result in results for s in result)
    assert [len(r) for r in results] == [PER_PROCESS, PER_PROCESS]
    # A correctness lower bound, not a time limit: beyond the burst, one permit per 1/RATE s.
    assert stamps[-1] - start >= (2 * PER_PROCESS - BURST) / RATE


def test_a_429_holds_every_process_back(redis_url: str) -> None:
    one = RateLimiter(redis.Redis.from_url(redis_url), rate=1000)
    other = RateLimiter(redis.Redis.from_url(redis_url), rate=1000)
    assert other.acquire() == 0.0
    one.hold_off(5.0)
    time.sleep(BATCH_WINDOW)  # what `other` took before the 429 is dropped after the window
    wait = other.acquire()
    assert 4.0 < wait <= 5.0
    one.hold_off(1.0)  # a shorter pause never shortens the longer one
    assert other.acquire() > 4.0


def test_a_single_process_is_paced(r: redis.Redis) -> None:
    limiter = RateLimiter(r, rate=10, burst=3)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire()
    assert 0.0 < wait <= 0.1


def test_without_redis_the_limiter_lets_requests_through() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(client, rate=1)
    assert limiter.acquire() == 0.0
    limiter.hold_off(1.0)  # no exception either


def test_client_tells_the_limiter_of_a_429(
    sim_server: str, control: httpx.Client, r: redis.Redis
) -> None:
    limiter = RateLimiter(r, rate=1000)
    settings = PortalSettings(api_url=f"{sim_server}/api/v1", api_key=API_KEY)
    control.put("/sim/chaos", json={"rate_limit_next": 1, "retry_after": 0.05})
    paused_while_sleeping: list[int] = []

    def sleep(seconds: float) -> None:
        paused_while_sleeping.append(r.exists("wabahooks:portal:blocked-until"))
        time.sleep(seconds)

    with PortalClient(settings, limiter=limiter, retry=FAST_RETRY, sleep=sleep) as portal:
        assert portal.templates() == []
    assert paused_while_sleeping and paused_while_sleeping[0] == 1


def test_at_high_rates_a_process_takes_a_small_batch_per_round_trip(r: redis.Redis) -> None:
    limiter = RateLimiter(r, rate=1000, burst=1000)
    before = int(r.info("commandstats")["cmdstat_evalsha"]["calls"])

    assert [limiter.acquire() for _ in range(50)] == [0.0] * 50

    round_trips = int(r.info("commandstats")["cmdstat_evalsha"]["calls"]) - before
    assert round_trips <= 50 // min(MAX_BATCH, int(1000 * BATCH_WINDOW)) + 1
    # ...and only what the batches took left the shared bucket.
    assert float(r.hget("wabahooks:portal:bucket", "tokens") or 0) >= 1000 - 50 - MAX_BATCH
