"""wabahooks, the queue side: RQ workers that run handlers on received events.

The handler author's API. A handler module::

    from workers import AsyncContext, Context, InboundMessage, Router

    router = Router("greetings")

    @router.message(text="hello", ignore_case=True, replies=True)
    async def greet(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, f"Hi {event.contact.name or 'there'}!")

    @router.message(text="bye", ignore_case=True, replies=True)
    def farewell(event: InboundMessage, ctx: Context) -> None:  # runs in a thread
        ctx.portal.send_text(event.sender, "Bye!")

Enable it with ``WABAHOOKS_HANDLERS=myapp.greetings``; unit-test it with
``workers.testing.Harness``.
"""

from service.typedevents import (
    Contact,
    Event,
    InboundMessage,
    Location,
    Media,
    StatusUpdate,
    TestEvent,
    UnknownEvent,
)
from workers.coalesce import Burst, Window
from workers.context import AsyncContext, AsyncStore, Context, Store
from workers.conversation import StepTimeout
from workers.dispatch import HandlerFailed, Permanent
from workers.execution import Superseded
from workers.policy.errors import OptedOut
from workers.policy.state import MessagingWindow
from workers.router import STOP, RetryPolicy, Router, StatusTransition

__all__ = [
    "STOP",
    "AsyncContext",
    "AsyncStore",
    "Burst",
    "Contact",
    "Context",
    "Event",
    "HandlerFailed",
    "InboundMessage",
    "Location",
    "Media",
    "MessagingWindow",
    "OptedOut",
    "Permanent",
    "RetryPolicy",
    "Router",
    "StatusTransition",
    "StatusUpdate",
    "StepTimeout",
    "Store",
    "Superseded",
    "TestEvent",
    "UnknownEvent",
    "Window",
]
