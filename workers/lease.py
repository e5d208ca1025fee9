"""An execution's lease, as its own worker sees it: the send-time check of the fence.

The engine renews each execution's lease in Redis every ``lease / BEATS_PER_LEASE`` seconds;
any worker re-drives a job whose lease ended :func:`redrive_after` seconds ago (5 s). A worker that
froze (SIGSTOP, a paused VM, a handler blocking the loop) cannot know that on waking, so
before every request that writes to the portal (``service.portal.fence``) :class:`Lease`
checks what is left of the lease, on this process's monotonic clock, counted from *before*
the last renewal that Redis took (so never more than Redis counts):

- the request may start only if ``left > timeout + margin``, and it is cut off (as a
  read timeout: an unknown outcome for a send) once ``left - margin`` has passed; so it
  has ended, or been abandoned, a margin before the lease ends, and twice the margin
  before any re-drive;
- otherwise it waits for the next renewal (a frozen worker's renewal, on waking, either
  finds the job still its own, or tells it that it was re-driven: the execution is then
  cancelled and the send refused with :class:`~workers.execution.Superseded`).

What remains is a pause *during* a request, after its bytes left: the portal carries the
send out, and the re-drive's history search finds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from workers.execution import LATE_RECORDING, ExecutionToken, Superseded

__all__ = [
    "BEATS_PER_LEASE",
    "SEND_MARGIN",
    "Lease",
    "check_lease",
    "redrive_after",
    "send_margin",
]

log = structlog.get_logger("wabahooks.worker")

#: Seconds between the latest end of a request and its lease's end, and again between the
#: lease's end and its re-drive (:func:`send_margin`: less for a lease under 30 s).
SEND_MARGIN = 5.0
#: Renewals per lease length: renewed every lease / 4 s, so right before a renewal 3/4 of the
#: lease is left, which must exceed a request's timeout plus the margin (:func:`check_lease`).
BEATS_PER_LEASE = 4


def send_margin(lease: float) -> float:
    """The margin for a lease of ``lease`` s: :data:`SEND_MARGIN`, or a sixth of a shorter
    lease (5 s for the default 30 s)."""
    return min(SEND_MARGIN, lease / 6)


def redrive_after(lease: float) -> float:
    """Seconds after a lease's end before another worker may re-drive its job: the margin,
    and at least long enough that the job's last request ended :data:`LATE_RECORDING`
    seconds before (it was cut off a margin before the lease's end), so that the re-run's
    history search finds a send the dead worker made (5 s with the default lease)."""
    margin = send_margin(lease)
    return max(margin, LATE_RECORDING - margin)


def check_lease(lease: float, request_timeout: float) -> None:
    """Refuse (ValueError) a lease too short for the portal's request timeout: between two
    renewals a request must still fit, with the margin, or every send would wait."""
    margin = send_margin(lease)
    least = (request_timeout + margin) * BEATS_PER_LEASE / (BEATS_PER_LEASE - 1)
    if lease <= least:
        raise ValueError(
            f"WABAHOOKS_LEASE={lease:g} s is too short for the portal's request timeout "
            f"(WABA_API_TIMEOUT={request_timeout:g} s): a send may start only while more than "
            f"timeout + {margin:g} s of its lease is left, and the lease is renewed every "
            f"lease/{BEATS_PER_LEASE}; use a longer lease or a shorter timeout"
        )


class Lease:
    """One execution's lease (``length`` s), renewed at :meth:`renewed`; the send fence of
    that execution (``service.portal.fence.SendFence``)."""

    def __init__(
        self,
        token: ExecutionToken,
        length: float,
        renewed_at: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.length = length
        #: ``clock()`` taken before the latest renewal (or the start) that Redis took.
        self.renewed_at = renewed_at
        self.margin = send_margin(length)
        self._clock = clock
        self._changed = asyncio.Event()
        token.on_cancel(self._changed.set)

    def left(self) -> float:
        """Seconds of the lease left, at most (by this process's clock)."""
        return self.renewed_at + self.length - self._clock()

    def renewed(self, at: float) -> None:
        """Redis took a renewal sent at ``at`` (``clock()`` before sending it)."""
        self.renewed_at = max(self.renewed_at, at)
        self._changed.set()

    async def clearance(self, needed: float) -> float:
        """Wait until a request of up to ``needed`` s may start (see the module docstring);
        return how long it may take. Raise Superseded once the execution was cancelled."""
        waited = False
        while True:
            if self.token.cancelled:
                raise Superseded(self.token, "its lease was lost or it was cancelled")
            room = self.left() - self.margin
            if room > needed:
                if waited:
                    log.info("send.lease_renewed", job_id=self.token.job_id)
                self.token.request_ends = self._clock() + room  # the cut-off, at the latest
                return room
            if not waited:
                waited = True
                log.warning(
                    "send.waiting_for_lease",
                    job_id=self.token.job_id,
                    lease_left_s=round(self.left(), 3),
                    needed_s=needed + self.margin,
                )
            self._changed.clear()
            await self._changed.wait()

    def ended(self) -> None:
        """The request let start is over: it ended now, not at its cut-off."""
        self.token.request_ends = self._clock()
