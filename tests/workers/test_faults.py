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
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

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
from tests.support.workers import ROOT, make_due, wait_for, worker_env

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


def status(r: BytesRedis, job_id: str) -> str | None:
    value = r.hget(rq_job(job_id), "status")
    return None if value is None else value.decode()


def assert_settled(r: BytesRedis, *, finished_jobs: int) -> None:
    """Every job ended (``finished_jobs`` finished, none failed); none is left queued,
    deferred, scheduled or started."""
    assert finished(r) == finished_jobs
    assert failed(r) == []
    for key in (rq_deferred(MESSAGES), rq_scheduled(MESSAGES), rq_started(MESSAGES)):
        assert r.zcard(key) == 0, key
    assert r.llen(rq_queue(MESSAGES)) == 0


def peak(r: BytesRedis, phone: str) -> int:
    """The most of the contact's handler runs (``turns``) that ever ran at once."""
    return max(int(n) for n in r.lrange(f"test:seen:{phone}", 0, -1))


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
    """The ledger's write of a send's intent (the last write before the request): its fourth
    argument names the field the script writes the intent into (workers/lua/ledger_write.lua;
    the command's arguments are the script's SHA, the key count, the keys, the arguments)."""
    if command.script != "ledger_write":
        return False
    keys = int(command.args[1])
    return command.args[2 + keys + 3] != b""


def intent_recorded(r: BytesRedis, job_id: str) -> bool:
    """Whether the job's ledger holds a send's intent with no result yet."""
    fields = r.hgetall(rq_job(job_id))
    return any(
        k.startswith(b"wh:s:") and json.loads(v).get("state") == "intent" for k, v in fields.items()
    )


def started_a_job(command: Command, reply: bytes) -> bool:
    """A start script's reply that started a job (its first list is not empty)."""
    return command.script == "start" and not reply.startswith(b"*2\r\n*0\r\n")


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


