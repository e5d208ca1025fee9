"""RQ's job layout, written by our own scripts: the only module that writes RQ's job states.

The engine (``workers.engine``) runs many jobs at once on one event loop, which RQ 2.12's
workers cannot (its ``Worker`` runs one job; its timeouts are SIGALRM, main thread only).
So the engine moves jobs through RQ's states itself, with Lua scripts that write exactly
what RQ's own worker writes (``tests/workers/test_rq_surface.py`` compares the two, key by
key, and pins every RQ name used here), batched across the jobs in flight:

- :data:`START`: pop up to N jobs and mark each started: job hash, execution hash,
  started registry (``rq:wip:<queue>``), in one round trip. The pop and the start are one
  atomic step, so there is no window in which a job is popped but not started (RQ's
  intermediate list has one). One thing RQ writes is left out: the per-job execution
  registry (``rq:executions:<job>``), which RQ 2.12 reads only to list a job's executions
  (``Job.get_executions``, and ``Job.delete`` of a started job); it is empty again once a
  job ends, and leaving it out saves 3 of the ~33 Redis commands an event cost.
- :data:`FINISH`: end a batch of executions (finished, retry scheduled, failed, or handed
  back) and release each conversation's next job (RQ's dependents), in one round trip.
- :data:`HEARTBEAT`: renew the leases of every execution in flight; report those that
  are no longer ours (another worker re-drove them: their effects must stop).
- :data:`REDRIVE`: put executions whose lease expired (their worker died) back at the
  front of their queue, still holding their conversation's place; fail them only when
  their attempts are spent. Only a death in the quarantine slot counts (below).
- :data:`PROMOTE`: move due scheduled retries onto the queue (RQ's scheduler's job,
  done by every worker at once and atomically, so no scheduler process is needed); a
  conversation's flush or step timeout (``workers.conversation``) enters its chain then.
- :data:`REQUEUE` (:func:`requeue_failed`, for ``wabahooks failed requeue``): a failed job
  back into its conversation's chain with a fresh set of attempts.

**The quarantine: who pays for a worker's death.** A worker that dies (SIGKILL, OOM, a
lost node) takes every execution it had in flight with it, and at most one of them killed
it. So a re-drive refunds the attempt of an execution that ran beside others and marks its
job a suspect (``wh:suspect``); a queue runs one suspect at a time, in its quarantine slot
(``service.keys.quarantine``), beside any number of ordinary jobs. Only a death in the slot
counts as an attempt: a job that keeps killing its worker fails after its attempts, run
alone, and the jobs that happened to share its worker lose none. A suspect popped while the
slot is held waits in the slot's line (``service.keys.quarantine_line``), ``deferred`` in
RQ's registry, and is sent to the front of its queue when the slot is released: ordinary
jobs keep flowing past it, and RQ's tools see it as waiting. A suspect that ends other than
by a hand-back (done, retry, failed) is cleared of suspicion.

**Leases and RQ's own cleanup.** An execution's score in the started registry is its
lease's end plus :data:`RQ_MARGIN`. Our re-drive acts once the lease ends (score - margin
< now); RQ's ``StartedJobRegistry.cleanup`` (run by RQ's maintenance, ``rq info``,
rq-dashboard, anything that counts the registry) acts only once the score itself passes,
``RQ_MARGIN`` seconds later, and would then mark the job failed and release its
conversation's next event. While any worker of the queue lives, re-drive always runs
first. If none lives for that long, RQ's cleanup finds ``retries_left`` set on every
started job (written by :data:`START`), so it re-queues the job instead of failing it,
and the conversation's next event still waits.

Every job-hash write that ends or renews an execution first passes the fence
(``workers.lifecycle``: the execution holds the job *and* it is started): a superseded
execution's ending is ignored. :data:`START` starts only queued jobs, and re-chains a job
that RQ's own tools re-queued while its conversation moved on.
"""

from __future__ import annotations

import platform
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
import rq
import structlog

from service.intake import CHAIN_LUA
from service.keys import (
    RQ_QUEUES,
    RQ_SUSPENDED,
    RQ_WORKERS,
    Keys,
    quarantine,
    quarantine_line,
    rq_deferred,
    rq_failed,
    rq_finished,
    rq_job,
    rq_queue,
    rq_queue_workers,
    rq_scheduled,
    rq_started,
    rq_worker,
)
from service.settings import DEFAULT_DEDUPE_TTL, DEFAULT_QUEUE_PREFIX
from workers.epoch import RedisEpoch
from workers.jobstate import Ending, StartedJob, exc_string
from workers.lease import redrive_after
from workers.lifecycle import lua_script

