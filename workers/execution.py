"""Which run of a job may act: the execution that holds it.

The engine writes :data:`HOLDER_FIELD` = the execution id into the job's hash
(``rq:job:<id>``) when it starts the job; a job re-driven after a worker's death
gets a new execution id. The ledger's writes are conditional on that field
(``workers.ledger``), so an execution that no longer holds its job (its worker was
wrongly thought dead, or the job timed out and was handed back) cannot carry out or
record an effect: its writes raise :class:`Superseded` and nothing is written.

The engine also cancels the token (:meth:`ExecutionToken.cancel`) when it gives up on
an execution (timeout, hand-back at shutdown, its lease lost): the ledger then refuses
locally, without a round trip, which stops a sync handler whose thread cannot be killed;
the calls that handler's thread had waiting on the loop are cancelled with it (``on_cancel``,
``workers.bridge``), and so is a send waiting for its lease (``workers.lease``).

The fence itself (``workers/lua/fence.lua``, ``workers.lifecycle``) is what Redis checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.jobstate import Ending

__all__ = ["HOLDER_FIELD", "LATE_RECORDING", "ExecutionToken", "Superseded"]

#: The named assumption about the portal (its contract gives no bound): a message it
#: accepted appears in its conversation history within this many seconds of the request's
#: end. A run that may have sent without knowing it (an open intent when it was handed
#: back, timed out or got no answer) is re-run only that long after its last request could
#: have ended, so that the re-run's history search finds the send (README "The job
#: lifecycle"). A portal slower than that can still get the send twice.
LATE_RECORDING = 10.0

#: The field of ``rq:job:<id>`` naming the execution that holds the job.
HOLDER_FIELD = "wh:holder"


@dataclass
class ExecutionToken:
    """One execution of one job: what the ledger checks before every write."""

    job_id: str
    execution_id: str
    #: Set by :meth:`cancel` (timeout, hand-back, lease lost): every later effect is refused.
    cancelled: bool = False
    #: Completes an ending the engine makes itself (a timeout, a crash) with what the
    #: runner knows of this execution: the event's archive entry (``workers.running``).
    annotate: Callable[[Ending], Ending] = field(default=lambda ending: ending, repr=False)
    _on_cancel: list[Callable[[], None]] = field(default_factory=list, repr=False)
    #: Ledger steps whose intent is written and whose send is not settled (recorded, or
    #: known not to have gone out): a send whose outcome this execution does not know.
    open_intents: set[str] = field(default_factory=set, repr=False)

    #: ``time.monotonic()`` by which this execution's latest write to the portal ended at the
    #: latest (the send fence's cut-off, ``workers.lease``); None before the first.
    request_ends: float | None = field(default=None, repr=False)

    def intent_opened(self, step: str) -> None:
        self.open_intents.add(step)

    def intent_closed(self, step: str) -> None:
        self.open_intents.discard(step)

    def hold(self, clock: Callable[[], float] = time.monotonic) -> float:
        """Seconds a re-run must wait so that a send this execution may have made is in the
        portal's history by then (:data:`LATE_RECORDING`); 0 without an open intent."""
        if not self.open_intents or self.request_ends is None:
            return 0.0
        return max(0.0, self.request_ends + LATE_RECORDING - clock())

    def cancel(self) -> None:
        """Give up on this execution: refuse its effects, and tell whoever asked
        (:meth:`on_cancel`). Call it on the event loop."""
        if self.cancelled:
            return
        self.cancelled = True
        callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the execution is cancelled (at once if it already was)."""
        if self.cancelled:
            callback()
        else:
            self._on_cancel.append(callback)


class Superseded(Exception):
    """This execution no longer holds its job: its effects are refused."""

    def __init__(self, token: ExecutionToken, why: str = "") -> None:
        self.token = token
        reason = why or "another execution holds the job (or it is gone)"
        super().__init__(
            f"execution {token.execution_id} of job {token.job_id} was superseded ({reason}): "
            "its effects are refused; the job's current execution carries it on"
        )
