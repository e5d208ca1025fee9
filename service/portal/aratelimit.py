"""The shared send rate on ``redis.asyncio``, for ``AsyncPortalClient``: the same scripts
and rules as :class:`~service.portal.ratelimit.RateLimiter` (read its module for what is
paced and how the rate learns)."""

from __future__ import annotations

import asyncio
from typing import Unpack

import redis
import redis.asyncio as aioredis

from service.portal.config import PortalSettings
from service.portal.ratelimit import (
    _ACQUIRE,
    _HOLD_OFF,
    _STATE,
    DEFAULT_PREFIX,
    LimiterOptions,
    LimiterState,
    _Limiter,
    _options,
    _split,
    _unavailable,
)

__all__ = ["AsyncRateLimiter", "alimiter_state"]


class AsyncRateLimiter(_Limiter):
    """:class:`RateLimiter` on ``redis.asyncio``, for ``AsyncPortalClient`` (the same scripts).

    Build one per event loop (its refill lock belongs to the loop that first waits on it).
    Size the Redis client's pool for the tasks in flight: ``redis.asyncio`` raises when its
    pool is full instead of waiting.
    """

    def __init__(self, client: aioredis.Redis, **options: Unpack[LimiterOptions]) -> None:
        super().__init__(**options)
        self._refill = asyncio.Lock()  # one refill at a time; the rest is never interrupted
        self._acquire = client.register_script(_ACQUIRE)
        self._hold_off = client.register_script(_HOLD_OFF)
        self._state = client.register_script(_STATE)

    @classmethod
    def from_settings(
        cls, client: aioredis.Redis, settings: PortalSettings, *, prefix: str = DEFAULT_PREFIX
    ) -> AsyncRateLimiter:
        """Return the limiter ``settings`` describe (rate, burst, per-contact pacing)."""
        return cls(client, **_options(settings, prefix))

    async def acquire(self, contact: str | None = None) -> float:
        """Take a permit to send: 0.0 if the send may go now, else the seconds to wait."""
        if self._paced_per_contact(contact):
            return await self._run_acquire(contact)
        if self._take_local():
            return 0.0
        async with self._refill:
            if self._take_local():  # another task refilled while this one waited
                return 0.0
            return await self._run_acquire(None)

    async def _run_acquire(self, contact: str | None) -> float:
        keys, args = self._acquire_args(contact)
        try:
            reply = await self._acquire(keys=keys, args=args)
        except redis.RedisError as exc:
            _unavailable(exc)
            raise  # no permit, no send: the job is retried
        return self._granted(reply, batch=contact is None)

    async def held(self) -> float:
        """Return the seconds every call must still hold back after a 429 (0.0: none)."""
        cached = self._held_cached()
        if cached is not None:
            return cached
        async with self._refill:  # one read for all the calls that missed the cache at once
            cached = self._held_cached()
            if cached is not None:
                return cached
            try:
                reply = await self._state(keys=self._keys[1:], args=self._state_args())
                _rate, held = _split(reply)
            except redis.RedisError as exc:
                _unavailable(exc)
                held = 0.0
            self._saw_hold(held, self._clock())
            return held

    async def hold_off(self, seconds: float) -> None:
        """Make every process wait ``seconds`` from now, and halve the shared send rate."""
        if seconds <= 0:
            return
        keys, args = self._hold_off_args(seconds)
        try:
            await self._hold_off(keys=keys, args=args)
        except redis.RedisError as exc:
            _unavailable(exc)

    async def state(self) -> LimiterState:
        """Return the effective send rate and hold-off, as every process sees them."""
        rate, held = _split(await self._state(keys=self._keys[1:], args=self._state_args()))
        return LimiterState(rate=rate, ceiling=self.rate, held=held)


async def alimiter_state(
    client: aioredis.Redis, ceiling: float, *, prefix: str = DEFAULT_PREFIX
) -> LimiterState:
    """:func:`limiter_state` on ``redis.asyncio``."""
    return await AsyncRateLimiter(client, rate=ceiling, prefix=prefix).state()
