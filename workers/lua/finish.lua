-- KEYS: the queue's quarantine slot, quarantine line, queue list, deferred registry.
-- ARGV: worker name, stamp, then 14 per ending: outcome, job id, execution id, origin,
--       started (epoch), ttl (result or failure; 0: none kept), error (RQ's exc_string:
--       zlib + base64, or ''), retry delay (s), dependency flag ('1' if the job waited for another), return
--       value (RQ's serialised form, base64, or ''), the handlers' completed sends
--       ("<sent set key>\t<message id>" lines, workers.ledger), the sent sets' TTL, the
--       event's archive entry (archive.lua; '' for none), hold (s: the job must not run
--       again sooner, workers.execution.LATE_RECORDING; a hand-back with one is scheduled).
-- Outcomes: done | retry | failed | handback. Due times keep their fractions (a retry held
-- for a send's recording must not come early). Returns one status per ending: 'ok' or
-- 'superseded' (the fence refused the execution: nothing written). An execution that
-- held the quarantine slot (quarantine.lua, prepended) releases it; a job that ended other
-- than by a hand-back did not kill its worker, so it is no longer a suspect.
-- A ttl of 0 keeps no result (a worker draining a full Redis, README "A full Redis"; or
-- WABAHOOKS_RESULT_TTL=0): a finished job is deleted, and freed before anything is written.
local now = clock()
local worker, stamp = ARGV[1], ARGV[2]

-- The handlers' completed sends, into their contacts' sent sets.
local function record_sent(sent, sent_ttl)
  for set_key, message_id in string.gmatch(sent, '([^\t\n]+)\t([^\n]+)') do
    redis.call('SADD', set_key, message_id)
    redis.call('EXPIRE', set_key, sent_ttl)
  end
end

local out = {}
for i = 3, #ARGV, 14 do
  local outcome, id, exec, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local started, ttl, exc = ARGV[i + 4], tonumber(ARGV[i + 5]), ARGV[i + 6]
  local delay, has_deps, value = tonumber(ARGV[i + 7]), ARGV[i + 8], ARGV[i + 9]
  local sent, sent_ttl, archived = ARGV[i + 10], ARGV[i + 11], ARGV[i + 12]
  local hold = tonumber(ARGV[i + 13])
  local key = 'rq:job:' .. id
  local wip = 'rq:wip:' .. origin
  if not fenced(key, exec) then
    redis.call('ZREM', wip, id .. ':' .. exec)
    out[#out + 1] = 'superseded'
  else
    local quarantined = redis.call('GET', KEYS[1]) == id .. ':' .. exec
    if outcome == 'done' and ttl == 0 then
      redis.call('DEL', key, 'rq:results:' .. id, 'rq:job::' .. id .. ':dependencies')
      drop_execution(id, exec, wip)
      record_sent(sent, sent_ttl)
      release(id, false, stamp)
    elseif outcome == 'done' then
      record_sent(sent, sent_ttl)
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
      if ttl == 0 then
        redis.call('DEL', results)
      else
        redis.call('XADD', results, 'MAXLEN', '~', 10, '*', 'type', 4, 'worker_name', worker,
                   'exc_string', exc, 'execution_id', exec, 'execution_started_at', started,
                   'execution_ended_at', now)
        redis.call('EXPIRE', results, ttl)
      end
      redis.call('ZADD', 'rq:scheduled:' .. origin, now + math.max(delay, hold), id)
      drop_execution(id, exec, wip)
    elseif outcome == 'failed' then
      fail(key, id, exec, wip, 'rq:failed:' .. origin, stamp, now, worker, started, exc, ttl)
    elseif hold > 0 then -- handback of a send in doubt: not an attempt; held until due
      redis.call('HINCRBY', key, 'wh:attempts', -1)
      redis.call('HSET', key, 'status', 'scheduled', 'ended_at', stamp, 'last_heartbeat', stamp)
      redis.call('HDEL', key, 'wh:holder')
      redis.call('ZADD', 'rq:scheduled:' .. origin, now + hold, id)
      drop_execution(id, exec, wip)
    else -- handback: not an attempt; back to the front of its queue
      redis.call('HINCRBY', key, 'wh:attempts', -1)
      requeue_front(key, id, exec, wip, 'rq:queue:' .. origin, stamp)
    end
    if outcome ~= 'handback' then
      redis.call('HDEL', key, 'wh:suspect')
      archive(archived, now)
    end
    if quarantined then release_slot(KEYS[1], KEYS[2], KEYS[3], KEYS[4], stamp) end
    out[#out + 1] = 'ok'
  end
end
return out