__all__ = [  # StartedJob and Ending: workers.jobstate, re-exported
    "ABANDONED",
    "RQ_MARGIN",
    "Ending",
    "RQState",
    "Redriven",
    "Requeued",
    "StartedJob",
    "lua_script",
    "requeue_failed",
    "rq_timestamp",
]

log = structlog.get_logger("wabahooks.worker")

#: Seconds RQ's own cleanup waits after a lease ends, on top of the lease.
RQ_MARGIN = 600
#: What RQ's requeue writes as a job's (deprecated) ``exc_info``: an empty text, compressed.
_EMPTY_EXC_INFO = zlib.compress(b"")
#: RQ's timestamp format (``rq.utils.utcformat``).
_RQ_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def rq_timestamp(moment: datetime | None = None) -> str:
    """Return ``moment`` (default now) in RQ's timestamp format."""
    return (moment or datetime.now(UTC)).strftime(_RQ_TIME_FORMAT)


# Each script's KEYS, ARGV and reply are described at the top of its file.
#: Prepended the chain step (``service/chain.lua``): a stray job re-joins its chain.
START = CHAIN_LUA + lua_script("start", "quarantine")
# The scripts that end or keep executions run even when Redis is over maxmemory (allow-oom:
# a full Redis must drain, README "A full Redis"); they free at least what they write. START,
# the ledger's and the intake's never do: they are what fills Redis.
FINISH = lua_script("finish", "archive", "quarantine", flags="allow-oom")
HEARTBEAT = lua_script("heartbeat", flags="allow-oom")
REDRIVE = lua_script("redrive", "quarantine", flags="allow-oom")
REGISTER = lua_script("register", flags="allow-oom")
UNREGISTER = lua_script("unregister", flags="allow-oom")
ARCHIVE_WRITE = lua_script("archive_write", "archive")
SWEEP = lua_script("sweep")
ADOPT = lua_script("adopt")
#: Prepended the chain step (``service/chain.lua``): a firing flush or timeout joins its chain.
PROMOTE = CHAIN_LUA + lua_script("promote")
#: Prepended the chain step (``service/chain.lua``): a requeued job joins its chain.
REQUEUE = CHAIN_LUA + lua_script("requeue")


ABANDONED = (
    "AbandonedJob: its worker stopped renewing the job's lease (killed, or frozen) on its "
    "last attempt; see `wabahooks failed list`, then requeue it once the cause is fixed"
)


@dataclass(frozen=True, slots=True)
class Redriven:
    """What one :meth:`RQState.redrive` did: the jobs put back on the queue, those among them
    whose attempt was refunded (they ran beside others: suspects now), and those failed
    (their worker died on them in the quarantine slot, on their last attempt)."""

    requeued: list[str]
    suspects: list[str]
    failed: list[str]


@dataclass(frozen=True, slots=True)
class Requeued:
    """Where :func:`requeue_failed` put a job: ``queued``, or ``deferred`` behind ``behind``
    (its conversation's latest job); ``refused`` if it was not failed (``why``: its status,
    or ``gone``)."""

    status: str
    behind: str | None = None
    why: str | None = None


