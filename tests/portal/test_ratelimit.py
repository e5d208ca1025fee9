"""The shared limiter on a real Valkey: processes together stay under the rate; a 429 pauses
every call of every process, halves the shared send rate, which climbs back to the ceiling;
per-contact pacing; the async twin on the same scripts."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.portal import AsyncPortalClient, RateLimited
from service.portal.aratelimit import AsyncRateLimiter, alimiter_state
from service.portal.backoff import RetryPolicy
from service.portal.client import PortalClient
from service.portal.config import DEFAULT_RATE, PortalSettings
from service.portal.ratelimit import (
    BATCH_WINDOW,
    CLIMB_SECONDS,
    MAX_BATCH,
    MIN_RATE,
    LimiterState,
    RateLimiter,
    limiter_state,
)
from tests.support.bredis import BytesRedis
from tests.support.portal import API_KEY, FAST_RETRY

RATE = 40.0
BURST = 2.0
PER_PROCESS = 10
#: Hold-offs and pacing intervals in these tests: nothing ends by itself while one runs.
HOUR = 3600.0


def left_of(seconds: float, since: float, value: float) -> bool:
    """Whether ``value`` is what remains of ``seconds`` that started after ``since``
    (``time.monotonic()``): at most ``seconds``, at least ``seconds`` less the time elapsed
    since (and 10 ms, for Redis' rounding of stored times). True however slow the machine."""
    return seconds - (time.monotonic() - since) - 0.01 <= value <= seconds


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
    started = time.monotonic()
    one.hold_off(HOUR)
    time.sleep(BATCH_WINDOW)  # what `other` took before the 429 is dropped after the window
    assert left_of(HOUR, started, other.acquire())
    one.hold_off(1.0)  # a shorter pause never shortens the longer one
    assert left_of(HOUR, started, other.acquire())


def test_a_single_process_is_paced(r: BytesRedis) -> None:
    limiter = RateLimiter(r, rate=1 / HOUR, burst=3)  # a permit an hour: none refills meanwhile
    started = time.monotonic()
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert left_of(HOUR, started, limiter.acquire())  # the next one's wait: 1 / rate


def test_without_redis_a_send_gets_no_permit_and_other_calls_go_through() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(client, rate=1)
    # A send's permit fails closed: the send does not go out, its job is retried.
    with pytest.raises(redis.ConnectionError):
        limiter.acquire()
    with pytest.raises(redis.ConnectionError):
        limiter.acquire("919876543210")
    # What is not a send fails open: the hold-off check and the report of a 429.
    assert limiter.held() == 0.0
    limiter.hold_off(1.0)


def test_without_redis_an_async_send_gets_no_permit() -> None:
    async def main() -> None:
        client = aioredis.Redis(host="127.0.0.1", port=1, retry=AsyncRetry(NoBackoff(), 0))
        try:
            limiter = AsyncRateLimiter(client, rate=1)
            with pytest.raises(redis.ConnectionError):
                await limiter.acquire()
            assert await limiter.held() == 0.0
        finally:
            await client.aclose()

    asyncio.run(main())


def test_client_tells_the_limiter_of_a_429(
    sim_server: str, control: httpx.Client, r: BytesRedis
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


def test_at_high_rates_a_process_takes_a_small_batch_per_round_trip(r: BytesRedis) -> None:
    # Its clock stands still: a batch is not dropped after BATCH_WINDOW, however slow the test.
    limiter = RateLimiter(r, rate=1000, burst=1000, clock=lambda: 0.0)
    before = int(r.info("commandstats")["cmdstat_evalsha"]["calls"])

    assert [limiter.acquire() for _ in range(50)] == [0.0] * 50

    round_trips = int(r.info("commandstats")["cmdstat_evalsha"]["calls"]) - before
    assert round_trips <= 50 // min(MAX_BATCH, int(1000 * BATCH_WINDOW)) + 1
    # ...and only what the batches took left the shared bucket.
    assert float(r.hget("wabahooks:portal:bucket", "tokens") or 0) >= 1000 - 50 - MAX_BATCH


# -- the rate learns from 429s ------------------------------------------------------------

RATE_KEY = "wabahooks:portal:rate"


def elapse(r: BytesRedis, seconds: float) -> None:
    """Make the last cut look ``seconds`` older (the climb and the calm), without sleeping."""
    for name in ("ts", "calm"):
        value = r.hget(RATE_KEY, name)
        assert value is not None
        r.hset(RATE_KEY, name, repr(float(value) - seconds))


def test_a_429_halves_the_rate_every_process_sees_then_it_climbs_back_to_the_ceiling(
    r: BytesRedis,
) -> None:
    one, other = RateLimiter(r, rate=80), RateLimiter(r, rate=80)
    assert other.state() == LimiterState(rate=80.0, ceiling=80.0, held=0.0)
    started = time.monotonic()
    one.hold_off(HOUR)  # the climb starts when the hold-off ends: not while the test runs
    assert other.state().rate == 40.0
    one.hold_off(HOUR)  # a 429 to a request already in flight: no second cut
    assert other.state().rate == 40.0
    elapse(r, HOUR + 15)  # the hold-off ended 15 s ago (plus the test's own time)
    climbed = other.state().rate - 40
    climb = 80 / CLIMB_SECONDS
    assert 15 * climb - 0.01 <= climbed <= (15 + time.monotonic() - started) * climb
    elapse(r, 1000)
    assert other.state().rate == 80.0  # never above the ceiling


def test_every_cut_halves_until_the_floor(r: BytesRedis) -> None:
    limiter = RateLimiter(r, rate=8)
    rates = []
    for _ in range(5):
        limiter.hold_off(HOUR)  # no climb before the hold-off ends: each cut halves exactly
        rates.append(limiter.state().rate)
        r.hset(RATE_KEY, "calm", "0")  # the calm is over: the next 429 cuts again
    assert rates == [4.0, 2.0, MIN_RATE, MIN_RATE, MIN_RATE]


def test_a_hold_off_holds_back_every_call_of_every_process(redis_url: str) -> None:
    one = RateLimiter(redis.Redis.from_url(redis_url), rate=80)
    # Its clock stands still: HELD_WINDOW does not run out however slow the test is.
    other = RateLimiter(redis.Redis.from_url(redis_url), rate=80, clock=lambda: 0.0)
    assert other.held() == 0.0
    started = time.monotonic()
    one.hold_off(HOUR)
    assert other.held() == 0.0  # what it read stays trusted for HELD_WINDOW
    fresh = RateLimiter(redis.Redis.from_url(redis_url), rate=80)
    assert left_of(HOUR, started, fresh.held()) and left_of(HOUR, started, fresh.acquire())
    assert left_of(HOUR, started, one.held())  # the process that saw the 429 holds back at once

    async def from_the_loop() -> tuple[float, float]:
        client = aioredis.Redis.from_url(redis_url)
        limiter = AsyncRateLimiter(client, rate=80)
        try:
            return await limiter.held(), await limiter.acquire()
        finally:
            await client.aclose()

    held, wait = asyncio.run(from_the_loop())
    assert left_of(HOUR, started, held) and left_of(HOUR, started, wait)


def test_after_a_cut_the_bucket_starts_empty_at_the_lower_rate(r: BytesRedis) -> None:
    limiter = RateLimiter(r, rate=80, burst=80)
    limiter.hold_off(HOUR)  # the bucket refills from the hold-off's end: not while the test runs
    r.delete("wabahooks:portal:blocked-until")  # the hold-off itself is over
    assert limiter.acquire() == 1 / 40  # no burst of 80 straight after a 429: one at 40/s


def test_the_async_twin_shares_the_scripts_and_the_state(redis_url: str, r: BytesRedis) -> None:
    async def main() -> list[float]:
        client = aioredis.Redis.from_url(redis_url)
        limiter = AsyncRateLimiter(client, rate=1000, burst=1000)
        try:
            waits = [await limiter.acquire() for _ in range(40)]
            await limiter.hold_off(HOUR)  # no climb before it ends
            state = await alimiter_state(client, 1000)
            assert state.rate == 500.0
            return waits
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [0.0] * 40
    assert limiter_state(r, 1000).rate == 500.0


def test_threads_never_spend_more_tokens_than_the_bucket_gave(r: BytesRedis) -> None:
    limiter = RateLimiter(r, rate=320, burst=100)  # batches of 16
    granted: list[int] = []
    started = time.monotonic()

    def take() -> None:
        granted.append(sum(limiter.acquire() == 0.0 for _ in range(60)))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    # Whatever the interleaving: no more sends than the burst plus what refilled meanwhile.
    assert sum(granted) <= 100 + 320 * elapsed + 1


def test_the_status_line_says_the_rate_and_the_hold_off(r: BytesRedis) -> None:
    assert limiter_state(r, 80).describe() == ("portal send rate: 80/s of 80/s (WABA_API_RATE)")
    started = time.monotonic()
    RateLimiter(r, rate=80).hold_off(HOUR)
    state = limiter_state(r, 80)
    assert left_of(HOUR, started, state.held)
    assert state.describe() == (
        "portal send rate: 40/s of 80/s (WABA_API_RATE), climbing back after a 429; "
        f"every call held off {state.held:.1f} s more"
    )


# -- per-contact pacing -------------------------------------------------------------------


def test_per_contact_pacing_allows_a_short_burst_then_one_send_per_interval(
    r: BytesRedis,
) -> None:
    limiter = RateLimiter(r, rate=1000, contact_interval=HOUR, contact_burst=2)
    started = time.monotonic()
    assert [limiter.acquire("919876543210") for _ in range(2)] == [0.0, 0.0]
    assert left_of(HOUR, started, limiter.acquire("919876543210"))
    assert limiter.acquire("447700900123") == 0.0  # another contact is not held back
    assert limiter.acquire() == 0.0  # nor a paced call to nobody in particular


def test_off_by_default_contacts_are_not_paced(r: BytesRedis) -> None:
    limiter = RateLimiter.from_settings(r, PortalSettings(api_url="http://x/api/v1", api_key="k"))
    assert limiter.contact_interval is None and limiter.rate == DEFAULT_RATE == 80.0
    assert [limiter.acquire("919876543210") for _ in range(10)] == [0.0] * 10


def test_a_contact_wait_beyond_the_budget_reschedules_the_send(r: BytesRedis) -> None:
    settings = PortalSettings(
        api_url="https://portal.test/api/v1", api_key="k", contact_interval=HOUR, contact_burst=1
    )
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"success": True, "messageId": "wamid.X"})

    with PortalClient(
        settings,
        limiter=RateLimiter.from_settings(r, settings),
        retry=RetryPolicy(budget=5.0),
        transport=httpx.MockTransport(answer),
    ) as portal:
        started = time.monotonic()
        portal.send_text("919876543210", "first")
        with pytest.raises(RateLimited) as info:
            portal.send_text("919876543210", "second")
    assert len(sent) == 1 and info.value.retry_after is not None
    assert left_of(HOUR, started, info.value.retry_after)


def test_the_async_client_tells_the_shared_limiter_of_a_429(
    sim_server: str, control: httpx.Client, redis_url: str, r: BytesRedis
) -> None:
    control.put("/sim/chaos", json={"rate_limit_next": 1, "retry_after": 0.01})
    settings = PortalSettings(api_url=f"{sim_server}/api/v1", api_key=API_KEY)

    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        limiter = AsyncRateLimiter.from_settings(client, settings)
        try:
            async with AsyncPortalClient(settings, limiter=limiter, retry=FAST_RETRY) as portal:
                assert await portal.templates() == []
        finally:
            await client.aclose()

    started = time.monotonic()
    asyncio.run(main())
    # Halved, then climbing back since the 10 ms hold-off ended: by at most what the time
    # the test took allows.
    climbed = limiter_state(r, settings.rate).rate - settings.rate / 2
    assert 0 <= climbed <= (time.monotonic() - started) * settings.rate / CLIMB_SECONDS
