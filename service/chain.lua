-- A conversation's chain of jobs, shared by the intake (service/intake.lua) and the
-- workers' scripts that put a job into a chain later (workers/lua/promote.lua: a
-- conversation's flush or step timeout when it fires). Prepended to each script.
--
-- A conversation's tail key (wabahooks:tail:<kind>:<conversation>) holds its latest
-- job's id. A new job waits (RQ's dependency layout, failures allowed) for that job
-- while it is unfinished, so one conversation's jobs run in the order they were chained.

-- What Job.to_dict() writes for a new job, less the status-dependent fields; and ours: the
-- Redis epoch it is enqueued in ('wh:epoch', workers/epoch.py: a job enqueued before Redis
-- restarted or failed over may have lost its intents).
local function chain_job_fields(created_at, data, description, origin, timeout, result_ttl,
                                failure_ttl, epoch)
  return {
    'created_at', created_at, 'data', data,
    'success_callback_name', '', 'failure_callback_name', '', 'stopped_callback_name', '',
    'started_at', '', 'ended_at', '', 'last_heartbeat', '', 'worker_name', '', 'group_id', '',
    'origin', origin, 'description', description, 'timeout', timeout,
    'result_ttl', result_ttl, 'failure_ttl', failure_ttl, 'wh:epoch', epoch or '0',
  }
end

-- The conversation's previous job, if it is still unfinished (a read: no writes). A
-- missing, finished, failed, canceled or stopped predecessor counts as done.
local function chain_prev(tail_key)
  if tail_key == '' then return false end
  local prev = redis.call('GET', tail_key)
  if prev then
    local status = redis.call('HGET', 'rq:job:' .. prev, 'status')
    if not status or status == 'finished' or status == 'failed'
        or status == 'canceled' or status == 'stopped' then
      prev = false
    end
  end
  return prev
end

-- Make the job (its hash already written, status-dependent fields aside) wait for
-- ``prev`` (RQ's Queue.setup_dependencies + Job.register_dependency), or queue it now;
-- then point the tail at it, and keep the tail's name in the job ('wh:tail': the start
-- script re-chains a job that RQ's own tools re-queued behind its conversation's back).
-- ``score``: the deferred registry's (epoch seconds).
local function chain_link(prev, job_id, job_key, queue_key, deferred_key, score, stamp,
                          tail_key, tail_ttl)
  if tail_key ~= '' then
    redis.call('HSET', job_key, 'wh:tail', tail_key)
  end
  if prev then
    redis.call('HSET', job_key, 'status', 'deferred', 'dependency_id', prev,
               'dependency_ids', '["' .. prev .. '"]', 'allow_dependency_failures', '1',
               'enqueue_at_front', '0')
    redis.call('SADD', 'rq:job:' .. prev .. ':dependents', job_id)
    -- Replaced, not added to: a job re-chained (a requeue) must not keep waiting, in RQ's
    -- eyes or the sweep's, for the predecessor it had before.
    local dependencies = 'rq:job::' .. job_id .. ':dependencies'
    redis.call('DEL', dependencies)
    redis.call('SADD', dependencies, prev)
    redis.call('ZADD', deferred_key, score, job_id)
  else
    redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', stamp)
    redis.call('RPUSH', queue_key, job_id)
  end
  if tail_key ~= '' then
    redis.call('SET', tail_key, job_id, 'EX', tail_ttl)
  end
end
