"""The send rate shared by every worker process: learned from the portal's 429s, kept in Redis.

``RateLimiter`` (blocking, for ``PortalClient``) and ``AsyncRateLimiter`` (``redis.asyncio``,
for ``AsyncPortalClient``) run the same Lua scripts, atomically, on Redis' own clock
(``TIME``), so processes on different hosts agree. Build either with ``from_settings``.

**What is paced.** Sends (``send_text``, ``create_template``) take a permit from a token bucket:
up to ``burst`` at once, refilled at the *effective rate*. Mark-reads and reads are not paced
(a read receipt is not a message, and an unpaced call costs no Redis round trip), but every
call waits out the shared hold-off after a 429.

**The rate learns.** ``WABA_API_RATE`` is the ceiling (default 80/s, Meta's default per
number). When any process sees a 429 (:meth:`hold_off`):

- every process holds back for Retry-After (or 1 s), all calls included;
- the effective rate halves (never below :data:`MIN_RATE`), the bucket empties, and the
  burst shrinks with the rate; 429s answered within that hold-off (plus
  :data:`CALM_SECONDS`) to requests already in flight do not halve it again;
- after the hold-off the rate climbs back linearly, by ceiling / :data:`CLIMB_SECONDS` per
  second (80/s: +1.33/s each second, 40 → 80 in 30 s), never above the ceiling.

:func:`limiter_state` reads the effective rate and hold-off (``wabahooks status`` shows them).

**Per-contact pacing** (off by default; ``WABA_API_CONTACT_INTERVAL``): a second bucket per
contact, ``contact_burst`` sends at once then one per ``contact_interval`` seconds (WhatsApp's
guidance: about one message per 6 s to one user, short bursts allowed), taken atomically with
the shared permit (one round trip per send). A wait longer than the retry budget left makes the
client raise ``RateLimited`` with ``retry_after`` (the job is rescheduled) instead of sleeping.

**Batches at high rates.** Without per-contact pacing, a process takes up to
:data:`BATCH_WINDOW` seconds' worth of tokens at once (at most :data:`MAX_BATCH`) and spends
them locally within that window, dropping what it did not use; one refill runs at a time
(threads, or tasks, wait for it rather than each taking a batch). The hold-off an unpaced call
checks is likewise read at most once per :data:`HELD_WINDOW` per process: a 429 seen by
another process is honoured within that window.

If Redis cannot be reached, a send's permit is refused: :meth:`RateLimiter.acquire` raises
the Redis error (logged as ``rate_limiter_unavailable``), so the send does not go out and its
job is retried. A worker that froze and wakes with its Redis connection timed out must not send
on the strength of a failed read. What is not a send fails open (logging a warning): the
hold-off check of a mark-read or a read, and the report of a 429 (the portal still answers
429 if we are too fast, and the client backs off on its own).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Required, TypedDict, Unpack

import redis
import structlog

from service.keys import Keys, limiter_contact, limiter_keys
from service.portal.config import DEFAULT_CONTACT_BURST, PortalSettings

__all__ = ["LimiterState", "RateLimiter", "limiter_state"]

log = structlog.get_logger("wabahooks.portal.ratelimit")

DEFAULT_PREFIX = Keys().portal()
#: Seconds' worth of tokens one process may take at once (and must use within).
BATCH_WINDOW = 0.05
#: The most tokens one process takes at once.
MAX_BATCH = 16
#: How long a process trusts the hold-off it last read before an unpaced call reads it again.
HELD_WINDOW = 0.25
#: The lowest effective rate a 429 can bring (sends/s), unless the ceiling is lower.
MIN_RATE = 1.0
#: After a cut, the rate regains the whole ceiling in this many seconds (linearly).
CLIMB_SECONDS = 60.0
#: After a hold-off ends, 429s within this many seconds do not halve the rate again.
CALM_SECONDS = 1.0


def _script(name: str) -> str:
    """The Lua script ``service/portal/lua/<name>.lua``, after the shared ``common.lua``
    (Redis' clock and the effective rate)."""
    folder = files("service.portal").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    return common + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


_ACQUIRE = _script("acquire")
_HOLD_OFF = _script("hold_off")
_STATE = _script("state")


@dataclass(frozen=True, slots=True)
class LimiterState:
    """The shared send rate now: ``rate`` sends/s of ``ceiling``; calls held back ``held`` s."""

    rate: float
    ceiling: float
    held: float

    def describe(self) -> str:
        """One line for ``wabahooks status``."""
        line = f"portal send rate: {self.rate:.3g}/s of {self.ceiling:g}/s (WABA_API_RATE)"
        if self.rate < self.ceiling:
            line += ", climbing back after a 429"
        if self.held > 0:
            line += f"; every call held off {self.held:.1f} s more"
        return line


class LimiterOptions(TypedDict, total=False):
    """What both limiters are built with, as keywords (defaults: :class:`_Limiter`)."""

    rate: Required[float]
    burst: float | None
    prefix: str
    contact_interval: float | None
    contact_burst: float
    clock: Callable[[], float]


class _Limiter:
    """What both limiters share: settings, keys, script arguments, the local batch."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float | None = None,
        prefix: str = DEFAULT_PREFIX,
        contact_interval: float | None = None,
        contact_burst: float = DEFAULT_CONTACT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be greater than 0")
        if contact_interval is not None and not contact_interval > 0:
            raise ValueError("contact_interval must be greater than 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.contact_interval = contact_interval
        self.contact_burst = max(1.0, contact_burst)
        self._prefix = prefix
        self._keys = limiter_keys(prefix)
        self._climb = rate / CLIMB_SECONDS
        self._batch = max(1, min(MAX_BATCH, int(self.rate * BATCH_WINDOW)))
        self._clock = clock
        self._local = 0  # tokens taken from the bucket, not yet spent
        self._local_until = 0.0  # clock() after which they are dropped
        self._held_until = 0.0  # clock() until which every call holds back, as last read
        self._held_read = float("-inf")  # clock() when it was read

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, burst={self.burst})"

    def _acquire_args(self, contact: str | None) -> tuple[list[str], list[Any]]:
        args: list[Any] = [repr(self.rate), repr(self.burst), 1, repr(self._climb)]
        if contact is None or self.contact_interval is None:
            args[2] = self._batch
            return self._keys, args
        args += [repr(1.0 / self.contact_interval), repr(self.contact_burst)]
        return [*self._keys, limiter_contact(self._prefix, contact)], args

    def _paced_per_contact(self, contact: str | None) -> bool:
        return contact is not None and self.contact_interval is not None

    def _take_local(self) -> bool:
        if self._local > 0 and self._clock() < self._local_until:
            self._local -= 1
            return True
        return False

    def _granted(self, reply: bytes | str, *, batch: bool) -> float:
        """Read the acquire script's reply; keep a batch's spare tokens (under the lock)."""
        text = reply.decode() if isinstance(reply, bytes) else reply
        granted, wait, why, _rate = text.split()
        now = self._clock()
        if why == "held":
            self._saw_hold(float(wait), now)
        if int(granted) > 0:
            if batch:
                self._local, self._local_until = int(granted) - 1, now + BATCH_WINDOW
            return 0.0
        return float(wait)

    def _held_cached(self) -> float | None:
        now = self._clock()
        if now - self._held_read < HELD_WINDOW:
            return max(0.0, self._held_until - now)
        return None

    def _saw_hold(self, seconds: float, now: float) -> None:
        self._held_until, self._held_read = now + seconds, now

    def _state_args(self) -> list[Any]:
        return [repr(self.rate), repr(self._climb)]

    def _hold_off_args(self, seconds: float) -> tuple[list[str], list[Any]]:
        self._local = 0  # this process saw the 429: spend nothing it had taken
        self._saw_hold(seconds, self._clock())
        floor = min(self.rate, MIN_RATE)
        args = [repr(float(seconds)), repr(self.rate), repr(self._climb), repr(floor)]
        return [self._keys[1], self._keys[2], self._keys[0]], [*args, repr(CALM_SECONDS)]


def _unavailable(exc: Exception) -> None:
    log.warning("rate_limiter_unavailable", error=type(exc).__name__)


class RateLimiter(_Limiter):
    """The shared send rate for blocking callers (threads included): ``service.portal.Limiter``."""

    def __init__(self, client: redis.Redis, **options: Unpack[LimiterOptions]) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()  # the local batch and hold-off, and one refill at a time
        self._acquire = client.register_script(_ACQUIRE)
        self._hold_off = client.register_script(_HOLD_OFF)
        self._state = client.register_script(_STATE)

    @classmethod
    def from_settings(
        cls, client: redis.Redis, settings: PortalSettings, *, prefix: str = DEFAULT_PREFIX
    ) -> RateLimiter:
        """Return the limiter ``settings`` describe (rate, burst, per-contact pacing)."""
        return cls(client, **_options(settings, prefix))

    def acquire(self, contact: str | None = None) -> float:
        """Take a permit to send: 0.0 if the send may go now, else the seconds to wait."""
        if self._paced_per_contact(contact):
            return self._run_acquire(contact)
        with self._lock:
            if self._take_local():
                return 0.0
            return self._run_acquire(None)

    def _run_acquire(self, contact: str | None) -> float:
        keys, args = self._acquire_args(contact)
        try:
            reply = self._acquire(keys=keys, args=args)
        except redis.RedisError as exc:
            _unavailable(exc)
            raise  # no permit, no send: the job is retried
        return self._granted(reply, batch=contact is None)

    def held(self) -> float:
        """Return the seconds every call must still hold back after a 429 (0.0: none)."""
        with self._lock:
            cached = self._held_cached()
            if cached is not None:
                return cached
            try:
                _rate, held = _split(self._state(keys=self._keys[1:], args=self._state_args()))
            except redis.RedisError as exc:
                _unavailable(exc)
                held = 0.0
            self._saw_hold(held, self._clock())
            return held

    def hold_off(self, seconds: float) -> None:
        """Make every process wait ``seconds`` from now, and halve the shared send rate."""
        if seconds <= 0:
            return
        with self._lock:
            keys, args = self._hold_off_args(seconds)
        try:
            self._hold_off(keys=keys, args=args)
        except redis.RedisError as exc:
            _unavailable(exc)

    def state(self) -> LimiterState:
        """Return the effective send rate and hold-off, as every process sees them."""
        rate, held = _split(self._state(keys=self._keys[1:], args=self._state_args()))
        return LimiterState(rate=rate, ceiling=self.rate, held=held)


def _options(settings: PortalSettings, prefix: str) -> LimiterOptions:
    return {
        "prefix": prefix,
        "rate": settings.rate,
        "burst": settings.burst,
        "contact_interval": settings.contact_interval,
        "contact_burst": settings.contact_burst,
    }


def _split(reply: bytes | str) -> tuple[float, float]:
    text = reply.decode() if isinstance(reply, bytes) else reply
    first, second = text.split()
    return float(first), float(second)


def limiter_state(
    client: redis.Redis, ceiling: float, *, prefix: str = DEFAULT_PREFIX
) -> LimiterState:
    """Return the shared send rate and hold-off now, for a ``ceiling`` (``WABA_API_RATE``)."""
    return RateLimiter(client, rate=ceiling, prefix=prefix).state()
