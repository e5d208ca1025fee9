"""RQ's job layout, written by our own scripts: the only module that knows RQ's keys.

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
  their attempts are spent.
- :data:`PROMOTE`: move due scheduled retries onto the queue (RQ's scheduler's job,
  done by every worker at once and atomically, so no scheduler process is needed).

**Leases and RQ's own cleanup.** An execution's score in the started registry is its
lease's end plus :data:`RQ_MARGIN`. Our re-drive acts once the lease ends (score - margin
< now); RQ's ``StartedJobRegistry.cleanup`` (run by RQ's maintenance, ``rq info``,
rq-dashboard, anything that counts the registry) acts only once the score itself passes,
``RQ_MARGIN`` seconds later, and would then mark the job failed and release its
conversation's next event. While any worker of the queue lives, re-drive always runs
first. If none lives for that long, RQ's cleanup finds ``retries_left`` set on every
started job (written by :data:`START`), so it re-queues the job instead of failing it,
and the conversation's next event still waits.

Every job-hash write that ends an execution first checks that the execution still holds
the job (``wh:holder``): a superseded execution's ending is ignored.
"""

from __future__ import annotations

import base64
import json
import platform
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import rq

__all__ = [
    "ATTEMPTS_FIELD",
    "HOLDER_FIELD",
    "RQ_MARGIN",
    "Ending",
    "RQState",
    "StartedJob",
    "job_key",
    "rq_timestamp",
]

#: The execution that holds a job (ours), in the job hash. The ledger checks it too.
HOLDER_FIELD = "wh:holder"
#: Executions started for this job, kills included (ours), in the job hash.
ATTEMPTS_FIELD = "wh:attempts"
#: Seconds RQ's own cleanup waits after a lease ends, on top of the lease.
RQ_MARGIN = 600
#: RQ's timestamp format (``rq.utils.utcformat``).
_RQ_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# RQ's key names (rq 2.12; pinned by tests/workers/test_rq_surface.py).
JOB_KEY = "rq:job:{0}"
QUEUE_KEY = "rq:queue:{0}"
STARTED_KEY = "rq:wip:{0}"
SCHEDULED_KEY = "rq:scheduled:{0}"
WORKER_KEY = "rq:worker:{0}"
WORKERS_KEY = "rq:workers"
QUEUE_WORKERS_KEY = "rq:workers:{0}"
SUSPENDED_KEY = "rq:suspended"


def job_key(job_id: str) -> str:
    """Return the Redis key of a job's hash."""
    return JOB_KEY.format(job_id)


def rq_timestamp(moment: datetime | None = None) -> str:
    """Return ``moment`` (default now) in RQ's timestamp format."""
    return (moment or datetime.now(UTC)).strftime(_RQ_TIME_FORMAT)


# Shared Lua: release a finished/failed job's dependents the way RQ's
# Queue.enqueue_dependents does (a dependent whose other dependencies are finished goes
# to its queue; after a failure only dependents that allow failures go).
_RELEASE = """
local function release(id, failed, stamp)
  local dependents_key = 'rq:job:' .. id .. ':dependents'
  local dependents = redis.call('SMEMBERS', dependents_key)
  if #dependents == 0 then return 0 end
  for _, dep in ipairs(dependents) do
    local dkey = 'rq:job:' .. dep
    local f = redis.call('HMGET', dkey, 'status', 'dependency_ids', 'allow_dependency_failures',
                         'origin', 'enqueue_at_front')
    local allowed = (not failed) or f[3] == '1' or f[3] == 'true'
    if f[1] == 'deferred' and allowed and f[4] then
      local met = true
      if f[2] ~= '["' .. id .. '"]' then
        for _, other in ipairs(redis.call('SMEMBERS', 'rq:job::' .. dep .. ':dependencies')) do
          if other ~= id then
            local st = redis.call('HGET', 'rq:job:' .. other, 'status')
            if not (st == 'finished' or ((f[3] == '1' or f[3] == 'true') and st == 'failed')) then
              met = false
            end
          end
        end
      end
      if met then
        redis.call('ZREM', 'rq:deferred:' .. f[4], dep)
        redis.call('HSET', dkey, 'status', 'queued', 'enqueued_at', stamp)
        if f[5] == '1' then
          redis.call('LPUSH', 'rq:queue:' .. f[4], dep)
        else
          redis.call('RPUSH', 'rq:queue:' .. f[4], dep)
        end
      end
    end
  end
  redis.call('DEL', dependents_key)
  return #dependents
end

local function drop_execution(id, exec, wip)
  redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
  redis.call('ZREM', wip, id .. ':' .. exec)
end

local function fail(key, id, exec, wip, failed_key, stamp, now, worker, started, exc, ttl)
  redis.call('HSET', key, 'status', 'failed', 'ended_at', stamp, 'last_heartbeat', stamp)
  redis.call('ZADD', failed_key, math.floor(now) + ttl, id)  -- whole seconds, as RQ
  local results = 'rq:results:' .. id
  redis.call('XADD', results, 'MAXLEN', '~', 10, '*', 'type', 2, 'worker_name', worker,
             'exc_string', exc, 'execution_id', exec, 'execution_started_at', started,
             'execution_ended_at', now)
  redis.call('EXPIRE', results, ttl)
  release(id, true, stamp)
  redis.call('EXPIRE', key, ttl)
  redis.call('EXPIRE', 'rq:job::' .. id .. ':dependencies', ttl)
  drop_execution(id, exec, wip)
end
"""

