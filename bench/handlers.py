"""Handlers and jobs for bench/workers.py."""

from __future__ import annotations

from workers import Context, InboundMessage, Router

noop = Router("bench-noop")
mark_read = Router("bench-mark-read")


@noop.message()
def do_nothing(event: InboundMessage, ctx: Context) -> None:
    pass


@mark_read.message()
def mark(event: InboundMessage, ctx: Context) -> None:
    ctx.portal.mark_read(event.message_id)


def noop_job(n: int) -> None:
    """The stock baseline's job: nothing."""
