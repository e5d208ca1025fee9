"""A CPU budget for a costly path that anyone can trigger: the receiver's ``JSON.stringify``
signature fallback (``service.app``, README "Limits").

A token bucket of seconds: refilled at ``share`` seconds per second up to ``burst``; the path
runs while there is any left and is charged the time it took (wall time: what the event loop
was blocked for, whatever else the machine was doing).
"""

from __future__ import annotations

import time

__all__ = ["REFORMAT_CPU_BURST", "REFORMAT_CPU_SHARE", "CpuBudget"]

#: Share of the event loop's time the JSON.stringify fallback may take, and its burst in
#: seconds: anyone can send a body that fails the raw check, so without a budget a few clients
#: re-serialising 16 KiB bodies back to back (~20 ms each) keep the loop busy and delay every
#: genuine webhook (measured: p50 1.2 s). The portal normally sends exactly the bytes it
#: signed, so only a body re-formatted in transit needs the fallback; over budget it gets
#: 503 and the portal's retry comes later.
REFORMAT_CPU_SHARE = 0.1
REFORMAT_CPU_BURST = 0.25


class CpuBudget:
    """Seconds of CPU a costly path may use: refilled at ``share`` per second, up to ``burst``."""

    def __init__(self, share: float, burst: float) -> None:
        self._share = share
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def available(self) -> bool:
        """Return whether the path may run now."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._share)
        self._at = now
        return self._tokens > 0

    def spend(self, seconds: float) -> None:
        """Count ``seconds`` of CPU the path took."""
        self._tokens -= seconds
