"""A rate limiter shared by every worker process: a token bucket in Redis, and a shared pause.

``RateLimiter(redis, rate, burst)`` satisfies :class:`service.portal.client.Limiter`: sends
take a permit (:meth:`~RateLimiter.acquire`), every call checks the shared pause
(:meth:`~RateLimiter.held`).
Each :meth:`~RateLimiter.acquire` runs one Lua script, atomically, on Redis' own clock
(``TIME``), so processes on different hosts agree: the bucket holds up to ``burst`` tokens
and refills at ``rate`` per second. When any process sees a 429, :meth:`~RateLimiter.hold_off`
moves a shared "blocked until" time forward, and every process waits it out.

**Batches at high rates.** A round trip per request would cost more than the request at
high rates, so a process takes up to :data:`BATCH_WINDOW` seconds' worth of tokens at once
(at most :data:`MAX_BATCH`; one at a time below 1 / BATCH_WINDOW requests/s) and spends them
locally within that window, dropping what it did not use. The processes together still take
no more than the bucket gives; a 429 seen by another process is honoured within the window.

If Redis cannot be reached the limiter lets requests through (logging a warning): the portal
still answers 429 if we are too fast, and the client backs off on its own.
"""

from __future__ import annotations

import threading
import time

import redis
import structlog

__all__ = ["RateLimiter"]

log = structlog.get_logger("wabahooks.portal.ratelimit")

DEFAULT_PREFIX = "wabahooks:portal:"
#: Seconds' worth of tokens one process may take at once (and must use within).
BATCH_WINDOW = 0.05
#: The most tokens one process takes at once.
MAX_BATCH = 16

# KEYS: bucket hash, blocked-until key. ARGV: rate (tokens/s), burst, tokens wanted.
# Returns "<tokens granted> <seconds to wait>" (a Lua number would be truncated to an integer).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then return '0 ' .. tostring(blocked - now) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait, granted = 0, 0
if tokens >= 1 then
  granted = math.min(tonumber(ARGV[3]), math.floor(tokens))
  tokens = tokens - granted
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(granted) .. ' ' .. tostring(wait)
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

# KEYS: blocked-until key. Returns the seconds the pause has left (0 if none).
_HELD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
return tostring(math.max(0, blocked - now))
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
        self._held = client.register_script(_HELD)
        self._lock = threading.Lock()  # the local tokens are shared by the client's threads
        self._batch = max(1, min(MAX_BATCH, int(self.rate * BATCH_WINDOW)))
        self._local = 0  # tokens taken from the bucket, not yet spent
        self._local_until = 0.0  # time.monotonic() after which they are dropped

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst})"

    def acquire(self, contact: str | None = None) -> float:
        """Take a token: 0.0 if a request may go now, else the seconds to wait and try again."""
        with self._lock:
            if self._local > 0 and time.monotonic() < self._local_until:
                self._local -= 1
                return 0.0
            return self._refill()

    def _refill(self) -> float:
        try:
            reply = self._acquire(
                keys=self._keys, args=[repr(self.rate), repr(self.burst), self._batch]
            )
        except redis.RedisError as exc:
            log.warning("rate_limiter_unavailable", error=type(exc).__name__)
            return 0.0
        granted, wait = reply.split()
        if int(granted) > 0:
            self._local = int(granted) - 1
            self._local_until = time.monotonic() + BATCH_WINDOW
            return 0.0
        return float(wait)

    def held(self) -> float:
        """Return the seconds every call must still hold back after a 429 (0.0: none)."""
        try:
            return float(self._held(keys=self._keys[1:]))
        except redis.RedisError as exc:
            log.warning("rate_limiter_unavailable", error=type(exc).__name__)
            return 0.0

    def hold_off(self, seconds: float) -> None:
        """Make every process wait ``seconds`` from now before its next request."""
        if seconds <= 0:
            return
        self._local = 0  # this process saw the 429: spend nothing it had taken
        try:
            self._hold_off(keys=self._keys[1:], args=[repr(float(seconds))])
        except redis.RedisError as exc:
            log.warning("rate_limiter_unavailable", error=type(exc).__name__)
