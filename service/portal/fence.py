"""The send fence: who may let a request to the portal start, asked by the async driver.

The portal client is shared by every job a worker runs; whether one of them may still write
to the portal is a property of that job's execution, not of the client. So the driver
(``service.portal.transport.adrive``) asks the fence of the running task's context
(:data:`current_fence`, set by the worker engine for each execution, and copied into the
threads of plain ``def`` handlers and the calls they make back on the loop) before every
request that is not a GET. Outside a worker (the CLI, a test) there is none and nothing is
asked.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["SendFence", "current_fence"]


class SendFence(Protocol):
    """Lets requests start while the caller may still act (``workers.lease.Lease`` is one)."""

    async def clearance(self, needed: float) -> float:
        """Wait until a request that may take ``needed`` seconds can start; return the most
        seconds it may take (at least ``needed``). Raise to refuse it for good."""
        ...

    def ended(self) -> None:
        """The request that :meth:`clearance` let start is over (answered, failed, cut off
        or cancelled)."""
        ...


#: The fence of the execution running in this context (None: outside a worker's job).
current_fence: ContextVar[SendFence | None] = ContextVar("wabahooks_send_fence", default=None)
