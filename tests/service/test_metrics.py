"""GET /metrics on a real receiver: request counts by outcome, intake latency, batch sizes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import OUTCOMES, ReceiverMetrics
from service.signature import sign
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import wait_for


def scrape(receiver: Receiver) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the receiver's /metrics, by (name, sorted labels)."""
    response = httpx.get(receiver.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_by_outcome(receiver: Receiver) -> dict[str, float]:
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in scrape(receiver).items()
        if name == "wabahooks_webhook_requests_total"
    }


def post(receiver: Receiver, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(receiver.webhook_url, content=body, headers=headers).status_code


def intake_waiting(r: BytesRedis) -> bool:
    """Whether a client waits in Redis with the intake script (``CLIENT PAUSE`` holds it)."""
    return any(c.get("cmd") == "evalsha" and "b" in c.get("flags", "") for c in r.client_list())


def test_metrics_count_each_outcome_and_time_confirmed_intakes(
    start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    receiver = start_receiver(intake_deadline=3600.0)  # it waits out the paused Redis below
    assert requests_by_outcome(receiver) == dict.fromkeys(OUTCOMES, 0.0)
    first = payloads.signed(payloads.message(), SECRET)
    second = payloads.signed(payloads.message(), SECRET)
    body, headers = first

    # Redis holds the first intake until the test lets it go, at least 10 ms after it came:
    # a time is measured however fast or slow the machine (the event loop's clock ticks in
    # milliseconds), and the total is bounded by the time the test took.
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        r.client_pause(3_600_000, all=False)  # write commands (the intake script) wait
        try:
            held = pool.submit(post, receiver, *first)
            wait_for(lambda: intake_waiting(r), "the first intake to wait for Redis")
            time.sleep(0.01)  # a lower bound on the wait only: a busy machine lengthens it
        finally:
            r.client_unpause()  # the session's Redis, shared by the tests after this one
        held_status = held.result()
    statuses = [
        held_status,
        post(receiver, *second),
        post(receiver, *first),  # duplicate
        post(receiver, body, {**headers, "X-Webhook-Signature": "00" * 32}),
        post(receiver, body, {**headers, "Content-Type": "text/plain"}),
        post(receiver, b"not json", {**headers, "X-Webhook-Signature": sign(b"not json", SECRET)}),
        post(receiver, b"x" * 4_000_000, headers),
    ]

    took = time.monotonic() - started
    assert statuses == [200, 200, 200, 401, 415, 200, 413]
    assert requests_by_outcome(receiver) == {
        **dict.fromkeys(OUTCOMES, 0.0),
        "accepted": 2.0,
        "duplicate": 1.0,
        "bad_signature": 1.0,
        "bad_content_type": 1.0,
        "unparsed": 1.0,  # signed but not JSON: kept raw (service.unparsed)
        "too_large": 1.0,
    }
    samples = scrape(receiver)
    # Three intakes reached Redis and were confirmed (two accepted, one duplicate).
    assert samples[("wabahooks_intake_seconds_count", ())] == 3.0
    assert 0.009 <= samples[("wabahooks_intake_seconds_sum", ())] <= took
    assert samples[("wabahooks_intake_batch_size_count", ())] == 3.0
    assert samples[("wabahooks_intake_batch_size_sum", ())] == 3.0
    assert samples[("wabahooks_unparsed_kept_total", ())] == 1.0
    # The memory gauges: read at start-up (the test server has no maxmemory).
    assert samples[("wabahooks_redis_memory_bytes", (("kind", "used"),))] > 0
    assert samples[("wabahooks_redis_memory_bytes", (("kind", "maxmemory"),))] == 0
    # Scraping did not count as a webhook request, and wrote nothing.
    assert sum(requests_by_outcome(receiver).values()) == 7.0
    assert len(r.keys("wabahooks:claim:*")) == 2


def test_a_refused_timestamp_and_an_unavailable_redis_are_counted(
    start_receiver: Callable[..., Receiver],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    down = start_receiver(redis_url=closed, intake_deadline=0.3)
    strict = start_receiver(replay_tolerance=60)

    assert post(down, *payloads.signed(payloads.message(), SECRET)) == 503
    stale = {**payloads.message(), "timestamp": "2020-01-01T00:00:00Z"}
    assert post(strict, *payloads.signed(stale, SECRET)) == 401

    assert requests_by_outcome(down)["unavailable"] == 1.0
    assert scrape(down)[("wabahooks_intake_seconds_count", ())] == 0.0
    assert requests_by_outcome(strict)["bad_timestamp"] == 1.0
    assert sum(requests_by_outcome(strict).values()) == 1.0


def test_metrics_live_in_the_registry_passed_in() -> None:
    registry = CollectorRegistry()
    metrics = ReceiverMetrics(registry)

    metrics.request("accepted")
    metrics.request("something_new")

    assert registry.get_sample_value(
        "wabahooks_webhook_requests_total", {"outcome": "accepted"}
    ) == (1.0)
    assert registry.get_sample_value(
        "wabahooks_webhook_requests_total", {"outcome": "something_new"}
    ) == (1.0)
    # A second app's metrics do not share counters with the first.
    assert ReceiverMetrics().registry.get_sample_value(
        "wabahooks_webhook_requests_total", {"outcome": "accepted"}
    ) == (0.0)
