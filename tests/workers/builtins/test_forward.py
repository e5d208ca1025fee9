"""Forwarding: address checks (SSRF), signed HTTP forwards, WhatsApp forwards to agents."""

from __future__ import annotations

import json

import httpx
import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from service.signature import verify
from tests.support.builtins import AGENT, CUSTOMER, config, inbound, text
from tests.support.loop import running_loop
from tests.support.portal import Collector, serve
from workers import HandlerFailed
from workers.builtins import forward, safehttp
from workers.testing import Harness, status_update

PUBLIC = "93.184.215.14"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fe80::1%eth0", "link-local (cloud metadata)"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "non-public"),
        ("224.0.0.1", "multicast"),
        (PUBLIC, None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str | None) -> None:
    assert safehttp.refusal(address) == reason


def test_every_address_a_name_resolves_to_is_checked() -> None:
    url = httpx.URL("https://hooks.example.com/in")
    with pytest.raises(safehttp.RefusedDestination, match="10.0.0.5, a private address"):
        safehttp.resolve(url, allow_private=False, resolver=lambda h, p: [PUBLIC, "10.0.0.5"])
    assert safehttp.resolve(url, allow_private=False, resolver=lambda h, p: [PUBLIC]) == PUBLIC


def test_a_hostname_resolving_to_loopback_is_refused_unless_opted_in() -> None:
    url = httpx.URL("https://localhost:8443/in")  # the system resolver: 127.0.0.1 / ::1
    with pytest.raises(safehttp.RefusedDestination, match="loopback"):
        safehttp.resolve(url, allow_private=False)
    assert safehttp.refusal(safehttp.resolve(url, allow_private=True)) == "loopback"


HTTP = """
[handlers.forward]
[[handlers.forward.http]]
name = "crm"
url = "https://crm.example.com/in"
secret = "crm-secret"
events = ["message"]
types = ["text"]
"""


def pinned_harness(answer: int, seen: list[httpx.Request]) -> Harness:
    """Forwarding through a mock transport; the name "resolves" to a public address."""

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answer)

    cfg = config(HTTP)
    assert cfg.forward is not None
    client = httpx.Client(transport=httpx.MockTransport(respond))
    return Harness(forward.build(cfg.forward, client=client, resolver=lambda h, p: [PUBLIC]))


def test_the_request_goes_to_the_checked_address_with_the_original_host() -> None:
    seen: list[httpx.Request] = []
    h = pinned_harness(204, seen)
    event = text("hello")
    h.deliver(event)
    h.deliver(inbound("image", {"id": "1"}))  # filtered out: types = ["text"]
    h.deliver(status_update("wamid.OUT1", "read"))  # filtered out: events = ["message"]
    assert len(seen) == 1
    request = seen[0]
    assert (request.url.host, request.headers["host"]) == (PUBLIC, "crm.example.com")
    assert request.extensions["sni_hostname"] == "crm.example.com"
    assert request.headers["x-wabahooks-event-key"] == event.event_key
    assert verify(request.content, request.headers["x-webhook-signature"], ["crm-secret"])
    assert json.loads(request.content) == event.envelope


def test_a_non_2xx_fails_with_the_status_in_the_reason() -> None:
    seen: list[httpx.Request] = []
    h = pinned_harness(503, seen)
    with pytest.raises(HandlerFailed, match="crm.example.com answered 503") as caught:
        h.deliver(text("hello"))
    assert not caught.value.permanent  # retried with the job's backoff


def test_a_private_target_fails_permanently_without_the_opt_in() -> None:
    cfg = config(HTTP)
    assert cfg.forward is not None
    h = Harness(forward.build(cfg.forward, resolver=lambda h, p: ["169.254.169.254"]))
    with pytest.raises(HandlerFailed, match="169.254.169.254, a link-local") as caught:
        h.deliver(text("hello"))
    assert caught.value.permanent


def test_descriptions_of_other_message_types() -> None:
    assert forward.describe(inbound("image", {"id": "1", "caption": "receipt"})) == (
        "[image] receipt"
    )
    assert forward.describe(inbound("location", {"latitude": 19.07, "longitude": 72.87})) == (
        "[location] 19.07, 72.87"
    )
    assert forward.describe(inbound("button", {"text": "Yes", "payload": "Y"})) == "[button] Yes"
    assert forward.describe(inbound("reaction", {"message_id": "w", "emoji": "👍"})) == (
        "[reaction] 👍"
    )


def test_a_forward_is_signed_and_not_repeated_when_the_job_is_retried(redis_url: str) -> None:
    first, second = Collector(), Collector()
    second.statuses = [500]  # the second endpoint fails once: the job is retried
    with serve(first.app()) as first_url, serve(second.app()) as second_url:
        settings = f"""
[handlers.forward]
allow_private_targets = true
[[handlers.forward.http]]
name = "first"
url = "{first_url}/webhook"
secret = "first-secret"
[[handlers.forward.http]]
name = "second"
url = "{second_url}/webhook"
secret = "second-secret"
events = ["message"]
"""
        with running_loop(redis_url, config=settings) as loop:
            message_id = loop.inbound("hello")
            loop.work()
            retried = loop.run_scheduled()
            loop.work()

    assert retried == 1
    assert len(first.received) == 1  # accepted on the first attempt: not forwarded again
    assert len(second.received) == 2
    for collector, secret in [(first, "first-secret"), (second, "second-secret")]:
        headers, body = collector.received[-1]
        assert verify(body, headers["x-webhook-signature"], [secret])
        assert headers["x-wabahooks-event-key"] == f"message:{message_id}"
        assert json.loads(body)["data"]["messageId"] == message_id


WHATSAPP = f"""
[handlers.forward]
[[handlers.forward.whatsapp]]
to = "{AGENT}"
"""


def test_messages_reach_the_agent_but_the_agents_own_are_not_forwarded(redis_url: str) -> None:
    with running_loop(redis_url, config=WHATSAPP) as loop:
        loop.inbound("I am on shift", sender=AGENT, name="Agent Smith")  # opens the window
        loop.inbound("where is my order?")
        loop.inbound("", type="image", content={"id": "9", "caption": "the box"})
        loop.work()
        to_agent = loop.history(AGENT)["sent"]
        to_customer = loop.history(CUSTOMER)["sent"]

    assert [m["message"] for m in to_agent] == [
        "From John Doe (+********3210): where is my order?",
        "From John Doe (+********3210): [image] the box",
    ]
    assert to_customer == []


def test_the_agents_closed_window_fails_the_job_once_saying_how_to_fix_it(
    redis_url: str,
) -> None:
    with running_loop(redis_url, config=WHATSAPP) as loop:
        loop.inbound("hello")  # the agent has never written: their window is closed
        loop.work()
        queue = Queue("wabahooks:messages", connection=loop.r, serializer=JSONSerializer)
        failed = [queue.fetch_job(j) for j in queue.failed_job_registry.get_job_ids()]
        retried = loop.run_scheduled()
        history = loop.history(AGENT)

    assert retried == 0
    assert len(failed) == 1 and failed[0] is not None
    result = failed[0].latest_result()
    reason = (result.exc_string if result else "") or ""
    assert "outside its 24-hour messaging window" in reason
    assert "have the agent send any message to the business number" in reason
    assert history["sent"] == []