class RQState:
    """One queue's jobs moved through RQ's states by one worker (see the module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        queue: str,
        *,
        worker_name: str,
        lease: int,
        max_attempts: int,
        prefix: str = DEFAULT_QUEUE_PREFIX,
    ) -> None:
        self._redis = client
        #: Which Redis this is: jobs enqueued before it restarted or failed over are unproven.
        self.epoch = RedisEpoch(client, Keys(prefix))
        self.queue = queue
        self.worker_name = worker_name
        #: Seconds an execution's lease lasts without a heartbeat.
        self.lease = lease
        self.max_attempts = max_attempts
        self._queue_key = rq_queue(queue)
        self._started_key = rq_started(queue)
        self._scheduled_key = rq_scheduled(queue)
        self._failed_key = rq_failed(queue)
        self._deferred_key = rq_deferred(queue)
        self._quarantine = [quarantine(queue), quarantine_line(queue)]
        self._worker_key = rq_worker(worker_name)
        #: Seconds until the next scheduled job is due, as of the last :meth:`promote` (None:
        #: none was scheduled).
        self.next_due_in: float | None = None
        self._start = client.register_script(START)
        self._finish = client.register_script(FINISH)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._redrive = client.register_script(REDRIVE)
        self._promote = client.register_script(PROMOTE)
        self._archive_write = client.register_script(ARCHIVE_WRITE)
        self._sweep = client.register_script(SWEEP)
        self._adopt = client.register_script(ADOPT)
        self._register = client.register_script(REGISTER)
        self._unregister = client.register_script(UNREGISTER)
        #: Where the deferred registry's sweep goes on (a ZSCAN cursor) and RQ's compaction
        #: leftovers are looked for (a SCAN cursor).
        self._sweep_cursor = 0
        self._leftover_cursor = 0
        #: Counts of what the sweep and the adoption repaired (a hash beside the queue).
        self.repairs_key = f"{queue}:repairs"

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client the scripts run on."""
        return self._redis

    @property
    def execution_ttl(self) -> int:
        """Seconds an execution's hash outlives its last heartbeat (as long as its score)."""
        return self.lease + RQ_MARGIN

    async def start(self, execution_ids: list[str]) -> list[StartedJob]:
        """Pop and start up to ``len(execution_ids)`` jobs; [] if none wait (or `rq suspend`).
        Each says whether it is unproven (``workers.epoch``), as of a fresh look at Redis's
        identity if the connection was lost since the last."""
        if self.epoch.stale:
            await self.epoch.check()
        # retries_left: what RQ's own cleanup needs to re-queue rather than fail (docstring).
        reply: Any = await self._start(
            keys=[
                self._queue_key,
                self._started_key,
                RQ_SUSPENDED,
                self._deferred_key,
                *self._quarantine,
                rq_finished(self.queue),
                rq_failed(self.queue),
            ],
            args=[
                self.worker_name,
                rq_timestamp(),
                self.lease + RQ_MARGIN,
                self.execution_ttl,
                self.max_attempts,
                DEFAULT_DEDUPE_TTL,
                *execution_ids,
            ],
        )
        jobs, refused, waiting = reply
        for job_id, why in refused:
            log.warning(
                "job.not_started", job_id=job_id.decode(), queue=self.queue, why=why.decode()
            )
        for job_id in waiting:
            log.info("job.suspect_waiting", job_id=job_id.decode(), queue=self.queue)
        started = []
        for job_id, execution_id, attempt, flat, moment in jobs:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            job = StartedJob(
                job_id.decode(),
                execution_id.decode(),
                int(attempt),
                fields,
                float(moment),
                unproven=self.epoch.unproven(fields),
            )
            if job.suspect:
                log.info("job.quarantined", job_id=job.id, queue=self.queue, attempt=job.attempt)
            started.append(job)
        return started

    async def finish(self, endings: list[Ending], *, keep_results: bool = True) -> list[str]:
        """End executions in one step; return 'ok' or 'superseded' for each. Without
        ``keep_results``, finished jobs are deleted at once and retries write no result."""
        args: list[Any] = [self.worker_name, rq_timestamp()]
        for ending in endings:
            args += ending.args(keep_result=keep_results)
        keys = [*self._quarantine, self._queue_key, self._deferred_key]
        reply: Any = await self._finish(keys=keys, args=args)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in reply]

    async def heartbeat(self, members: list[str]) -> set[str]:
        """Renew the leases of ``members`` ("<job>:<execution>"); return those no longer ours."""
        pipe = self._redis.pipeline(transaction=False)
        # RQ's worker states: busy while a job runs here, idle otherwise (`wabahooks status`,
        # `rq info`), as of the last heartbeat.
        state = "busy" if members else "idle"
        pipe.hset(self._worker_key, mapping={"last_heartbeat": rq_timestamp(), "state": state})
        pipe.expire(self._worker_key, self.lease + 60)
        if members:
            await self._heartbeat(
                keys=[self._started_key],
                args=[self.lease + RQ_MARGIN, self.execution_ttl, *members],
                client=pipe,
            )
        # The worker hash's renewal may be refused when Redis is over maxmemory (it is
        # informational); the leases' renewal is not (allow-oom).
        replies = await pipe.execute(raise_on_error=False)
        if not members:
            return set()
        if isinstance(replies[-1], Exception):
            raise replies[-1]
        return {m.decode() for m in replies[-1]}

    async def redrive(self) -> Redriven:
        """Re-drive executions whose lease ended (see the quarantine in the module docstring)."""
        reply: Any = await self._redrive(
            keys=[
                self._started_key,
                self._queue_key,
                self._failed_key,
                self._deferred_key,
                *self._quarantine,
            ],
            args=[
                RQ_MARGIN - redrive_after(self.lease),  # the lease ended that long ago
                self.max_attempts,
                rq_timestamp(),
                self.worker_name,
                31536000,
                exc_string(ABANDONED),
            ],
        )
        requeued, failed, suspects = ([i.decode() for i in ids] for ids in reply)
        return Redriven(requeued, suspects, failed)

    async def job_fields(self, job_id: str) -> dict[bytes, bytes]:
        """The job's hash as it stands (empty: gone)."""
        fields: Any = await self._redis.hgetall(rq_job(job_id))
        return dict(fields)

    async def write_archive(self, specs: list[bytes]) -> None:
        """Write archive entries (``workers/lua/archive.lua`` specs) outside a job's ending."""
        if specs:
            await self._archive_write(keys=[], args=specs)

    async def promote(self) -> int:
        """Move due scheduled jobs onto the queue; return how many. :attr:`next_due_in`
        then says when the next one is due."""
        reply: Any = await self._promote(
            keys=[self._scheduled_key, self._queue_key, self._deferred_key],
            args=[rq_timestamp(), DEFAULT_DEDUPE_TTL],
        )
        moved, wait_ms = reply
        self.next_due_in = None if int(wait_ms) < 0 else int(wait_ms) / 1000
        return int(moved)

    async def sweep(self, *, steps: int = 5, count: int = 200) -> list[str]:
        """Release deferred jobs whose predecessors are gone or ended (operator actions:
        ``workers/lua/sweep.lua``), up to ``steps`` ZSCAN steps of ``count``; return their
        ids. The cursor carries over: every deferred job is looked at within a few calls."""
        released: list[str] = []
        for _ in range(steps):
            cursor, ids = await self._sweep(
                keys=[self._deferred_key, self._queue_key, self.repairs_key],
                args=[self._sweep_cursor, count, rq_timestamp()],
            )
            self._sweep_cursor = int(cursor)
            released += [i.decode() for i in ids]
            if self._sweep_cursor == 0:
                break
        return released

    async def adopt_leftovers(self, *, count: int = 5000) -> int:
        """One SCAN step for lists RQ's ``Queue.compact()`` left behind (an interrupted
        rq-dashboard Compact); put this queue's jobs in them back on the queue. Return how
        many were adopted."""
        cursor, keys = await self._redis.scan(
            self._leftover_cursor, match="rq:queue:_compact:*", count=count, _type="list"
        )
        self._leftover_cursor = int(cursor)
        adopted = 0
        for key in keys:
            adopted += int(await self._adopt(keys=[key, self.repairs_key], args=[self.queue]))
        return adopted

    async def register_birth(self, *, pid: int, hostname: str) -> None:
        """Register this worker the way RQ's ``register_birth`` does (``rq info`` lists it)."""
        stamp = rq_timestamp()
        fields: dict[str, str | int] = {
            "birth": stamp,
            "last_heartbeat": stamp,
            "queues": self.queue,
            "pid": pid,
            "hostname": hostname,
            "version": rq.VERSION,  # type: ignore[attr-defined]  # rq exports it untyped
            "python_version": platform.python_version(),
            "state": "idle",  # nothing runs yet; each heartbeat says busy or idle
        }
        await self._register(
            keys=[self._worker_key, RQ_WORKERS, rq_queue_workers(self.queue), RQ_QUEUES],
            args=[self.lease + 60, self._queue_key, *(x for pair in fields.items() for x in pair)],
        )

    async def register_death(self) -> None:
        """Unregister this worker (RQ's ``register_death``), also on a Redis over maxmemory."""
        await self._unregister(
            keys=[self._worker_key, RQ_WORKERS, rq_queue_workers(self.queue)],
            args=[rq_timestamp(), 60],
        )


def requeue_failed(connection: redis.Redis, queue: str, job_id: str) -> Requeued:
    """Put the failed job ``job_id`` of ``queue`` back into its conversation's chain with a
    fresh set of attempts (:data:`REQUEUE`): queued, or deferred behind the conversation's
    latest job."""
    script = connection.register_script(REQUEUE)
    reply: Any = script(
        keys=[rq_failed(queue), rq_queue(queue), rq_deferred(queue)],
        args=[job_id, rq_timestamp(), DEFAULT_DEDUPE_TTL, _EMPTY_EXC_INFO],
    )
    status, *rest = (part.decode() for part in reply)
    if status == "deferred":
        return Requeued(status, behind=rest[0])
    if status == "refused":
        return Requeued(status, why=rest[0])
    return Requeued(status)
