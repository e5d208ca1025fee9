"""Traces are off unless the OTEL_* variables ask (``service.tracingsetup``); off, they cost a
no-op and import no OpenTelemetry; on, spans reach an OTLP collector configured by the standard
variables alone. (The spans of an event's journey: tests/workers/test_tracing.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import tracing
from service.portal import PortalError, endpoints
from service.settings import ConfigError
from service.tracingsetup import configure_tracing, tracing_requested
from tests.support.otlp import Collector

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "requested"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
        # Metrics or logs alone ask for no traces.
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_traces_are_off_unless_the_standard_variables_ask(
    env: dict[str, str], requested: bool
) -> None:
    assert tracing_requested(env) is requested
    if not requested:
        assert configure_tracing("wabahooks-test", env) is False
        assert not tracing.active()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER names 'zipkin'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL is 'http/json'",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL is 'udp'",
        ),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        configure_tracing("wabahooks-test", env)
    assert not tracing.active()


def test_off_every_helper_is_a_shared_no_op() -> None:
    assert not tracing.active()
    assert tracing.server_span({"type": "http", "headers": []}) is tracing.NO_SPAN
    assert tracing.consumer_span({}, job_id="j", queue="q", attempt=1) is tracing.NO_SPAN
    assert tracing.handler_span("h") is tracing.NO_SPAN
    assert tracing.traceparent() is None
    http = object()
    call = endpoints.templates()
    assert tracing.portal_requester(http, call, "http://portal") is http  # type: ignore[arg-type]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WABA"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_off_our_hot_paths_import_no_opentelemetry() -> None:
    # redis-py 8 imports the OpenTelemetry packages it finds installed (for its own opt-in
    # metrics): what counts is that our modules add none, the tracer SDK above all.
    code = (
        "import sys\n"
        "import redis, redis.asyncio\n"
        "loaded = lambda: {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "before = loaded()\n"
        "import service.app, service.portal.aclient, workers.running, workers.dispatch\n"
        "from service.tracingsetup import configure_tracing\n"
        "assert configure_tracing('x') is False\n"
        "print(sorted(loaded() - before), 'opentelemetry.sdk.trace' in sys.modules)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] False"


@pytest.fixture
def otlp() -> Iterator[Collector]:
    running = Collector()
    try:
        yield running
    finally:
        running.stop()


TRACE_ONE = (
    "from service import tracing\n"
    "from service.tracingsetup import configure_tracing\n"
    "print(configure_tracing('wabahooks-test'))\n"
    "with tracing.handler_span('mine:greet'):\n"
    "    pass\n"
)


def test_the_otlp_endpoint_variable_alone_sends_spans_to_the_collector(
    otlp: Collector,
) -> None:
    done = run_python(TRACE_ONE, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    # Exported at exit (the batch processor is flushed), over HTTP/protobuf by default.
    assert otlp.paths == ["/v1/traces"]
    assert otlp.spans() == [("wabahooks-test", "handler mine:greet")]


def test_otel_service_name_and_sdk_disabled_are_honoured(otlp: Collector) -> None:
    named = run_python(TRACE_ONE, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url, OTEL_SERVICE_NAME="bot-eu")
    assert named.returncode == 0, named.stderr
    assert otlp.spans() == [("bot-eu", "handler mine:greet")]
    disabled = run_python(TRACE_ONE, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url, OTEL_SDK_DISABLED="true")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == "False"
    assert len(otlp.requests) == 1  # nothing more was sent


@pytest.mark.parametrize("command", [["serve"], ["worker", "--burst"]])
def test_serve_and_worker_refuse_a_bad_otel_setting_with_exit_2(
    command: list[str], redis_url: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", *command],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WABA"))},
            "REDIS_URL": redis_url,
            "WABA_WEBHOOK_SECRET": "s",
            "WABAHOOKS_CONFIG": "",
            "WABAHOOKS_ALLOW_NO_HANDLERS": "1",  # the worker would refuse to start without
            "OTEL_TRACES_EXPORTER": "jaeger",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "wabahooks: OTEL_TRACES_EXPORTER names 'jaeger', which wabahooks does not know: use "
        "otlp, console, none (comma-separated)"
    ]


def test_the_console_exporter_prints_spans() -> None:
    done = run_python(TRACE_ONE, OTEL_TRACES_EXPORTER="console")
    assert done.returncode == 0, done.stderr
    assert '"name": "handler mine:greet"' in done.stdout
    assert '"service.name": "wabahooks-test"' in done.stdout


def test_portal_urls_with_a_phone_number_are_traced_by_template_only() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from service.portal import AsyncPortalClient, PortalSettings
    from tests.support.portal import FAST_RETRY

    phone = "919812345678"
    page: dict[str, Any] = {"data": []}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "boom":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=page)

    async def calls() -> None:
        settings = PortalSettings(api_url="https://portal.example:8443/api/v1", api_key="k")
        client = AsyncPortalClient(
            settings, retry=FAST_RETRY, transport=httpx.MockTransport(answer)
        )
        async with client:
            await client.messages(phone, cursor="c1", limit=5)
            with pytest.raises(PortalError):
                await client.messages(phone, cursor="boom")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.activate(provider, b"k" * 32)
    try:
        asyncio.run(calls())
    finally:
        tracing.deactivate()
    spans = exporter.get_finished_spans()
    assert len(spans) == 1 + FAST_RETRY.max_attempts  # the failing call is tried again
    for span in spans:
        attributes = dict(span.attributes or {})
        assert span.name == "GET /api/v1/conversations/{phone_number}/messages"
        assert attributes["url.template"] == "/api/v1/conversations/{phone_number}/messages"
        assert attributes["url.full"] == (
            "https://portal.example:8443/api/v1/conversations/REDACTED/messages"
        )
        assert attributes["server.address"] == "portal.example"
        assert attributes["server.port"] == 8443
        assert attributes["wabahooks.portal.call"] == "messages"
        assert phone not in repr(attributes) and phone not in span.name
    assert spans[0].attributes["http.response.status_code"] == 200  # type: ignore[index]
    failed = spans[1:]
    assert [s.attributes.get("http.request.resend_count") for s in failed] == [  # type: ignore[union-attr]
        None,
        *range(1, FAST_RETRY.max_attempts),
    ]
    for span in failed:
        assert span.attributes["error.type"] == "ConnectError"  # type: ignore[index]
        assert "http.response.status_code" not in span.attributes  # type: ignore[operator]


def test_asking_for_traces_without_the_otel_extra_says_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the extra were not installed\n"
        "from service.settings import ConfigError\n"
        "from service.tracingsetup import configure_tracing\n"
        "try:\n"
        "    configure_tracing('x')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = run_python(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT ask for traces but OpenTelemetry is "
        "not installed: pip install 'wabahooks[otel]' (or unset them)"
    )
