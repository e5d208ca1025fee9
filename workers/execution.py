"""One execution of one job: the right to act for it, which a newer execution can take away.

The engine writes the execution's id into the job hash (:data:`HOLDER_FIELD`) when it
starts a job. A job re-driven after its worker seemed dead gets a new execution; the old
one, if it was alive after all, is *superseded*: the ledger refuses its writes (they are
conditional on the holder), so it can neither carry out nor record an effect. The engine
also sets :attr:`ExecutionToken.cancelled` on a timeout or a hand-back, for the checks
that need no round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HOLDER_FIELD", "ExecutionToken", "Superseded"]

#: The execution holding a job, in its RQ hash (``rq:job:<id>``).
HOLDER_FIELD = "wh:holder"


@dataclass
class ExecutionToken:
    """The right of one execution (one run of one job on one worker) to act for its job."""

    job_id: str
    execution_id: str
    #: Set by the engine when the execution timed out or was handed back.
    cancelled: bool = False


class Superseded(Exception):
    """This execution no longer holds its job: its effects are refused."""
