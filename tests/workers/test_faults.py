"""Faults with real processes: frozen workers (SIGSTOP), lapsed leases, RQ's own tools.

Each test runs `wabahooks worker` processes against the portal simulator and checks what a
contact sees: exactly one reply per event, in the order the contact wrote, and no job left
queued, deferred or started. A worker is frozen either with SIGSTOP from the test, or by the
Redis proxy (``tests/support/redisproxy.py``) the moment a given write of it is answered; the
proxy also holds back its lease renewals, so its lease lapses while it is frozen. A woken
worker is watched until it has found out (:func:`superseded`, from its log). No test measures
time: each waits for states (a lease lapses for real where that is the point).
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.keys import (
    Keys,
    rq_deferred,
    rq_failed,
    rq_finished,
    rq_job,
    rq_queue,
    rq_scheduled,
    rq_started,
)
from tests.support.bredis import BytesRedis
from tests.support.portal import drain
from tests.support.receiver import Receiver
from tests.support.redisproxy import Command, RedisProxy, redis_proxy
from tests.support.stack import MESSAGES, portal_env, sent, simulator, worker_processes
from tests.support.workers import wait_for

HANDLERS = "tests.workers.process_handlers"
SIGSTOP, SIGCONT = signal.SIGSTOP, signal.SIGCONT


def write(sim: httpx.Client, r: BytesRedis, phone: str, *texts: str) -> list[str]:
    """``phone`` writes ``texts``, each delivered before the next is sent (so they arrive in
    order); return their job ids (each is its conversation's latest job once delivered)."""
    ids = []
    for text in texts:
        body = {"from": phone, "name": "Test", "type": "text", "content": text}
        sim.post("/sim/inbound", json=body).raise_for_status()
        drain(sim)
        latest = r.get(Keys().tail("message", phone))
        assert latest is not None
        ids.append(latest.decode())
    return ids


def finished(r: BytesRedis) -> int:
    return r.zcard(rq_finished(MESSAGES))


def failed(r: BytesRedis) -> list[str]:
    return [m.decode() for m in r.zrange(rq_failed(MESSAGES), 0, -1)]


def assert_settled(r: BytesRedis, *, finished_jobs: int) -> None:
    """Every job ended (``finished_jobs`` finished, none failed); none is left queued,
    deferred, scheduled or started."""
    assert finished(r) == finished_jobs
    assert failed(r) == []
    for key in (rq_deferred(MESSAGES), rq_scheduled(MESSAGES), rq_started(MESSAGES)):
        assert r.zcard(key) == 0, key
    assert r.llen(rq_queue(MESSAGES)) == 0


def logged(log: Path, events: tuple[str, ...], job_id: str) -> bool:
    """Whether the worker's JSON log has one of ``events`` for ``job_id``."""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") in events and record.get("job_id") == job_id:
            return True
    return False


def superseded(log: Path, job_id: str) -> bool:
    """Whether the worker's log says its execution of ``job_id`` was superseded (its lease
    renewal found the job gone, its ending was refused, or a write of its run was)."""
    return logged(log, ("job.superseded", "event.superseded"), job_id)


def waits_for_lease(log: Path, job_id: str) -> bool:
    """Whether the worker's send fence held a send of ``job_id`` back (too little lease left)."""
    return logged(log, ("send.waiting_for_lease",), job_id)


def renewal_held(proxy: RedisProxy) -> bool:
    return any(command.script == "heartbeat" for command in proxy.held())


def is_intent(command: Command, _reply: bytes) -> bool:
    """The ledger's write of a send's intent (the last write before the request)."""
    return command.script == "ledger_write" and any(b'"state": "intent"' in a for a in command.args)


def intent_recorded(r: BytesRedis, job_id: str) -> bool:
    """Whether the job's ledger holds a send's intent with no result yet."""
    fields = r.hgetall(rq_job(job_id))
    return any(k.startswith(b"wh:s:") and b'"state": "intent"' in v for k, v in fields.items())


def through(proxy: RedisProxy, env: dict[str, str]) -> dict[str, str]:
    """``env`` for a worker whose Redis is behind ``proxy``. Its reads wait up to 60 s, not
    redis-py's 5 s: a worker frozen in a read would otherwise wake to a timeout (the job
    retried, refused) instead of going on to what it was doing, which the fences must stop."""
    return {**env, "REDIS_URL": f"{proxy.url}/0?socket_timeout=60"}


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One `wabahooks worker` on the messages queue, its output to ``log``; never left
    stopped (continued before it is ended)."""
    with open(log, "ab") as out, worker_processes(env, ["messages"], log=out) as (proc,):
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(SIGCONT)


@pytest.mark.parametrize("handlers", ["chat", "chat_sync"])
def test_a_worker_frozen_after_its_intent_is_recorded_stays_silent_when_it_wakes(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path, handlers: str
) -> None:
    phone = "447700900101"
    prefix = "re (sync)" if handlers == "chat_sync" else "re"
    with simulator(receiver) as sim, redis_proxy(redis_url) as proxy:
        env = portal_env(sim, redis_url, f"{HANDLERS}:{handlers}")
        log = tmp_path / "frozen.log"
        with worker(through(proxy, env), log) as frozen:
            proxy.hold("heartbeat")  # no renewal of it reaches Redis until released
            intended = proxy.stop_on_reply(frozen.pid, is_intent)
            first, _ = write(sim, r, phone, "m0", "m1")
            wait_for(intended.is_set, "the intent of the first reply, then the freeze")
            assert intent_recorded(r, first)

            with worker(env, tmp_path / "survivor.log"):  # re-drives it once the lease lapsed
                wait_for(lambda: finished(r) == 2, "both events, by the other worker")
                assert sent(sim, phone) == [f"{prefix}: m0", f"{prefix}: m1"]

                # It wakes and goes on to the send, which its lease (lapsed, by its own clock)
                # holds back until a renewal; the renewal, let through, says the job is gone.
                frozen.send_signal(SIGCONT)
                wait_for(lambda: waits_for_lease(log, first), "the send fence to hold it")
                wait_for(lambda: renewal_held(proxy), "its renewal, held in the proxy")
                proxy.release()
                wait_for(lambda: superseded(log, first), "the woken worker to stop")

        assert sent(sim, phone) == [f"{prefix}: m0", f"{prefix}: m1"]
        assert_settled(r, finished_jobs=2)


@pytest.mark.parametrize("handlers", ["chat", "chat_sync"])
def test_a_worker_frozen_mid_send_past_its_lease_leaves_one_reply_per_event(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path, handlers: str
) -> None:
    contacts = [f"44770090020{n}" for n in range(3)]
    prefix = "re (sync)" if handlers == "chat_sync" else "re"
    # The portal carries each send out, then answers 1.5 s later: the freeze lands between.
    with simulator(receiver, hold_after_send=1.5) as sim:
        env = portal_env(sim, redis_url, f"{HANDLERS}:{handlers}")
        log = tmp_path / "frozen.log"
        with worker(env, log) as frozen:
            firsts = [write(sim, r, phone, "m0")[0] for phone in contacts]
            for phone in contacts:
                write(sim, r, phone, "m1")
            wait_for(lambda: all(sent(sim, p) for p in contacts), "the first sends in flight")
            frozen.send_signal(SIGSTOP)
            sim.put("/sim/chaos", json={"hold_after_send": 0}).raise_for_status()
            # Longer than lease + margin + re-drive period: until the other worker is done.
            with worker(env, tmp_path / "survivor.log"):
                wait_for(lambda: finished(r) == 6, "every event, by the other worker")
                frozen.send_signal(SIGCONT)
                wait_for(
                    lambda: all(superseded(log, job) for job in firsts),
                    "the woken worker to stop",
                )

        for phone in contacts:
            assert sent(sim, phone) == [f"{prefix}: m0", f"{prefix}: m1"]
        assert_settled(r, finished_jobs=6)
