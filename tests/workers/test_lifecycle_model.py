"""A model of the job lifecycle (issue 19): random interleavings of our scripts and RQ's own
code on one real Valkey, checked against the lifecycle's invariants after every step.

The system under test is the real thing: the intake (``service.intake.Intake``: intake.lua
and chain.lua), two workers' ``workers.rqstate.RQState`` (start, finish, heartbeat, redrive,
promote, sweep, requeue), the ledger's and the store's fenced writes (``RedisLedger``,
``RedisStore``), and RQ 2.12's own classes acting on the same keys (the started registry's
cleanup, ``FailedJobRegistry.requeue``, ``Job.cancel``, ``Job.delete``, ``Queue.empty``).

The model drives three contacts' events through them. Executions are kept after their job
moved on, so any rule may pick a zombie: a worker that froze (its lease score pushed into the
past, the way a lapsed lease looks; no heartbeat from it) and wakes up later to write or end
its job. Time moves only by rewriting scores (leases in ``rq:wip``, due times in
``rq:scheduled``) and by the timestamp RQ's cleanup is given; nothing sleeps.

What the model remembers: each event's contact and intake order, which execution it believes
holds each job (the one it started last, until an ending, a re-drive or an RQ action moved the
job on), the requeues of failed jobs, the jobs an operator removed (deleted, canceled,
emptied), each job's ends, and the last store write accepted for each contact.

Invariants, checked after every rule (and through a final drain):

1. *One writer per job*: a ledger write, an intent, a store write or an ending is accepted
   exactly when the execution is the one that holds its job in the model (a zombie's is
   refused once another execution started or the job moved on), the store holds the last
   write accepted, and a job's accepted writes never return to an earlier execution.
2. *A contact's jobs never run at the same time*: never two ``started`` jobs of one contact.
3. *Each acknowledged event ends exactly once per requeue*: a job's ends (to finished or
   failed) never exceed its requeues plus one; nothing acknowledged is lost: every event an
   operator did not remove is queued (in the list), deferred, scheduled, started (in the
   started registry), finished or failed (in the failed registry). After the drain, every
   such event ended exactly requeues + 1 times.
4. *A successor is released only after its predecessor ended*: when a job first starts, every
   earlier event of its contact has ended (or was removed by an operator), so the contact's
   events first end in intake order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any, ClassVar

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from service.identity import classify
from service.intake import Intake
from service.jobs import build_job
from service.keys import Keys
from tests.support import payloads
from tests.support.bredis import BytesRedis
from workers.context import RedisStore
from workers.execution import LATE_RECORDING, ExecutionToken, Superseded
from workers.ledger import RedisLedger
from workers.rqstate import RQ_MARGIN, Ending, RQState, StartedJob, requeue_failed

QUEUE = "wabahooks:messages"
CONTACTS = ("919800000001", "919800000002", "919800000003")
WORKERS = ("w1", "w2")
LEASE = 30
MAX_ATTEMPTS = 3
ENDED = ("finished", "failed")
#: Where each status a job of ours may have is to be found (besides its hash).
WAITING = ("queued", "deferred", "scheduled", "started")


def texts(values: Any) -> list[str]:
    """A list or sorted set's members, as text."""
    return [value.decode() for value in values]


class Run:
    """One execution, as the bundle holds it (a short repr for Hypothesis' reports)."""

    def __init__(self, job: StartedJob) -> None:
        self.job = job

    def __repr__(self) -> str:
        return f"<{self.job.id}/{self.job.execution_id}>"