# KEYS: queue list, started registry, rq:suspended.
# ARGV: worker name, stamp, lease + margin (s), execution TTL (s), retries_left, then one
#       new execution id per job wanted.
# Returns {job id, execution id, attempt, {flat job hash as it was}, now} per started job.
START = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local wanted = #ARGV - 5
local ids = redis.call('LPOP', KEYS[1], wanted)
if not ids then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local worker, stamp = ARGV[1], ARGV[2]
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i, id in ipairs(ids) do
  local key = 'rq:job:' .. id
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local exec = ARGV[5 + i]
    local attempt, retries = 1, false
    for j = 1, #flat, 2 do
      if flat[j] == 'wh:attempts' then attempt = tonumber(flat[j + 1]) + 1 end
      if flat[j] == 'retries_left' then retries = true end
    end
    local set = {'status', 'started', 'started_at', stamp, 'last_heartbeat', stamp,
                 'worker_name', worker, 'wh:holder', exec, 'wh:attempts', attempt}
    if not retries then
      set[#set + 1] = 'retries_left'
      set[#set + 1] = ARGV[5]
    end
    redis.call('HSET', key, unpack(set))
    local ekey = 'rq:execution:' .. id .. ':' .. exec
    redis.call('HSET', ekey, 'id', exec, 'created_at', now, 'last_heartbeat', now,
               'worker_name', worker)
    redis.call('EXPIRE', ekey, ttl)
    redis.call('ZADD', KEYS[2], now + lease, id .. ':' .. exec)
    out[#out + 1] = {id, exec, attempt, flat, tostring(now)}
  end
end
return out
"""

# ARGV: worker name, stamp, then 12 per ending: outcome, job id, execution id, origin,
#       started (epoch), ttl (result or failure), error (RQ's exc_string: zlib + base64, or
#       ''), retry delay (s), dependency flag ('1' if the job waited for another), return
#       value (RQ's serialised form, base64, or ''), the handlers' completed sends
#       ("<sent set key>\t<message id>" lines, workers.ledger), the sent sets' TTL.
# Outcomes: done | retry | failed | handback. Returns one status per ending: 'ok' or
# 'superseded' (the execution no longer held its job: nothing written).
FINISH = (
    _RELEASE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local worker, stamp = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 12 do
  local outcome, id, exec, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local started, ttl, exc = ARGV[i + 4], tonumber(ARGV[i + 5]), ARGV[i + 6]
  local delay, has_deps, value = tonumber(ARGV[i + 7]), ARGV[i + 8], ARGV[i + 9]
  local sent, sent_ttl = ARGV[i + 10], ARGV[i + 11]
  local key = 'rq:job:' .. id
  local wip = 'rq:wip:' .. origin
  if redis.call('HGET', key, 'wh:holder') ~= exec then
    redis.call('ZREM', wip, id .. ':' .. exec)
    out[#out + 1] = 'superseded'
  else
    if outcome == 'done' then
      for set_key, message_id in string.gmatch(sent, '([^\\t\\n]+)\\t([^\\n]+)') do
        redis.call('SADD', set_key, message_id)
        redis.call('EXPIRE', set_key, sent_ttl)
      end
      redis.call('HSET', key, 'status', 'finished', 'ended_at', stamp, 'last_heartbeat', stamp)
      local results = 'rq:results:' .. id
      if value == '' then
        redis.call('XADD', results, 'MAXLEN', '~', 10, '*', 'type', 1, 'worker_name', worker,
                   'execution_id', exec, 'execution_started_at', started,
                   'execution_ended_at', now)
      else
        redis.call('XADD', results, 'MAXLEN', '~', 10, '*', 'type', 1, 'worker_name', worker,
                   'return_value', value, 'execution_id', exec,
                   'execution_started_at', started, 'execution_ended_at', now)
      end
      redis.call('EXPIRE', results, ttl)
      redis.call('ZADD', 'rq:finished:' .. origin, math.floor(now) + ttl, id)
      release(id, false, stamp)
      redis.call('EXPIRE', key, ttl)
      if has_deps == '1' then redis.call('EXPIRE', 'rq:job::' .. id .. ':dependencies', ttl) end
      drop_execution(id, exec, wip)
    elseif outcome == 'retry' then
      redis.call('HSET', key, 'status', 'scheduled', 'ended_at', stamp, 'last_heartbeat', stamp)
      redis.call('HINCRBY', key, 'number_of_retries', 1)
      redis.call('HDEL', key, 'wh:holder')
      local results = 'rq:results:' .. id
      redis.call('XADD', results, 'MAXLEN', '~', 10, '*', 'type', 4, 'worker_name', worker,
                 'exc_string', exc, 'execution_id', exec, 'execution_started_at', started,
                 'execution_ended_at', now)
      redis.call('EXPIRE', results, ttl)
      redis.call('ZADD', 'rq:scheduled:' .. origin, math.floor(now + delay), id)
      drop_execution(id, exec, wip)
    elseif outcome == 'failed' then
      fail(key, id, exec, wip, 'rq:failed:' .. origin, stamp, now, worker, started, exc, ttl)
    else -- handback: not an attempt; back to the front of its queue
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', stamp)
      redis.call('HINCRBY', key, 'wh:attempts', -1)
      redis.call('HDEL', key, 'wh:holder')
      redis.call('LPUSH', 'rq:queue:' .. origin, id)
      drop_execution(id, exec, wip)
    end
    out[#out + 1] = 'ok'
  end
end
return out
"""
)

# KEYS: started registry. ARGV: lease + margin (s), execution TTL (s), then
# "<job id>:<execution id>" per execution in flight. Renews each lease that is still ours
# (ZADD XX); returns the members that are gone (re-driven or ended elsewhere).
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, member) == 0 then
    lost[#lost + 1] = member
  else
    local sep = string.find(member, ':', 1, true)
    local id, exec = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    local ekey = 'rq:execution:' .. id .. ':' .. exec
    redis.call('HSET', ekey, 'last_heartbeat', now)
    redis.call('EXPIRE', ekey, ttl)
  end
end
return lost
"""

# KEYS: started registry, queue list, failed registry.
# ARGV: margin (s), most attempts, stamp, worker name, failure TTL fallback (s), the
#       error to record (RQ's exc_string form).
# Re-drives executions whose lease ended (score - margin < now): back to the front of the
# queue (the conversation's next event still waits for them), or failed once their
# attempts are spent. Returns {re-driven job ids, failed job ids}.
REDRIVE = (
    _RELEASE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local margin, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local stamp, worker = ARGV[3], ARGV[4]
local redriven, failed = {}, {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + margin, 'LIMIT', 0, 100)
for _, member in ipairs(expired) do
  local sep = string.find(member, ':', 1, true)
  local id, exec = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local key = 'rq:job:' .. id
  local f = redis.call('HMGET', key, 'wh:holder', 'wh:attempts', 'status', 'failure_ttl')
  local started = redis.call('HGET', 'rq:execution:' .. id .. ':' .. exec, 'created_at') or ''
  if f[1] == exec and f[3] == 'started' then
    local attempts = tonumber(f[2] or '1') or 1
    if attempts >= most then
      fail(key, id, exec, KEYS[1], KEYS[3], stamp, now, worker, started, ARGV[6],
           tonumber(f[4] or ARGV[5]) or tonumber(ARGV[5]))
      failed[#failed + 1] = id
    else
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', stamp)
      redis.call('HDEL', key, 'wh:holder')
      redis.call('LPUSH', KEYS[2], id)
      drop_execution(id, exec, KEYS[1])
      redriven[#redriven + 1] = id
    end
  else
    drop_execution(id, exec, KEYS[1])
  end
end
return {redriven, failed}
"""
)

# KEYS: scheduled registry, queue list. ARGV: stamp.
# Moves the due scheduled jobs onto the queue (RQ's scheduler's step); returns how many.
PROMOTE = """
local t = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]), 'LIMIT', 0, 500)
local moved = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = 'rq:job:' .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[1])
      redis.call('RPUSH', KEYS[2], id)
      moved = moved + 1
    end
  end
end
return moved
"""


def _json(value: Any) -> bytes:
    """RQ's ``JSONSerializer.dumps``, for a stored return value (``repr`` if not JSON)."""
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError):
        return json.dumps(repr(value)).encode()