def test_rq_cleanup_requeues_a_frozen_workers_job_and_its_old_execution_stays_silent(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    phone = "447700900301"
    with simulator(receiver) as sim, redis_proxy(redis_url) as proxy:
        env = portal_env(sim, redis_url, f"{HANDLERS}:turns")
        log = tmp_path / "frozen.log"
        with worker(through(proxy, env), log) as frozen:
            froze = proxy.stop_on_reply(frozen.pid, started_a_job)  # before its handler runs
            first, _ = write(sim, r, phone, "m0", "m1")
            wait_for(froze.is_set, "the first event started, then the freeze")
            [member] = r.zrange(rq_started(MESSAGES), 0, -1)
            execution = member.decode().split(":")[1]

            # What `rq info`, rq-dashboard or RQ's maintenance do to a job past its score.
            StartedJobRegistry(MESSAGES, connection=r).cleanup(timestamp=time.time() + 700)
            assert status(r, first) == "queued"
            assert r.hget(rq_job(first), "wh:holder") == execution.encode()  # left as it was

            with worker(env, tmp_path / "other.log"):
                wait_for(lambda: finished(r) == 2, "both events, by the other worker")
                assert sent(sim, phone) == ["re: m0", "re: m1"]
                assert peak(r, phone) == 1  # the next event did not run beside it

                frozen.send_signal(SIGCONT)
                wait_for(lambda: superseded(log, first), "the woken worker to stop")

        assert sent(sim, phone) == ["re: m0", "re: m1"]
        assert_settled(r, finished_jobs=2)


def test_rq_cleanup_then_the_frozen_worker_wakes_first_its_old_execution_is_refused(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    phone = "447700900302"
    with simulator(receiver) as sim, redis_proxy(redis_url) as proxy:
        env = portal_env(sim, redis_url, f"{HANDLERS}:turns")
        log = tmp_path / "frozen.log"
        with worker(through(proxy, env), log) as frozen:
            proxy.hold("heartbeat")  # only the fence's check of the status may stop it
            froze = proxy.stop_on_reply(frozen.pid, started_a_job)
            first, _ = write(sim, r, phone, "m0", "m1")
            wait_for(froze.is_set, "the first event started, then the freeze")
            StartedJobRegistry(MESSAGES, connection=r).cleanup(timestamp=time.time() + 700)
            suspend(r)  # `rq suspend`: no worker starts the queued job meanwhile

            # It wakes holding (wh:holder) a job that is queued again, with lease to spare by
            # its own clock: its run is refused at its first write, and sends nothing.
            frozen.send_signal(SIGCONT)
            wait_for(lambda: superseded(log, first), "the old execution to be refused")
            assert sent(sim, phone) == []
            assert status(r, first) == "queued"

            proxy.release()
            resume(r)  # `rq resume`: the job runs as any other, here on the same worker
            wait_for(lambda: finished(r) == 2, "both events")

        assert sent(sim, phone) == ["re: m0", "re: m1"]
        assert_settled(r, finished_jobs=2)


def test_rq_cleanup_of_a_job_with_a_send_in_doubt_holds_it_until_the_old_send_can_show(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    """Found by the chaos soak (bench/chaos.py): RQ's cleanup on a clock far ahead put a job
    back while its execution was between its intent and its send; started again at once, the
    new run found no send in the history and sent too. Now it is held as after a re-drive."""
    phone = "447700900303"
    with simulator(receiver) as sim, redis_proxy(redis_url) as proxy:
        env = portal_env(sim, redis_url, f"{HANDLERS}:chat")
        log = tmp_path / "frozen.log"
        with worker(through(proxy, env), log) as frozen:
            proxy.hold("heartbeat")  # only its ending's fence stops it once it has sent
            intended = proxy.stop_on_reply(frozen.pid, is_intent)
            first, _ = write(sim, r, phone, "m0", "m1")
            wait_for(intended.is_set, "the intent of the first reply, then the freeze")
            StartedJobRegistry(MESSAGES, connection=r).cleanup(timestamp=time.time() + 700)
            assert status(r, first) == "queued"

            with worker(env, tmp_path / "other.log") as other:
                # Started again, it is handed back held (scheduled), not run: the execution
                # RQ took it from may still send.
                wait_for(lambda: status(r, first) == "scheduled", "the job held")
                assert sent(sim, phone) == []
                frozen.send_signal(SIGCONT)  # it sends, and its record is refused
                wait_for(lambda: sent(sim, phone) == ["re: m0"], "the woken worker's send")
                wait_for(lambda: superseded(log, first), "the woken worker to stop")
                proxy.release()
                make_due(r, MESSAGES)  # rather than wait out the hold
                wait_for(lambda: finished(r) == 2, "both events")
                assert other.poll() is None

        assert sent(sim, phone) == ["re: m0", "re: m1"]  # the re-run found its send
        assert_settled(r, finished_jobs=2)


def test_an_abandoned_last_attempt_stays_silent_when_woken_and_runs_once_when_requeued(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    phone = "447700900401"
    with simulator(receiver) as sim, redis_proxy(redis_url) as proxy:
        env = portal_env(sim, redis_url, f"{HANDLERS}:chat")
        first, second = write(sim, r, phone, "m0", "m1")  # no worker yet: m0 waits
        # Its next start is its last attempt (of 5), and a suspect's, in the quarantine slot,
        # where a death counts (outside it, the kill would be refunded and m0 run again).
        r.hset(rq_job(first), mapping={"wh:attempts": 4, "wh:suspect": 1})
        log = tmp_path / "frozen.log"
        with worker(through(proxy, env), log) as frozen:
            proxy.hold("heartbeat")
            intended = proxy.stop_on_reply(frozen.pid, is_intent)
            wait_for(intended.is_set, "the intent of the first reply, then the freeze")
            assert intent_recorded(r, first)

            with worker(env, tmp_path / "other.log"):
                # Its lease lapses: the re-drive fails it (AbandonedJob), releasing m1.
                wait_for(lambda: failed(r) == [first] and finished(r) == 1, "m0 failed, m1 ran")
                assert sent(sim, phone) == ["re: m1"]

                frozen.send_signal(SIGCONT)
                wait_for(lambda: waits_for_lease(log, first), "the send fence to hold it")
                proxy.release()
                wait_for(lambda: superseded(log, first), "the woken worker to stop")
                assert sent(sim, phone) == ["re: m1"]  # the zombie did not send

                requeue = subprocess.run(
                    [sys.executable, "-m", "service", "failed", "requeue", first],
                    env=worker_env(redis_url),
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                )
                assert requeue.returncode == 0, requeue.stderr
                wait_for(lambda: finished(r) == 2, "the requeued event")

        assert sent(sim, phone) == ["re: m1", "re: m0"]  # it runs after the events it released
        assert_settled(r, finished_jobs=2)


@pytest.mark.parametrize("tool", ["FailedJobRegistry.requeue", "Job.requeue"])
def test_rq_requeue_of_an_event_waits_for_its_contacts_running_event(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path, tool: str
) -> None:
    phone = "447700900501"
    r.set("test:fail:m0", 1)  # m0 fails for good, releasing m1 ...
    r.set("test:hold:m1", 1)  # ... which then runs until the test lets it go on
    with simulator(receiver) as sim:
        env = portal_env(sim, redis_url, f"{HANDLERS}:turns")
        with worker(env, tmp_path / "worker.log"):
            first, second = write(sim, r, phone, "m0", "m1")
            wait_for(lambda: failed(r) == [first], "m0 to fail")
            wait_for(lambda: r.lrange(f"test:calls:{phone}", 0, -1) == [b"m0", b"m1"], "m1")
            r.delete("test:fail:m0")

            if tool == "Job.requeue":
                Job.fetch(first, connection=r, serializer=JSONSerializer).requeue()
            else:
                FailedJobRegistry(MESSAGES, connection=r, serializer=JSONSerializer).requeue(first)
            # The worker pops it and puts it back in its conversation's chain, behind m1.
            wait_for(lambda: status(r, first) == "deferred", "m0 re-chained behind m1")
            assert r.hget(rq_job(first), "dependency_id") == second.encode()
            assert status(r, second) == "started"

            r.delete("test:hold:m1")
            wait_for(lambda: finished(r) == 2, "m1, then m0")

        assert sent(sim, phone) == ["re: m1", "re: m0"]
        assert peak(r, phone) == 1  # never two of the contact's events at once
        assert_settled(r, finished_jobs=2)


def test_a_requeued_event_gets_a_fresh_set_of_attempts(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    phone = "447700900601"
    r.set("test:flaky:m0", 1)  # every run of m0 fails as retrying may fix
    with simulator(receiver) as sim:
        env = portal_env(sim, redis_url, f"{HANDLERS}:turns")
        [first] = write(sim, r, phone, "m0")
        r.hset(rq_job(first), "wh:attempts", 4)  # its next run is its last attempt (of 5)
        with worker(env, tmp_path / "worker.log"):
            wait_for(lambda: failed(r) == [first], "m0 to fail, its attempts spent")
            requeue = subprocess.run(
                [sys.executable, "-m", "service", "failed", "requeue", first],
                env=worker_env(redis_url),
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
            assert requeue.returncode == 0, requeue.stderr
            wait_for(lambda: len(r.lrange(f"test:calls:{phone}", 0, -1)) == 2, "its second run")
            wait_for(lambda: status(r, first) in ("scheduled", "failed"), "its second run's end")
            assert status(r, first) == "scheduled"  # retried, as a fresh set of retries allows
