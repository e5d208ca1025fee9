"""wabahooks, the queue side: RQ workers that run handlers on received events.

The handler author's API. A handler module::

    from workers import Context, InboundMessage, Router

    router = Router("greetings")

    @router.message(text="hello", ignore_case=True, replies=True)
    def greet(event: InboundMessage, ctx: Context) -> None:
        ctx.portal.send_text(event.sender, f"Hi {event.contact.name or 'there'}!")

Enable it with ``WABAHOOKS_HANDLERS=myapp.greetings``; unit-test it with
``workers.testing.Harness``.
"""

from service.model import (
    Contact,
    Event,
    InboundMessage,
    Location,
    Media,
    StatusUpdate,
    TestEvent,
    UnknownEvent,
)
from workers.context import Context, Store
from workers.dispatch import HandlerFailed, Permanent
from workers.router import STOP, RetryPolicy, Router, StatusTransition

__all__ = [
    "STOP",
    "Contact",
    "Context",
    "Event",
    "HandlerFailed",
    "InboundMessage",
    "Location",
    "Media",
    "Permanent",
    "RetryPolicy",
    "Router",
    "StatusTransition",
    "StatusUpdate",
    "Store",
    "TestEvent",
    "UnknownEvent",
]
