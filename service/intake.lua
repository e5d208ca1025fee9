-- Claim an event's identity and write its RQ job (RQ 2.12 layout), atomically.
-- Every read and check comes before the first write: Lua does not roll back.
--
-- KEYS: claim, job hash, queue list, RQ's set of queues, conversation tail
--       ('' when the event has no conversation), deferred registry
-- ARGV: job id, claim TTL, tail TTL, deferred score (epoch seconds),
--       created_at (also enqueued_at), data, description, origin, timeout,
--       result_ttl, failure_ttl
-- Returns {outcome, job id, predecessor job id or ''}; outcome is
-- 'accepted' or 'duplicate'.
local claim_key, job_key, queue_key, queues_key, tail_key, deferred_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local job_id = ARGV[1]

local claimed_by = redis.call('GET', claim_key)
if claimed_by then
  if claimed_by == job_id then
    -- Our own earlier attempt at this very request (a client-side retry after
    -- a lost reply): it already wrote everything.
    return {'accepted', job_id, ''}
  end
  return {'duplicate', claimed_by, ''}
end

-- The conversation's previous job, if it is still unfinished. A missing,
-- finished, failed, canceled or stopped predecessor counts as done.
local prev = false
if tail_key ~= '' then
  prev = redis.call('GET', tail_key)
  if prev then
    local status = redis.call('HGET', 'rq:job:' .. prev, 'status')
    if not status or status == 'finished' or status == 'failed'
        or status == 'canceled' or status == 'stopped' then
      prev = false
    end
  end
end

-- Writes.
redis.call('SET', claim_key, job_id, 'EX', ARGV[2])
-- What Job.to_dict() writes for a new job, less the status-dependent fields.
local fields = {
  'created_at', ARGV[5], 'data', ARGV[6],
  'success_callback_name', '', 'failure_callback_name', '', 'stopped_callback_name', '',
  'started_at', '', 'ended_at', '', 'last_heartbeat', '', 'worker_name', '', 'group_id', '',
  'origin', ARGV[8], 'description', ARGV[7], 'timeout', ARGV[9],
  'result_ttl', ARGV[10], 'failure_ttl', ARGV[11],
}
if prev then
  -- RQ's dependency layout (Queue.setup_dependencies + Job.register_dependency),
  -- failures allowed so a job that ends in the failed registry releases the next.
  for _, v in ipairs({'status', 'deferred', 'dependency_id', prev,
                      'dependency_ids', '["' .. prev .. '"]',
                      'allow_dependency_failures', '1', 'enqueue_at_front', '0'}) do
    fields[#fields + 1] = v
  end
  redis.call('HSET', job_key, unpack(fields))
  redis.call('SADD', 'rq:job:' .. prev .. ':dependents', job_id)
  redis.call('SADD', 'rq:job::' .. job_id .. ':dependencies', prev)
  redis.call('ZADD', deferred_key, ARGV[4], job_id)
else
  for _, v in ipairs({'status', 'queued', 'enqueued_at', ARGV[5]}) do
    fields[#fields + 1] = v
  end
  redis.call('HSET', job_key, unpack(fields))
  redis.call('RPUSH', queue_key, job_id)
end
redis.call('SADD', queues_key, queue_key)
if tail_key ~= '' then
  redis.call('SET', tail_key, job_id, 'EX', ARGV[3])
end
return {'accepted', job_id, prev or ''}
