"""What the policy's end-to-end tests share: a configuration with an agent, and helpers."""

from __future__ import annotations

import time
from typing import Any

from rq import Queue
from rq.serializers import JSONSerializer

from service.portal import PortalClient, PortalSettings
from tests.support.loop import Loop
from tests.support.portal import API_KEY
from workers.runtime import Runtime

CUSTOMER, AGENT = "919876543210", "14155550123"
THANKS = "Thanks, we got it."


def config(*, idle: int = 1800, detect_inbox: bool = True, extra: str = "") -> str:
    """Auto-reply (default answer, no cooldown), forwarding to one agent, and the policy."""
    return f"""
[agents]
numbers = ["{AGENT}"]

[handlers.auto_reply]
default = "{THANKS}"
cooldown = 0

[handlers.forward]
[[handlers.forward.whatsapp]]
to = "{AGENT}"

[policy.handover]
idle = {idle}
detect_inbox = {str(detect_inbox).lower()}
{extra}
"""


def texts(loop: Loop, phone: str = CUSTOMER) -> list[str]:
    """What the portal sent to ``phone``, in order."""
    return [m["message"] for m in loop.history(phone)["sent"]]


def sent_to(loop: Loop, phone: str) -> list[dict[str, Any]]:
    return [m for m in loop.history(phone)["sent"] if m["to"] == phone]


def reply(loop: Loop, sender: str, text: str, context: str | None = None) -> str:
    """``sender`` writes ``text`` (as a WhatsApp reply to ``context``, if given)."""
    body: dict[str, Any] = {"from": sender, "name": "Someone", "type": "text", "content": text}
    if context is not None:
        body["context"] = context
    response = loop.sim.post("/sim/inbound", json=body)
    response.raise_for_status()
    loop.settle()
    return str(response.json()["messageId"])


def send_from_portal_inbox(loop: Loop, to: str, text: str) -> str:
    """Someone answers through the portal itself (its API, outside wabahooks)."""
    settings = PortalSettings(
        api_url=str(loop.sim.base_url).rstrip("/") + "/api/v1", api_key=API_KEY
    )
    with PortalClient(settings) as client:
        return client.send_text(to, text).message_id


def failed(loop: Loop, queue: str = "wabahooks:messages") -> list[str]:
    registry = Queue(queue, connection=loop.r, serializer=JSONSerializer).failed_job_registry
    return list(registry.get_job_ids())


def advance(loop: Loop, seconds: float) -> None:
    """Move the simulator's clock (the portal's, and the time stamped on messages)."""
    loop.sim.post("/sim/clock", json={"advance": seconds}).raise_for_status()


def written_ago(loop: Loop, sender: str, text: str, seconds: float) -> str:
    """``sender`` wrote ``text`` ``seconds`` ago (the simulator's clock, moved and back)."""
    advance(loop, -seconds)
    try:
        return reply(loop, sender, text)
    finally:
        advance(loop, seconds)


# The tests run one burst of the workers after each message: an agent's message and a
# customer's are different conversations and would otherwise run concurrently, in no set order.


class Clock:
    """The policy's clock in a test: our time plus ``offset`` seconds (moved by the test)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def use_clock(loop: Loop, clock: Clock) -> None:
    """Give every worker runtime the loop builds from now on the policy clock ``clock``."""
    build = loop.runtime

    def with_clock() -> Runtime:
        runtime = build()
        assert runtime.policy is not None, "the loop's configuration has no [policy]"
        runtime.policy.clock = clock
        return runtime

    loop.runtime = with_clock