class Lifecycle(RuleBasedStateMachine):
    """The lifecycle's state machine; :data:`url` is the test's Valkey."""

    url: ClassVar[str] = ""
    executions = Bundle("executions")

    def __init__(self) -> None:
        super().__init__()
        self.r = BytesRedis(connection_pool=redis.ConnectionPool.from_url(self.url))
        self.r.flushall()
        self.loop = asyncio.new_event_loop()
        self.client = aioredis.Redis.from_url(self.url)
        self.workers = {
            name: RQState(
                self.client, QUEUE, worker_name=name, lease=LEASE, max_attempts=MAX_ATTEMPTS
            )
            for name in WORKERS
        }
        self.intake = Intake(self.client, prefix="wabahooks:", dedupe_ttl=3600, deadline=30.0)
        self.events: dict[str, list[str]] = {c: [] for c in CONTACTS}  # intake order
        #: Chain order per contact: intake order, but a requeued job moves to the end (ours
        #: chains it behind the latest at once; RQ's is placed when it is popped: left out
        #: until it starts again).
        self.order: dict[str, list[str]] = {c: [] for c in CONTACTS}
        self.contact: dict[str, str] = {}  # job id -> contact
        self.holder: dict[str, str] = {}  # job id -> the execution holding it, in the model
        self.frozen: set[str] = set()  # executions whose worker froze (no heartbeats)
        self.requeues: Counter[str] = Counter()
        self.ends: Counter[str] = Counter()
        self.removed: set[str] = set()  # deleted, canceled or emptied by an operator
        self.seen: dict[str, str | None] = {}  # each job's status as of the last check
        self.writers: dict[str, list[str]] = {}  # job id -> executions, in accepted order
        self.store: dict[str, str] = {}  # contact -> the last store write accepted
        self.writes = 0
        self.executions_made = 0

    # -- helpers -----------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def now(self) -> float:
        seconds, micros = self.r.time()
        return seconds + micros / 1_000_000

    def status(self, job_id: str) -> str | None:
        value = self.r.hget(f"rq:job:{job_id}", "status")
        return None if value is None else value.decode()

    def live(self, job: StartedJob) -> bool:
        return self.holder.get(job.id) == job.execution_id

    def moved_on(self, job_id: str) -> None:
        """The job left its execution's hands (an ending, a re-drive, an RQ action)."""
        self.holder.pop(job_id, None)

    def accepted_write(self, job: StartedJob) -> None:
        writers = self.writers.setdefault(job.id, [])
        if writers and writers[-1] != job.execution_id:
            assert job.execution_id not in writers, (
                f"{job.id}: an earlier execution wrote again after a later one"
            )
        writers.append(job.execution_id)

    def check_order(self, job_id: str) -> None:
        """Every earlier event of the job's contact ended, but those an operator's removal
        cut the chain after (the sweep released what followed the removed job)."""
        events = self.order[self.contact[job_id]]
        earlier = events[: events.index(job_id)]
        for n, other in enumerate(earlier):
            cut = any(between in self.removed for between in earlier[n:])
            assert cut or self.ends[other] > 0, (
                f"{job_id} started before its contact's earlier {other} ended"
            )

    def pick(self, data: st.DataObject, jobs: list[str]) -> str:
        return data.draw(st.sampled_from(sorted(jobs)))

    # -- intake ------------------------------------------------------------------------------

    @rule(contact=st.sampled_from(CONTACTS))
    def intake_event(self, contact: str) -> None:
        n = len(self.contact)
        envelope = payloads.message(contact, f"event {n}", message_id=f"wamid.MODEL{n}")
        classified = classify(envelope)
        spec = build_job(envelope, classified, queue_prefix="wabahooks:", timeout=180)
        # Readable, and the same in every replay (RQ's sets and so the order of releases
        # depend on the ids): "e<n>c<contact>".
        spec = replace(spec, job_id=f"e{n}c{CONTACTS.index(contact)}")
        result = self.run(self.intake.submit(classified, spec))
        assert not result.duplicate
        self.events[contact].append(result.job_id)
        self.order[contact].append(result.job_id)
        self.contact[result.job_id] = contact
        self.seen[result.job_id] = None

    # -- a worker's executions ---------------------------------------------------------------

    @rule(target=executions, worker=st.sampled_from(WORKERS), wanted=st.integers(1, 3))
    def start(self, worker: str, wanted: int) -> Any:
        ids = [f"x{self.executions_made + i}" for i in range(wanted)]
        self.executions_made += wanted
        started: list[StartedJob] = self.run(self.workers[worker].start(ids))
        for job in started:
            assert job.id not in self.holder, f"{job.id} started while held by another"
            self.holder[job.id] = job.execution_id
            order = self.order[self.contact[job.id]]
            if job.id not in order:  # RQ's requeue: its place is where it starts
                order.append(job.id)
            if self.ends[job.id] == 0:  # its first start: invariant 4
                self.check_order(job.id)
        return multiple(*(Run(job) for job in started))

    @rule(target=executions, worker=st.sampled_from(WORKERS))
    def start_one(self, worker: str) -> Any:
        """Workers start jobs about as often as events arrive."""
        return self.start(worker, 1)

    @rule(run=executions, what=st.sampled_from(["ledger", "intent", "store"]))
    def write(self, run: Run, what: str) -> None:
        """A ledger record, a send's intent, or a store write (every one fenced)."""
        job, contact = run.job, self.contact[run.job.id]
        token = ExecutionToken(job.id, job.execution_id)
        self.writes += 1
        value = f"{job.id}:{job.execution_id}:{self.writes}"
        try:
            if what == "store":
                self.run(RedisStore(self.client, contact, token=token).set("last", value))
            elif what == "intent":
                self.run(RedisLedger(self.client, token).intend("model", value))
            else:
                self.run(RedisLedger(self.client, token).complete("model", value, {}))
        except Superseded:
            assert not self.live(job), f"{job.id}: its holding execution's write was refused"
        else:
            assert self.live(job), f"{job.id}: a zombie's {what} write was accepted"
            self.accepted_write(job)
            if what == "store":
                self.store[contact] = value

    @rule(
        run=executions,
        worker=st.sampled_from(WORKERS),
        outcome=st.sampled_from(["done", "done", "retry", "failed", "failed", "handback"]),
    )
    def finish(self, run: Run, worker: str, outcome: str) -> None:
        job = run.job
        ending = Ending(job, outcome, error="" if outcome == "done" else "boom", delay=60)
        (reply,) = self.run(self.workers[worker].finish([ending]))
        if self.live(job):
            assert reply == "ok", f"{job.id}: its holding execution's ending was refused"
            self.accepted_write(job)
            self.moved_on(job.id)
        else:
            assert reply == "superseded", f"{job.id}: a zombie's ending was accepted"

    @rule(run=executions)
    def freeze(self, run: Run) -> None:
        """Its worker freezes: no more heartbeats for it, and its lease lapses (the score
        moves back past the lease's end and the re-drive's wait)."""
        job = run.job
        self.frozen.add(job.execution_id)
        member = f"{job.id}:{job.execution_id}"
        lapsed = self.now() + RQ_MARGIN - LATE_RECORDING - 1
        self.r.zadd(f"rq:wip:{QUEUE}", {member: lapsed}, xx=True)

    @rule(
        worker=st.sampled_from(WORKERS),
        what=st.sampled_from(["heartbeat", "redrive", "promote", "sweep"]),
    )
    def maintain(self, worker: str, what: str) -> None:
        """A worker's periodic work (``workers.maintenance``)."""
        getattr(self, what)(worker)

    def heartbeat(self, worker: str) -> None:
        """Renew every lease the model's live executions hold, but the frozen ones'."""
        members = [
            f"{job_id}:{execution}"
            for job_id, execution in self.holder.items()
            if execution not in self.frozen
        ]
        lost = self.run(self.workers[worker].heartbeat(members))
        assert lost == set(), f"leases of live executions were lost: {lost}"

    def redrive(self, worker: str) -> None:
        done = self.run(self.workers[worker].redrive())
        for job_id in [*done.requeued, *done.failed]:
            assert self.holder.get(job_id) in self.frozen, f"{job_id} re-driven, not frozen"
            self.moved_on(job_id)

    def promote(self, worker: str) -> None:
        """Every scheduled job (a retry) falls due, then a worker promotes."""
        key = f"rq:scheduled:{QUEUE}"
        members: Any = self.r.zrange(key, 0, -1)
        if members:
            self.r.zadd(key, dict.fromkeys(members, 0), xx=True)
        self.run(self.workers[worker].promote())

    def sweep(self, worker: str) -> None:
        self.run(self.workers[worker].sweep())

    # -- RQ's own code and operators ---------------------------------------------------------

    @rule(skew=st.sampled_from([0, LEASE, RQ_MARGIN, RQ_MARGIN + LEASE + 1, 3 * RQ_MARGIN]))
    def rq_cleanup(self, skew: int) -> None:
        """RQ's cleanup of the started registry (``rq info``, rq-dashboard), on a clock
        ``skew`` s ahead."""
        at = self.now() + skew
        expired = texts(self.r.zrangebyscore(f"rq:wip:{QUEUE}", 0, at))
        registry = StartedJobRegistry(QUEUE, connection=self.r, serializer=JSONSerializer)
        registry.cleanup(timestamp=at)
        for member in expired:
            self.moved_on(member.split(":")[0])

    @precondition(lambda self: "failed" in self.seen.values())
    @rule(data=st.data(), ours=st.booleans())
    def requeue(self, data: st.DataObject, ours: bool) -> None:
        """`wabahooks failed requeue` (ours) or `rq requeue` (RQ's) of a failed job."""
        failed = texts(self.r.zrange(f"rq:failed:{QUEUE}", 0, -1))
        job_id = self.pick(data, failed)
        if ours:
            assert requeue_failed(self.r, QUEUE, job_id).status != "refused"
        else:
            FailedJobRegistry(QUEUE, connection=self.r, serializer=JSONSerializer).requeue(job_id)
        self.requeues[job_id] += 1
        order = self.order[self.contact[job_id]]
        if job_id in order:
            order.remove(job_id)
        if ours:  # behind the conversation's latest job, now
            order.append(job_id)

    @precondition(lambda self: len(self.contact) > len(self.removed))
    @rule(data=st.data(), how=st.sampled_from(["delete", "cancel", "empty", "-", "-", "-"]))
    def operator(self, data: st.DataObject, how: str) -> None:
        """Now and then, an operator deletes or cancels a job (rq-dashboard's buttons) or
        empties the queue (`rq empty`)."""
        if how == "-":
            return
        if how == "empty":
            self.empty()
            return
        job_id = self.pick(data, [j for j in self.contact if j not in self.removed])
        if self.status(job_id) in (*ENDED, None):
            return  # nothing to remove from the chain
        job = Job.fetch(job_id, connection=self.r, serializer=JSONSerializer)
        if how == "delete":
            job.delete()
        else:
            job.cancel()
        self.removed.add(job_id)
        self.moved_on(job_id)

    def empty(self) -> None:
        """`rq empty`: every queued job is deleted."""
        queued = texts(self.r.lrange(f"rq:queue:{QUEUE}", 0, -1))
        Queue(QUEUE, connection=self.r, serializer=JSONSerializer).empty()
        for job_id in queued:
            if job_id in self.contact:
                self.removed.add(job_id)
                self.moved_on(job_id)

    # -- invariants --------------------------------------------------------------------------

    def observe(self) -> dict[str, str | None]:
        """Every job's status now; counts the ends since the last look."""
        ids = list(self.contact)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        statuses = {
            j: None if s is None else s.decode() for j, s in zip(ids, pipe.execute(), strict=True)
        }
        for job_id, now in statuses.items():
            if now in ENDED and self.seen.get(job_id) not in ENDED:
                self.ends[job_id] += 1
            self.seen[job_id] = now
        return statuses

    @invariant()
    def lifecycle_holds(self) -> None:
        statuses = self.observe()
        queued = set(texts(self.r.lrange(f"rq:queue:{QUEUE}", 0, -1)))
        registries = {
            name: set(texts(self.r.zrange(f"rq:{name}:{QUEUE}", 0, -1)))
            for name in ("deferred", "scheduled", "failed", "wip")
        }
        wip = {m.split(":")[0] for m in registries["wip"]}
        where = {
            "queued": queued,
            "deferred": registries["deferred"],
            "scheduled": registries["scheduled"],
            "started": wip,
            "failed": registries["failed"],
        }
        running: Counter[str] = Counter()
        for job_id, status in statuses.items():
            # 1. the model's holder is the job's: started, and holding it in Redis
            if job_id in self.holder:
                assert status == "started", f"{job_id} is held but {status}"
                holder = self.r.hget(f"rq:job:{job_id}", "wh:holder")
                assert holder == self.holder[job_id].encode(), f"{job_id}: holder differs"
            if status == "started":
                running[self.contact[job_id]] += 1
            # 3. ends at most once per requeue; nothing lost
            assert self.ends[job_id] <= self.requeues[job_id] + 1, f"{job_id} ended twice"
            if job_id in self.removed:
                continue
            assert status in (*WAITING, *ENDED), f"{job_id} was lost ({status})"
            if status in where:
                assert job_id in where[status], f"{job_id} is {status} but not found there"
        # 2. one started job per contact at most
        assert all(n <= 1 for n in running.values()), f"a contact's jobs ran together: {running}"
        # 1. the store holds the last write accepted
        for contact, value in self.store.items():
            stored = self.r.hget(Keys().store(contact), "last")
            assert stored is not None and stored.decode() == f'"{value}"', contact

    # -- the end: run everything to its end ----------------------------------------------------

    def drain(self) -> None:
        """Every frozen worker is gone; the survivors re-drive, sweep, promote and run every
        job to the end (done), until nothing waits."""
        worker = self.workers["w1"]
        for _ in range(300):
            self.frozen.update(self.holder.values())  # held by workers that froze for good
            for member in texts(self.r.zrange(f"rq:wip:{QUEUE}", 0, -1)):
                lapsed = self.now() + RQ_MARGIN - LATE_RECORDING - 1
                self.r.zadd(f"rq:wip:{QUEUE}", {member: lapsed}, xx=True)
            for job_id in [*(done := self.run(worker.redrive())).requeued, *done.failed]:
                self.moved_on(job_id)
            self.lifecycle_holds()
            self.promote("w1")
            self.run(worker.sweep())
            self.lifecycle_holds()
            started = [run.job for run in self.start("w1", 3).values]
            self.lifecycle_holds()
            if started:
                replies = self.run(worker.finish([Ending(job, "done") for job in started]))
                assert replies == ["ok"] * len(started)
                for job in started:
                    self.moved_on(job.id)
                self.lifecycle_holds()
                continue
            waiting = [j for j in self.contact if self.seen[j] in WAITING]
            if not waiting:
                return
        raise AssertionError(f"the drain did not settle: {waiting}")

    def teardown(self) -> None:
        try:
            self.drain()
            for contact, events in self.events.items():
                kept = [j for j in events if j not in self.removed]
                for job_id in kept:
                    assert self.ends[job_id] == self.requeues[job_id] + 1, (
                        f"{job_id} ended {self.ends[job_id]} times, "
                        f"requeued {self.requeues[job_id]}"
                    )
                assert all(self.seen[j] in ENDED for j in kept), contact
        finally:
            self.run(self.client.aclose())
            self.loop.close()
            self.r.close()


def test_the_lifecycle_model(redis_url: str) -> None:
    Lifecycle.url = redis_url
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=250,
            stateful_step_count=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
