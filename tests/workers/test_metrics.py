"""Worker metrics: real `wabahooks worker --burst` processes counting into one multiprocess
directory, summed by `wabahooks metrics`; queue depth gauges read from real Valkey."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from service.sim.app import create_sim_app
from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.loop import sim_delivering_to
from tests.support.portal import API_KEY, drain, serve
from tests.support.receiver import SECRET, Receiver
from tests.support.workers import ROOT, WorkerProcess, wait_for, worker_env
from workers.metrics import QueueDepthCollector, scrape_registry

HANDLER = "metered:answer"
QUEUES = ("wabahooks:messages", "wabahooks:statuses", "wabahooks:other")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[tuple[str, httpx.Client]]:
    """The portal simulator, delivering its webhooks to ``receiver``."""
    config = sim_delivering_to(receiver.webhook_url, SECRET)
    with serve(create_sim_app(config)) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield url, client


def test_burst_workers_count_into_one_directory_and_wabahooks_metrics_sums_them(
    start_worker: Callable[..., WorkerProcess],
    sim: tuple[str, httpx.Client],
    receiver: Receiver,
    redis_url: str,
    r: BytesRedis,
    tmp_path: Path,
) -> None:
    sim_url, control = sim
    texts = {"447700900001": "ok", "447700900002": "ok", "447700900003": "bad"}
    for sender, text in {**texts, "447700900004": "flaky"}.items():
        inbound = {"from": sender, "name": "Ana", "type": "text", "content": text}
        control.post("/sim/inbound", json=inbound).raise_for_status()
    drain(control)
    body, headers = payloads.signed({"event": "something.new", "data": {"x": 1}}, SECRET)
    assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {
        "WABAHOOKS_HANDLERS": "tests.workers.metrics_handlers:metered",
        "WABA_API_URL": sim_url,
        "WABA_API_KEY": API_KEY,
        # One request a second, one at a time: the second send waits for the limiter.
        "WABA_API_RATE": "1",
        "WABA_API_BURST": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }

    workers = [
        start_worker("--queue", "messages", "--burst", **env),
        start_worker("--queue", "messages", "--burst", **env),
        start_worker("--queue", "other", "--burst", **env),
    ]
    for worker in workers:
        assert worker.proc.wait(timeout=60) == 0, worker.output()

    # Files are named <type>_<host name>-<pid>: each process counts in files of its own.
    pids = {int(path.stem.rsplit("-", 1)[1]) for path in directory.glob("*.db")}
    assert len(pids) >= 2
    assert pids <= {w.pid for w in workers}
    assert all(f"_{socket.gethostname()}-" in path.name for path in directory.glob("*.db"))
    registry = scrape_registry(str(directory), r, QUEUES)

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    assert value("wabahooks_handler_runs_total", handler=HANDLER, outcome="ok") == 2
    assert value("wabahooks_handler_runs_total", handler=HANDLER, outcome="permanent") == 1
    assert value("wabahooks_handler_runs_total", handler=HANDLER, outcome="retry") == 1
    assert value("wabahooks_handler_seconds_count", handler=HANDLER) == 4
    assert value("wabahooks_events_total", kind="message", outcome="done") == 2
    assert value("wabahooks_events_total", kind="message", outcome="retry") == 1
    assert value("wabahooks_events_total", kind="message", outcome="failed_permanent") == 1
    assert value("wabahooks_events_unhandled_total", kind="other") == 1
    assert value("wabahooks_portal_requests_total", call="send_text", status="200") == 2
    assert value("wabahooks_portal_request_seconds_count", call="send_text") == 2
    assert value("wabahooks_portal_limiter_wait_seconds_count") >= 1
    assert value("wabahooks_portal_limiter_wait_seconds_sum") > 0
    queue = "wabahooks:messages"
    assert value("wabahooks_queue_jobs", queue=queue, state="finished") == 2
    assert value("wabahooks_queue_jobs", queue=queue, state="failed") == 1
    assert value("wabahooks_queue_jobs", queue=queue, state="scheduled") == 1
    assert value("wabahooks_queue_jobs", queue=queue, state="queued") == 0

    # The same, served over HTTP by `wabahooks metrics`.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "metrics", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=worker_env(redis_url, PROMETHEUS_MULTIPROC_DIR=str(directory)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, "wabahooks metrics exited"
                return False

        wait_for(answers, "wabahooks metrics to listen")
        served = parse(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        ok = (("handler", HANDLER), ("outcome", "ok"))
        assert served[("wabahooks_handler_runs_total", ok)] == 2
        failed = (("queue", queue), ("state", "failed"))
        assert served[("wabahooks_queue_jobs", failed)] == 1
        assert served[("wabahooks_queue_redis_up", ())] == 1
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_wabahooks_metrics_needs_the_multiprocess_directory(redis_url: str, tmp_path: Path) -> None:
    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service", "metrics", "--port", str(free_port())],
            cwd=ROOT,
            env=worker_env(redis_url, **env),
            capture_output=True,
            text=True,
            timeout=30,
        )

    unset = run()
    missing = run(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "nowhere"))

    assert unset.returncode == 2
    assert "PROMETHEUS_MULTIPROC_DIR is not set" in unset.stderr
    assert missing.returncode == 2
    assert "not a writable directory" in missing.stderr


def test_queue_depths_are_read_from_redis_at_scrape_time(receiver: Receiver, r: BytesRedis) -> None:
    collector = QueueDepthCollector(r, QUEUES)

    def depths() -> dict[tuple[str, str], float]:
        return {
            (s.labels["queue"], s.labels["state"]): s.value
            for family in collector.collect()
            if family.name == "wabahooks_queue_jobs"
            for s in family.samples
        }

    assert set(depths().values()) == {0.0}
    for envelope in [
        payloads.message(sender="447700900001"),
        payloads.message(sender="447700900001"),  # waits for the first: deferred
        payloads.message(sender="447700900002"),
        payloads.status("wamid.OUT1", "sent"),
    ]:
        body, headers = payloads.signed(envelope, SECRET)
        assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200

    now = depths()
    assert now[("wabahooks:messages", "queued")] == 2
    assert now[("wabahooks:messages", "deferred")] == 1
    assert now[("wabahooks:statuses", "queued")] == 1
    assert now[("wabahooks:other", "queued")] == 0
    assert sum(now.values()) == 4


def test_queue_depths_report_redis_down_instead_of_failing_the_scrape() -> None:
    port = free_port()
    collector = QueueDepthCollector(
        redis.Redis(port=port, socket_connect_timeout=0.2, retry_on_error=[]), QUEUES
    )

    families = {family.name: family for family in collector.collect()}

    assert set(families) == {"wabahooks_queue_redis_up"}
    assert families["wabahooks_queue_redis_up"].samples[0].value == 0
