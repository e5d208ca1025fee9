"""Traces across real processes, configured by the standard variables alone: `wabahooks serve`
and `wabahooks worker` with OTEL_EXPORTER_OTLP_ENDPOINT export to one OTLP/HTTP collector, and
the receiver's span, the job's and its portal calls share one trace id (carried through Redis)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from service.sim.app import create_sim_app
from tests.support.loop import sim_delivering_to
from tests.support.otlp import Collector
from tests.support.portal import API_KEY, drain, serve
from tests.test_log_schema import ROOT, assert_no_number, env, free_port

SECRET = "trace-processes-secret"
SENDER = "447700900077"


def test_serve_and_worker_export_one_trace_per_event(redis_url: str) -> None:
    collector = Collector()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    receiver = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env(redis_url, WABA_WEBHOOK_SECRET=SECRET, **otel),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.TransportError:
                assert receiver.poll() is None and time.monotonic() < deadline, "no receiver"
                time.sleep(0.05)
        with serve(create_sim_app(sim_delivering_to(url + "/webhook", SECRET))) as sim_url:
            with httpx.Client(base_url=sim_url) as sim:
                inbound = {"from": SENDER, "name": "Ana", "type": "text", "content": "hi there"}
                sim.post("/sim/inbound", json=inbound).raise_for_status()
                drain(sim)
            worker = subprocess.run(
                [sys.executable, "-m", "service", "worker", "--queue", "messages", "--burst"],
                cwd=ROOT,
                env=env(
                    redis_url,
                    WABAHOOKS_HANDLERS="tests.workers.example_handlers:router",
                    WABA_API_URL=sim_url,
                    WABA_API_KEY=API_KEY,
                    **otel,
                ),
                capture_output=True,
                timeout=60,
            )
            assert worker.returncode == 0, worker.stdout.decode()[-2000:]
    finally:
        receiver.terminate()
        receiver.wait(timeout=15)  # its spans are flushed as it exits
        collector.stop()

    spans = collector.all_spans()
    (server,) = [
        span
        for service, span in spans
        if service == "wabahooks-receiver"
        and any(
            a.key == "wabahooks.kind" and a.value.string_value == "message" for a in span.attributes
        )
    ]
    journey = sorted(
        (service, span.name) for service, span in spans if span.trace_id == server.trace_id
    )
    assert journey == [
        ("wabahooks-receiver", "POST /webhook"),
        ("wabahooks-receiver", "send wabahooks:messages"),
        ("wabahooks-worker", "POST /api/v1/messages/mark-read"),
        ("wabahooks-worker", "POST /api/v1/messages/text"),
        ("wabahooks-worker", "handler example:echo"),
        ("wabahooks-worker", "process wabahooks:messages"),
    ]
    (producer,) = [s for _, s in spans if s.name == "send wabahooks:messages"]
    (consumer,) = [s for _, s in spans if s.name == "process wabahooks:messages"]
    assert producer.parent_span_id == server.span_id
    assert consumer.parent_span_id == producer.span_id  # across processes, through the job
    for _, span in spans:
        assert_no_number(str(span), [SENDER])