def exc_string(text: str) -> str:
    """Return ``text`` as RQ stores a result's ``exc_string`` (zlib, then base64)."""
    return base64.b64encode(zlib.compress(text.encode())).decode()


_ABANDONED = (
    "AbandonedJob: its worker stopped renewing the job's lease (killed, or frozen) on its "
    "last attempt; see `wabahooks failed list`, then requeue it once the cause is fixed"
)


@dataclass(frozen=True, slots=True)
class StartedJob:
    """A job this worker started: its hash as read at the start, and this execution."""

    id: str
    execution_id: str
    #: 1-based; kills and timeouts count.
    attempt: int
    fields: dict[bytes, bytes]
    #: Epoch seconds the execution started (Redis' clock), RQ's ``execution_started_at``.
    started: float

    @property
    def origin(self) -> str:
        return self.fields.get(b"origin", b"").decode()

    @property
    def timeout(self) -> int:
        raw = self.fields.get(b"timeout")
        return int(raw) if raw else 180

    @property
    def result_ttl(self) -> int:
        raw = self.fields.get(b"result_ttl")
        return int(raw) if raw else 500

    @property
    def failure_ttl(self) -> int:
        raw = self.fields.get(b"failure_ttl")
        return int(raw) if raw else 31536000  # RQ's DEFAULT_FAILURE_TTL (one year)

    @property
    def has_dependency(self) -> bool:
        return bool(self.fields.get(b"dependency_id") or self.fields.get(b"dependency_ids"))

    def call(self) -> tuple[str, list[Any], dict[str, Any]]:
        """Return the job's function name, arguments and keyword arguments (RQ's ``data``:
        JSON, compressed or not, as ``JSONSerializer`` reads it)."""
        data = self.fields.get(b"data", b"")
        try:
            data = zlib.decompress(data)
        except zlib.error:
            pass  # RQ accepts uncompressed data too
        func, _instance, args, kwargs = json.loads(data)
        return str(func), list(args), dict(kwargs)


