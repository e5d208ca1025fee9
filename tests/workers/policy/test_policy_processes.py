"""The policy with real `wabahooks worker` processes: relay, handover, STOP, and the nudge
promoted from RQ's scheduled registry by the engine itself."""

from __future__ import annotations

from pathlib import Path

import httpx
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.bredis import BytesRedis
from tests.support.portal import drain
from tests.support.receiver import Receiver
from tests.support.stack import portal_env, sent, simulator, worker_processes
from tests.support.workers import expire_leases, wait_for
from tests.workers.policy.support import AGENT, CUSTOMER, THANKS, config
from workers.policy.config import NUDGE, STOP_REPLY

HOUR = 3600


def write(sim: httpx.Client, sender: str, text: str) -> None:
    body = {"from": sender, "name": "Test", "type": "text", "content": text}
    sim.post("/sim/inbound", json=body).raise_for_status()
    drain(sim)


def finished(r: BytesRedis, queue: str = "wabahooks:messages") -> int:
    return int(Queue(queue, connection=r, serializer=JSONSerializer).finished_job_registry.count)


def test_relay_handover_stop_and_the_nudge_with_worker_processes(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "wabahooks.toml"
    path.write_text(config(), encoding="utf-8")
    with simulator(receiver) as sim:
        env = {**portal_env(sim, redis_url, ""), "WABAHOOKS_CONFIG": str(path)}
        log = stack_log = (tmp_path / "workers.log").open("wb")
        with stack_log, worker_processes(env, ["messages", "other"], log=log):
            # The agent last wrote 23.5 h ago: their window closes within the nudge margin.
            sim.post("/sim/clock", json={"advance": -23.5 * HOUR}).raise_for_status()
            write(sim, AGENT, "on shift")
            sim.post("/sim/clock", json={"advance": 23.5 * HOUR}).raise_for_status()
            write(sim, CUSTOMER, "where is my order?")
            wait_for(lambda: finished(r) == 2, "the first messages")
            wait_for(lambda: NUDGE in sent(sim, AGENT), "the nudge, promoted and sent")
            write(sim, AGENT, "#3210 It ships today.")
            wait_for(lambda: finished(r) == 3, "the relay")
            write(sim, CUSTOMER, "thanks!")  # handed over: no auto-reply
            write(sim, CUSTOMER, "STOP")
            wait_for(lambda: finished(r) == 5, "the customer's messages")
            write(sim, CUSTOMER, "#done from the wrong side")
            wait_for(lambda: finished(r) == 6, "the last message")

        to_agent = sent(sim, AGENT)
        assert sent(sim, CUSTOMER) == [THANKS, "It ships today.", STOP_REPLY]
        assert to_agent.count(NUDGE) == 1
        assert [t for t in to_agent if t.startswith("From ")] == [
            f"From Test (+********3210): {text}"
            for text in ("where is my order?", "thanks!", "STOP", "#done from the wrong side")
        ]
        assert finished(r, "wabahooks:other") == 1
        output = (tmp_path / "workers.log").read_text(encoding="utf-8")
        assert "policy.nudge.sent" in output and "policy.relay.sent" in output
        assert CUSTOMER not in output and AGENT not in output  # numbers are masked in logs


def test_a_worker_killed_after_its_reply_does_not_take_that_reply_for_a_human(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "wabahooks.toml"
    path.write_text("[policy]\n", encoding="utf-8")
    with simulator(receiver) as sim:
        env = {
            **portal_env(sim, redis_url, "tests.workers.process_handlers:crash"),
            "WABAHOOKS_CONFIG": str(path),
        }
        with (tmp_path / "workers.log").open("wb") as log:
            with worker_processes(env, ["messages"], log=log) as (worker,):
                write(sim, CUSTOMER, "refund?")
                wait_for(lambda: sent(sim, CUSTOMER) == ["Got it: refund?"], "the reply")
                wait_for(lambda: r.hexists(f"wabahooks:store:{CUSTOMER}", "hung"), "the hang")
                worker.kill()  # SIGKILL after the send: the ledger never wrote its id
                worker.wait()
            expire_leases(r, "wabahooks:messages")  # its lease ends now, not in real time
            with worker_processes(env, ["messages"], log=log):  # the re-drive runs the job again
                wait_for(lambda: finished(r) == 1, "the re-drive")
                write(sim, CUSTOMER, "thanks")
                wait_for(lambda: finished(r) == 2, "the next message")
        texts = sent(sim, CUSTOMER)

    # Our own reply, sent before the kill, was not taken for someone answering from the
    # portal's inbox: the conversation was not handed over, the next message is answered.
    assert texts == ["Got it: refund?", "Got it: thanks"]
    assert r.hget(f"wabahooks:policy:contact:{CUSTOMER}", "handover") is None
