"""A rate limiter shared by every worker process: a token bucket in Redis, and a shared pause.

``RateLimiter(redis, rate, burst)`` satisfies :class:`service.portal.client.Limiter`.
Each :meth:`~RateLimiter.acquire` runs one Lua script, atomically, on Redis' own clock
(``TIME``), so processes on different hosts agree: the bucket holds up to ``burst`` tokens
and refills at ``rate`` per second. When any process sees a 429, :meth:`~RateLimiter.hold_off`
moves a shared "blocked until" time forward, and every process waits it out.

If Redis cannot be reached the limiter lets requests through (logging a warning): the portal
still answers 429 if we are too fast, and the client backs off on its own.
"""

from __future__ import annotations

import redis
import structlog

__all__ = ["RateLimiter"]

log = structlog.get_logger("wabahooks.portal.ratelimit")

DEFAULT_PREFIX = "wabahooks:portal:"

# KEYS: bucket hash, blocked-until key. ARGV: rate (tokens/s), burst.
# Returns the seconds to wait as a string (a Lua number would be truncated to an integer).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then return tostring(blocked - now) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

# KEYS: blocked-until key. ARGV: seconds. Moves the pause forward, never back.
_HOLD_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > blocked then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1)
end
return tostring(math.max(until_, blocked) - now)
"""


class RateLimiter:
    """At most ``rate`` requests per second (bursts of ``burst``) across all processes."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        rate: float,
        burst: float | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be greater than 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._keys = [f"{prefix}bucket", f"{prefix}blocked-until"]
        self._acquire = client.register_script(_ACQUIRE)
        self._hold_off = client.register_script(_HOLD_OFF)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst})"

    def acquire(self) -> float:
        """Take a token: 0.0 if a request may go now, else the seconds to wait and try again."""
        try:
            wait = self._acquire(keys=self._keys, args=[repr(self.rate), repr(self.burst)])
        except redis.RedisError as exc:
            log.warning("rate_limiter_unavailable", error=type(exc).__name__)
            return 0.0
        return float(wait)

    def hold_off(self, seconds: float) -> None:
        """Make every process wait ``seconds`` from now before its next request."""
        if seconds <= 0:
            return
        try:
            self._hold_off(keys=self._keys[1:], args=[repr(float(seconds))])
        except redis.RedisError as exc:
            log.warning("rate_limiter_unavailable", error=type(exc).__name__)
