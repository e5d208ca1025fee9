"""The README's log schema ("Logs") holds for real output: `wabahooks serve` and `wabahooks
worker` processes with WABAHOOKS_LOG_FORMAT=json print one JSON object per line, each stage's
documented fields are there, and no phone number, secret, signature or API key is printed."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from service.sim.app import create_sim_app
from service.sim.config import SimConfig
from tests.support import payloads
from tests.support.portal import API_KEY, drain, serve

ROOT = Path(__file__).resolve().parents[1]
SECRET = "log-schema-secret-5f1c"
SENDERS = {"ok": "447700900011", "bad": "447700900012", "flaky": "447700900013"}

# The fields the README documents for each line, on top of `event`, `level`, `timestamp`.
JOB = {"event_key", "job_id", "queue", "kind", "attempt"}
SCHEMA: dict[str, set[str]] = {
    "webhook": {"status", "latency_ms", "outcome", "event_key", "kind", "job_id"},
    "worker.started": {"queue", "handlers", "burst", "metrics"},
    "handler.done": JOB | {"handler", "outcome", "duration_ms"},
    "handler.failed": JOB | {"handler", "outcome", "duration_ms", "error"},
    "event.retry": JOB | {"handler", "in_seconds"},
    "event.failed": JOB | {"handler", "reason"},
    "event.unhandled": JOB,
    "portal_sent": JOB | {"to", "message_id"},
}


# Anything that could be base64 (standard or URL-safe) and is long enough to hold a number.
_BASE64ISH = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def decoded_tokens(text: str) -> list[bytes]:
    """Every base64-looking run of ``text`` (e.g. the data of a ``wamid.…``), decoded, at
    every alignment (an id can be cut out of a longer run)."""
    found = []
    for token in _BASE64ISH.findall(text):
        bare = token.rstrip("=").replace("-", "+").replace("_", "/")
        for start in range(4):
            chunk = bare[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                found.append(base64.b64decode(chunk, validate=True))
            except (binascii.Error, ValueError):
                continue
    return found


def assert_no_number(text: str, numbers: list[str]) -> None:
    for number in numbers:
        assert number not in text
    for decoded in decoded_tokens(text):
        for number in numbers:
            assert number.encode() not in decoded, f"{number} decodes out of the logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(redis_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    return {
        **base,
        "REDIS_URL": redis_url,
        "WABAHOOKS_LOG_FORMAT": "json",
        "WABAHOOKS_CONFIG": "",
        # The receiver and the workers hash message ids with the same key (service.logs).
        "WABAHOOKS_LOG_KEY": "log-schema-log-key",
        **extra,
    }


def lines(log: IO[bytes]) -> list[dict[str, Any]]:
    """Every line the process printed, each of which must be one JSON object."""
    log.seek(0)
    text = log.read().decode("utf-8")
    parsed = []
    for line in text.splitlines():
        obj = json.loads(line)  # a line that is not JSON fails here
        assert isinstance(obj, dict)
        parsed.append(obj)
    return parsed


@pytest.fixture
def receiver_process(redis_url: str) -> Iterator[tuple[str, IO[bytes]]]:
    """`wabahooks serve` on a free port, its output in a file."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env(redis_url, WABA_WEBHOOK_SECRET=SECRET),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_receiver_and_worker_lines_follow_the_documented_schema(
    receiver_process: tuple[str, IO[bytes]], redis_url: str
) -> None:
    url, receiver_log = receiver_process
    config = SimConfig(
        api_key=API_KEY,
        allow_insecure_webhooks=True,
        webhook_url=url + "/webhook",
        webhook_secret=SECRET,
        status_delay=0.0,
        delivery_backoff=0.01,
    )
    with serve(create_sim_app(config)) as sim_url, httpx.Client(base_url=sim_url) as sim:
        for text, sender in SENDERS.items():
            inbound = {"from": sender, "name": "Ana", "type": "text", "content": text}
            sim.post("/sim/inbound", json=inbound).raise_for_status()
        drain(sim)
        # One request of our own, so that we know its signature, and one refused.
        body, headers = payloads.signed({"event": "something.new", "data": {}}, SECRET)
        assert httpx.post(url + "/webhook", content=body, headers=headers).status_code == 200
        forged = {**headers, "X-Webhook-Signature": "ab" * 32}
        assert httpx.post(url + "/webhook", content=body, headers=forged).status_code == 401

        with tempfile.TemporaryFile() as worker_log:
            for queue in ("messages", "other"):
                worker = subprocess.run(
                    [sys.executable, "-m", "service", "worker", "--queue", queue, "--burst"],
                    cwd=ROOT,
                    env=env(
                        redis_url,
                        WABAHOOKS_HANDLERS="tests.workers.metrics_handlers:metered",
                        WABA_API_URL=sim_url,
                        WABA_API_KEY=API_KEY,
                    ),
                    stdout=worker_log,
                    stderr=subprocess.STDOUT,
                    timeout=60,
                )
                assert worker.returncode == 0
            worker_lines = lines(worker_log)
            worker_log.seek(0)
            worker_text = worker_log.read().decode()
    receiver_lines = lines(receiver_log)
    receiver_log.seek(0)
    receiver_text = receiver_log.read().decode()

    everything = receiver_lines + worker_lines
    for line in everything:
        assert {"event", "level", "timestamp"} <= set(line), line
    seen = {line["event"] for line in everything}
    assert set(SCHEMA) <= seen, f"not seen: {set(SCHEMA) - seen}"
    for line in everything:
        missing = SCHEMA.get(line["event"], set()) - set(line)
        if line["event"] == "webhook" and line["outcome"] not in ("accepted", "duplicate"):
            missing -= {"event_key", "kind", "job_id"}  # refused before it was identified
        assert not missing, f"{line['event']} lacks {missing}: {line}"
    webhooks = [line for line in receiver_lines if line["event"] == "webhook"]
    assert {line["outcome"] for line in webhooks} == {"accepted", "bad_signature"}
    contacts = {line["contact"] for line in webhooks if line.get("kind") == "message"}
    assert contacts == {"********" + number[-4:] for number in SENDERS.values()}
    sent = [line for line in worker_lines if line["event"] == "portal_sent"]
    assert [line["to"] for line in sent] == ["********0011"]

    # Message ids are logged as keyed hashes, the same in the receiver's and workers' lines.
    keys = {line["event_key"] for line in webhooks if line.get("kind") == "message"}
    assert keys and all(re.fullmatch(r"message:wamid~[0-9a-f]{16}", key) for key in keys)
    assert keys <= {line.get("event_key") for line in worker_lines}
    assert "wamid." not in receiver_text + worker_text
    for text in (receiver_text, worker_text):
        assert_no_number(text, list(SENDERS.values()))
        assert SECRET not in text
        assert headers["X-Webhook-Signature"] not in text
        assert API_KEY not in text