@dataclass(frozen=True, slots=True)
class Ending:
    """How one execution ended, for :meth:`RQState.finish`."""

    job: StartedJob
    #: done | retry | failed | handback
    outcome: str
    #: The error's text (retry, failed), stored as RQ's result ``exc_string``.
    error: str = ""
    #: Seconds until a retry is due.
    delay: int = 0
    #: A finished job's return value, JSON-serialisable (None: none is stored).
    value: Any = None
    #: Sends the job's handlers completed, (the contact's sent set key, message id), written
    #: into those sets (with ``sent_ttl``) with the job's end.
    sent: tuple[tuple[str, str], ...] = ()
    sent_ttl: int = 0

    def args(self) -> list[str | int | float]:
        ttl = self.job.result_ttl if self.outcome == "done" else self.job.failure_ttl
        return [
            self.outcome,
            self.job.id,
            self.job.execution_id,
            self.job.origin,
            self.job.started,
            ttl,
            exc_string(self.error) if self.error else "",
            self.delay,
            "1" if self.job.has_dependency else "0",
            "" if self.value is None else base64.b64encode(_json(self.value)).decode(),
            "\n".join(f"{key}\t{message_id}" for key, message_id in self.sent),
            self.sent_ttl,
        ]


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
    ) -> None:
        self._redis = client
        self.queue = queue
        self.worker_name = worker_name
        #: Seconds an execution's lease lasts without a heartbeat.
        self.lease = lease
        self.max_attempts = max_attempts
        self._queue_key = QUEUE_KEY.format(queue)
        self._started_key = STARTED_KEY.format(queue)
        self._scheduled_key = SCHEDULED_KEY.format(queue)
        self._failed_key = f"rq:failed:{queue}"
        self._worker_key = WORKER_KEY.format(worker_name)
        self._start = client.register_script(START)
        self._finish = client.register_script(FINISH)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._redrive = client.register_script(REDRIVE)
        self._promote = client.register_script(PROMOTE)

    @property
    def execution_ttl(self) -> int:
        """Seconds an execution's hash outlives its last heartbeat (as long as its score)."""
        return self.lease + RQ_MARGIN

    async def start(self, execution_ids: list[str]) -> list[StartedJob]:
        """Pop and start up to ``len(execution_ids)`` jobs; [] if none wait (or `rq suspend`)."""
        # retries_left: what RQ's own cleanup needs to re-queue rather than fail (docstring).
        reply: Any = await self._start(
            keys=[self._queue_key, self._started_key, SUSPENDED_KEY],
            args=[
                self.worker_name,
                rq_timestamp(),
                self.lease + RQ_MARGIN,
                self.execution_ttl,
                self.max_attempts,
                *execution_ids,
            ],
        )
        started = []
        for job_id, execution_id, attempt, flat, moment in reply:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            started.append(
                StartedJob(
                    job_id.decode(),
                    execution_id.decode(),
                    int(attempt),
                    fields,
                    float(moment),
                )
            )
        return started

    async def finish(self, endings: list[Ending]) -> list[str]:
        """End executions in one step; return 'ok' or 'superseded' for each."""
        args: list[Any] = [self.worker_name, rq_timestamp()]
        for ending in endings:
            args += ending.args()
        reply: Any = await self._finish(keys=[], args=args)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in reply]

    async def heartbeat(self, members: list[str]) -> set[str]:
        """Renew the leases of ``members`` ("<job>:<execution>"); return those no longer ours."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._worker_key, "last_heartbeat", rq_timestamp())
        pipe.expire(self._worker_key, self.lease + 60)
        if members:
            await self._heartbeat(
                keys=[self._started_key],
                args=[self.lease + RQ_MARGIN, self.execution_ttl, *members],
                client=pipe,
            )
        replies = await pipe.execute()
        if not members:
            return set()
        return {m.decode() for m in replies[-1]}

    async def redrive(self) -> tuple[list[str], list[str]]:
        """Re-drive executions whose lease ended; return (re-driven, failed) job ids."""
        reply: Any = await self._redrive(
            keys=[self._started_key, self._queue_key, self._failed_key],
            args=[
                RQ_MARGIN,
                self.max_attempts,
                rq_timestamp(),
                self.worker_name,
                31536000,
                exc_string(_ABANDONED),
            ],
        )
        redriven, failed = reply
        return [i.decode() for i in redriven], [i.decode() for i in failed]

    async def promote(self) -> int:
        """Move due scheduled retries onto the queue; return how many."""
        moved: Any = await self._promote(
            keys=[self._scheduled_key, self._queue_key], args=[rq_timestamp()]
        )
        return int(moved)

    async def register_birth(self, *, pid: int, hostname: str) -> None:
        """Register this worker the way RQ's ``register_birth`` does (``rq info`` lists it)."""
        stamp = rq_timestamp()
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._worker_key)
        pipe.hset(
            self._worker_key,
            mapping={
                "birth": stamp,
                "last_heartbeat": stamp,
                "queues": self.queue,
                "pid": pid,
                "hostname": hostname,
                "version": rq.VERSION,  # type: ignore[attr-defined]  # rq exports it untyped
                "python_version": platform.python_version(),
                "state": "busy",
            },
        )
        pipe.sadd(WORKERS_KEY, self._worker_key)
        pipe.sadd(QUEUE_WORKERS_KEY.format(self.queue), self._worker_key)
        pipe.sadd("rq:queues", self._queue_key)
        pipe.expire(self._worker_key, self.lease + 60)
        await pipe.execute()

    async def register_death(self) -> None:
        """Unregister this worker (RQ's ``register_death``)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(WORKERS_KEY, self._worker_key)
        pipe.srem(QUEUE_WORKERS_KEY.format(self.queue), self._worker_key)
        pipe.hset(self._worker_key, "death", rq_timestamp())
        pipe.expire(self._worker_key, 60)
        await pipe.execute()
